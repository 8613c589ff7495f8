"""The Kamailio tier's cost per call as nodes are added: 1, 2, 3 IVR nodes behind one `ivr tier run`, same rate.

A tool people run (not a test). Starts --nodes-max nodes (`ivr run` with its own managed front, --workers each)
on 127.0.12.11, .12, .13 and one tier on 127.0.12.10 over the first node; then for each node count (--nodes,
ascending) reloads the tier's node list (`ivr tier reload`, no restart), lets --settle s pass (probes put the
nodes in rotation), measures the tier's idle CPU for --idle s (OPTIONS probing: grows with the node count),
then places --rate calls/s for --window s of the e2e gold call (INVITE, ACK, greeting, REFER to the gold queue,
202, NOTIFY 100 and 200, BYE: 9 transactions through the tier) from SIPp on 127.0.12.1, and reports:

  cpu_ms_per_call       the tier's CPU (utime+stime of `ivr tier run` and its Kamailio, /proc) during the calls
                        window, divided by the calls placed
  net_ms_per_call       the same minus the idle rate x the window's length (what the calls themselves cost)
  spread                call.ended lines per node (round robin)

Ports, all in 127.0.12.0/24: tier 25560, nodes 25560 on their own addresses, workers 25600+, RTP 21000 + 400 x
node, admin 25580, demo CRM 25581, SIPp 25510 (media 25520). Run it under the bench lock, bounded:

    flock /tmp/bench.lock .venv/bin/python bench/tier_cost.py --max-minutes 6

Writes bench/results/tier-cost-<UTC>.json (figures, load average before and after each step, the command).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import rig
import yaml

ROOT = rig.ROOT
RESULTS = Path(__file__).resolve().parent / "results"
TIER_HOST, CALLER_HOST = "127.0.12.10", "127.0.12.1"
NODE_HOSTS = ("127.0.12.11", "127.0.12.12", "127.0.12.13")
SIP_PORT, SIPP_PORT, SIPP_MEDIA = 25560, 25510, 25520
GOLD = "sip:gold@127.0.0.1:5070"


def node_tweak(host: str) -> Any:
    def tweak(data: dict[str, Any]) -> None:
        data["sip"].update(listen_host=host, worker_host=host, media_address=host)
        data["admin"]["host"] = host
        data["demo_crm"]["host"] = host
        data["http"]["crm"]["base_url"] = f"http://{host}:{data['demo_crm']['port']}"
        data["trunks"] = [{**data["trunks"][0], "sources": [f"{TIER_HOST}/32"]}]
        data["records"] = {"store": "none"}
        data.pop("tier", None)
    return tweak


def tier_config(nodes: int, workdir: Path) -> Path:
    data = rig.bench_config(2, rig.Ports(sip=SIP_PORT))
    data["trunks"] = [{**data["trunks"][0], "sources": [f"{CALLER_HOST}/32"]}]
    data["tier"] = {"listen_host": TIER_HOST, "listen_port": SIP_PORT, "probe_interval": 1,
                    "run_dir": str(workdir / "tier-run"),
                    "nodes": [{"name": f"node{i + 1}", "address": f"{NODE_HOSTS[i]}:{SIP_PORT}"} for i in range(nodes)]}
    path = workdir / "tier.yaml"
    path.write_text("# Written by bench/tier_cost.py\n" + yaml.safe_dump(data, sort_keys=False))
    return path


def ivr(*args: str) -> list[str]:
    return [str(ROOT / ".venv" / "bin" / "python"), "-m", "ivr", *args]


def sipp_calls(rate: float, calls: int, workdir: Path, tag: str, timeout_s: int) -> dict[str, Any]:
    binary = shutil.which("sipp")
    assert binary, "sipp is not installed (scripts/bootstrap)"
    cmd = [binary, f"{TIER_HOST}:{SIP_PORT}", "-sf", str(ROOT / "sipp-scenarios" / "dtmf_info_refer.xml"),
           "-s", "100", "-i", CALLER_HOST, "-p", str(SIPP_PORT), "-mi", CALLER_HOST, "-mp", str(SIPP_MEDIA),
           "-m", str(calls), "-l", str(max(4, int(rate * 8))), "-r", str(rate), "-cid_str", f"{tag}-%u-%p@%s",
           "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin",
           "-set", "caller", "+15551000003", "-set", "digits", "", "-set", "expected_refer", GOLD,
           "-trace_stat", "-stf", str(workdir / f"{tag}.csv")]
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout_s + 30)
    wall = time.monotonic() - t0
    stats = (workdir / f"{tag}.csv").read_text().splitlines()
    head, last = stats[0].split(";"), stats[-1].split(";")
    row = dict(zip(head, last, strict=False))
    return {"returncode": done.returncode, "wall_s": round(wall, 1),
            "successful": int(row.get("SuccessfulCall(C)", 0)), "failed": int(row.get("FailedCall(C)", 0))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure, ascending (max 3)")
    parser.add_argument("--workers", type=int, default=4, help="workers per node (4 calls each)")
    parser.add_argument("--rate", type=float, default=4.0, help="calls/s through the tier, the same at every step")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of calls per step")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle (probing only) per step")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after a reload before measuring")
    parser.add_argument("--max-minutes", type=float, default=6.0, help="the whole run stops by then")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    if counts != sorted(counts) or not 1 <= counts[0] <= counts[-1] <= len(NODE_HOSTS):
        parser.error("--nodes: ascending counts between 1 and 3")
    deadline = time.monotonic() + args.max_minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="ivr-tier-bench-"))
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "command": " ".join(sys.argv), "args": vars(args), "steps": []}
    nodes: list[rig.Server] = []
    tier: subprocess.Popen[bytes] | None = None
    try:
        for i in range(counts[-1]):
            ports = rig.Ports(sip=SIP_PORT, worker_base=25600, rtp_start=21000 + 400 * i, admin=25580, crm=25581)
            nodes.append(rig.Server(args.workers, workdir / f"node{i + 1}", ports=ports,
                                    tweak=node_tweak(NODE_HOSTS[i])))
            nodes[-1].start()
        tier_yaml = tier_config(counts[0], workdir)
        tier_log = (workdir / "tier.log").open("wb")
        tier = subprocess.Popen(ivr("tier", "run", str(tier_yaml)), cwd=ROOT, stdout=tier_log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        while b'"tier.ready"' not in (workdir / "tier.log").read_bytes():
            if tier.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "tier.log").read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        for n in counts:
            if time.monotonic() + args.settle + args.idle + args.window + 60 > deadline:
                results["stopped"] = f"--max-minutes reached before {n} nodes"
                break
            tier_config(n, workdir)
            subprocess.run(ivr("tier", "reload", str(tier_yaml)), cwd=ROOT, check=True, capture_output=True,
                           timeout=60)
            time.sleep(args.settle)
            step: dict[str, Any] = {"nodes": n, "load_before": rig.loadavg()}
            pids = rig.tree(tier.pid)
            c0, t0 = rig.cpu_seconds(pids), time.monotonic()
            time.sleep(args.idle)
            c1, t1 = rig.cpu_seconds(rig.tree(tier.pid)), time.monotonic()
            idle_rate = (c1 - c0) / (t1 - t0)
            ended_before = [n_.log.read_bytes().count(b'"call.ended"') for n_ in nodes]
            calls = int(args.rate * args.window)
            run = sipp_calls(args.rate, calls, workdir, f"tier{n}", int(args.window + 60))
            c2, t2 = rig.cpu_seconds(rig.tree(tier.pid)), time.monotonic()
            time.sleep(1.0)
            spread = [n_.log.read_bytes().count(b'"call.ended"') - b for n_, b in zip(nodes, ended_before, strict=True)]
            busy = c2 - c1
            step.update(idle_cpu_ms_per_s=round(1000 * idle_rate, 2), calls=calls, sipp=run,
                        cpu_s=round(busy, 3), cpu_ms_per_call=round(1000 * busy / calls, 3),
                        net_ms_per_call=round(1000 * (busy - idle_rate * (t2 - t1)) / calls, 3),
                        spread=spread[:n], load_after=rig.loadavg())
            results["steps"].append(step)
            print(json.dumps(step), flush=True)
    finally:
        if tier is not None and tier.poll() is None:
            tier.terminate()
            try:
                tier.wait(20)
            except subprocess.TimeoutExpired:
                tier.kill()
        for node in nodes:
            node.stop()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"tier-cost-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'nodes':>5} {'calls ok/failed':>16} {'tier ms/call':>13} {'net ms/call':>12} {'idle ms/s':>10} spread")
    for s in results["steps"]:
        print(f"{s['nodes']:>5} {s['sipp']['successful']:>8}/{s['sipp']['failed']:<7} {s['cpu_ms_per_call']:>13} "
              f"{s['net_ms_per_call']:>12} {s['idle_cpu_ms_per_s']:>10} {s['spread']}")
    print(out)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
