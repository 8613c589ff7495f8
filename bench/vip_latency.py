"""Answer -> REFER time of the shipped VIP flow for a known caller, with the CRM healthy, slow, and down.

Each condition starts `ivr run` on the bench copy of config/ivr.yaml (2 workers behind the managed front),
places `--calls` calls of a gold customer with SIPp (`sipp-scenarios/dtmf_info_refer.xml`, no digits) and
reads the server's `call.ended` lines: `timings.to_transfer_ms` is the time from the call's CONFIRMED (the
caller's ACK) to the REFER. The greeting (`welcome.wav`) plays first in that flow; its length is printed
so the CRM's share is visible. The CRM cache is off in every condition except `cached` (where a caller
seen before is routed from the cache). 127.0.0.1 only; every run is bounded by SIPp's -timeout.

    .venv/bin/python bench/vip_latency.py --calls 100 [--conditions healthy,cached,slow,down,...]

Conditions: healthy, cached, slow (demo CRM answers after 3 s, budget 1.5 s), down (connection refused);
slow_nobreaker and down_nobreaker keep the circuit breaker from opening, so every call meets the failure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rig import ROOT, Ports, Server, loadavg  # noqa: E402

from ivr.prompts import wav_seconds  # noqa: E402

GOLD = "+15551000002"  # gold without an account manager: the gold queue
PORTS = Ports(sip=26060, worker_base=26100, rtp_start=46000, admin=26080, crm=26081)
DEAD_PORT = 26099  # nothing listens there: "CRM down" is a refused connection


def tweak_for(condition: str) -> Any:
    def tweak(cfg: dict[str, Any]) -> None:
        crm = cfg["http"]["crm"]
        crm["cache"] = {"ttl": "60s", "stale": "10m", "max_entries": 10000 if condition == "cached" else 0}
        if condition.startswith("slow"):
            cfg["demo_crm"]["latency"] = "3s"  # twice the step's 1.5 s budget
        if condition.startswith("down"):
            crm["base_url"] = f"http://127.0.0.1:{DEAD_PORT}"
        if condition.endswith("_nobreaker"):  # every call pays the failure itself: the breaker's worth, measured
            crm["breaker"] = {"failures": 1000000, "cool_down": "30s"}
    return tweak


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_condition(condition: str, calls: int, rate: float, workdir: Path) -> dict[str, Any]:
    server = Server(workers=2, workdir=workdir / condition, ports=PORTS, tweak=tweak_for(condition)).start()
    expected = "gold" if condition in ("healthy", "cached") else "default"
    try:
        load = loadavg()
        sipp = [shutil.which("sipp") or "sipp", f"127.0.0.1:{PORTS.sip}", "-sf",
                str(ROOT / "sipp-scenarios" / "dtmf_info_refer.xml"), "-s", "100", "-i", "127.0.0.1",
                "-p", "26010", "-mp", "26020", "-m", str(calls), "-l", "8", "-r", str(rate), "-nostdin",
                "-timeout", f"{int(calls / rate) + 60}s", "-timeout_error", "-cid_str", f"{condition}-%u-%p@%s",
                "-set", "caller", GOLD, "-set", "digits", "",
                "-set", "expected_refer", f"sip:{expected}@127.0.0.1:5070"]
        started = time.monotonic()
        done = subprocess.run(sipp, cwd=workdir, capture_output=True, text=True, timeout=calls / rate + 120)
        wall = time.monotonic() - started
        time.sleep(1.0)
    finally:
        server.stop()
    ended = [json.loads(line) for line in server.log.read_text(errors="replace").splitlines()
             if '"call.ended"' in line]
    ours = [e for e in ended if str(e.get("sip_call_id", "")).startswith(f"{condition}-")]
    to_refer = [float(e["timings"]["to_transfer_ms"]) for e in ours if e.get("timings", {}).get("to_transfer_ms")]
    fetch_ms = [float(f["elapsed_ms"]) for e in ours for f in e.get("fetches", [])]
    outcomes = Counter(str((e.get("outcome") or {}).get("transfer", {}).get("queue", "none")) for e in ours)
    reasons = Counter(str(f.get("reason") or f.get("outcome")) for e in ours for f in e.get("fetches", []))
    return {"condition": condition, "calls": calls, "sipp_exit": done.returncode, "wall_s": round(wall, 1),
            "load_before": load, "records": len(ours), "queues": dict(outcomes), "fetch_results": dict(reasons),
            "answer_to_refer_ms": {"p50": round(percentile(to_refer, 0.5)), "p99": round(percentile(to_refer, 0.99)),
                                   "mean": round(statistics.fmean(to_refer))} if to_refer else None,
            "fetch_ms": {"p50": round(percentile(fetch_ms, 0.5), 1), "p99": round(percentile(fetch_ms, 0.99), 1)}
            if fetch_ms else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rate", type=float, default=3.0, help="calls per second (default: %(default)s)")
    parser.add_argument("--conditions", default="healthy,cached,slow,down,slow_nobreaker,down_nobreaker")
    args = parser.parse_args()
    greeting = wav_seconds(ROOT / "prompts" / "welcome.wav") * 1000
    print(f"greeting (welcome.wav) plays {greeting:.0f} ms before the lookup in vip_routing")
    results = []
    with tempfile.TemporaryDirectory(prefix="vip-latency-") as tmp:
        for condition in args.conditions.split(","):
            result = run_condition(condition, args.calls, args.rate, Path(tmp))
            results.append(result)
            print(json.dumps(result), flush=True)
    out = ROOT / "bench" / "results" / f"vip-latency-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"greeting_ms": round(greeting), "results": results}, indent=2))
    print(f"{'condition':<10} {'calls':>5} {'sipp':>4} {'queues':<22} {'answer->REFER p50/p99 ms':>26} "
          f"{'fetch p50/p99 ms':>18}")
    for r in results:
        a, f = r["answer_to_refer_ms"] or {}, r["fetch_ms"] or {}
        print(f"{r['condition']:<10} {r['records']:>5} {r['sipp_exit']:>4} {json.dumps(r['queues']):<22} "
              f"{a.get('p50', '-'):>12} / {a.get('p99', '-'):<11} {f.get('p50', '-'):>8} / {f.get('p99', '-')}")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
