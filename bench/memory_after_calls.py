"""Memory of the real server before, during and after calls: PSS per role (bench/rig.py's accounting).

Workers forked from the zygote (ivr/sip/zygote.py) share its pages until they write them: a worker's first
calls touch (refcounts, the 3.11 interpreter's specialised bytecode) pages of code it shares, which then
become its own. So the idle figure right after start-up flatters; this tool also measures idle again after
held media calls and full-flow calls, which is the figure a running server has.

`ivr run` (front auto, N workers) on free ports from the e2e test helpers (no fixed bench ports, so no
lock is needed: nothing here is a timing). Bounded: SIPp -timeout, the server is stopped at the end.

    .venv/bin/python bench/memory_after_calls.py --workers 72 --held 144 --flows 216 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "tests"), str(ROOT / "bench")]

import rig  # noqa: E402
from conftest import QUEUE_HOST, e2e_config, start_server  # noqa: E402
from ivrkit import IvrServer  # noqa: E402
from sippkit import SippRun, sipp  # noqa: E402


def memory(srv: IvrServer, workers: int) -> dict[str, int]:
    assert srv.proc is not None
    pids = rig.tree(srv.proc.pid)
    role = rig.memory_by_role(pids, srv.proc.pid)
    return {"total_pss_kb": rig.memory_kb(pids)["pss_kb"], "workers_pss_kb": role["workers"]["pss_kb"],
            "controller_pss_kb": role["controller"]["pss_kb"],
            "worker_pss_kb_each": round(role["workers"]["pss_kb"] / workers)}


def live_calls(srv: IvrServer) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.config['admin']['port']}/calls", timeout=5) as resp:
        return len(json.load(resp)["calls"])


def measure(workers: int, held: int, flows: int, workdir: Path) -> dict[str, Any]:
    srv = start_server(e2e_config(workers=workers), workdir / "srv")
    try:
        srv.wait_for(lambda e: e.get("event") == "ivr.ready", timeout=120)
        time.sleep(5)
        out: dict[str, Any] = {"workers": workers, "held": held, "flows": flows, "loadavg_before": rig.loadavg(),
                               "idle": memory(srv, workers)}
        holder = sipp(srv.sip_port, "long_hold.xml", service="500", tag="hold", workdir=workdir, duration_ms=30000,
                      variables={"caller": "+15553000005"}, calls=held, concurrency=held, rate=20, timeout=90,
                      background=True)
        end = time.monotonic() + 40
        while live_calls(srv) < held and time.monotonic() < end:
            time.sleep(0.5)
        out["live"] = live_calls(srv)
        time.sleep(2)
        out["held_memory"] = memory(srv, workers)
        added = out["held_memory"]["total_pss_kb"] - out["idle"]["total_pss_kb"]
        out["pss_per_held_call_kb"] = round(added / max(1, out["live"]), 1)
        assert isinstance(holder, subprocess.Popen)
        holder.communicate(timeout=120)
        run = sipp(srv.sip_port, "dtmf_info_refer.xml", service="300", tag="flow", workdir=workdir, calls=flows,
                   concurrency=20, rate=10, timeout=120,
                   variables={"caller": "+15553000005", "digits": "2", "expected_refer": f"sip:support@{QUEUE_HOST}"})
        assert isinstance(run, SippRun)
        out["flow_sipp_returncode"] = run.returncode
        time.sleep(5)
        out["idle_after_calls"] = memory(srv, workers)
        out["loadavg_after"] = rig.loadavg()
        return out
    finally:
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=24)
    p.add_argument("--held", type=int, default=48, help="long media calls held together (30 s)")
    p.add_argument("--flows", type=int, default=96, help="full-flow calls afterwards (10 cps, 20 at a time)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/ivr-memory-after-calls"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = measure(args.workers, args.held, args.flows, args.workdir)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
