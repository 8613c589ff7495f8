"""Leak or warm-up? Rounds of full-flow calls, the server's memory and fds measured idle after each round.

A soak samples memory while calls are in flight, so its slope mixes three things: the calls in flight, the
workers un-sharing the zygote's pages as they touch more code (warm-up, which levels off), and a leak (which
does not). This tool separates them: it runs `--rounds` rounds of `--calls` full-flow calls (the bench's call,
`sipp-scenarios/bench/full_flow.xml`, SIPp echoing the RTP), waits after each round until the server reports
0 live calls, settles, then reads every process's PSS, USS (private pages: what the process alone holds)
and open fds, per role. A leak is a USS/PSS that keeps growing with the calls served after the warm-up rounds:
`slopes` fits bytes per call over the last half of the rounds, per role, and over all rounds for comparison.
The live-call gauge must read 0 after every round, and the fds stay within a few of each other across rounds
(the controller's pooled CRM connections come and go).

Its own ports (SIP 27060, workers 27100+, RTP 21000+, admin 27080, CRM 27081, SIPp 27010/27020), not the
capacity bench's, and light load (a few calls per second), so it needs no bench lock. Bounded: at most 20
rounds of 2,000 calls, SIPp `-timeout`, `--max-minutes` for the whole run; the server is stopped at the end.

    .venv/bin/python bench/leak_rounds.py --workers 4 --rounds 8 --calls 300 --rate 3 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drive  # noqa: E402
import rig  # noqa: E402
from capacity import FULL_SETS, live_calls, machine  # noqa: E402
from soak import least_squares_slope  # noqa: E402

PORTS = rig.Ports(sip=27060, worker_base=27100, rtp_start=21000, admin=27080, crm=27081, stub=27082)
SIPP_SIGNAL, SIPP_MEDIA = 27010, 27020
FDS_SLACK = 4
"""fds may differ between rounds by the controller's pooled keep-alive connections to the CRM (aiohttp closes an
idle one after 15 s): more than this, or a trend, is a leak."""


def process_memory(pid: int) -> dict[str, int] | None:
    """PSS and USS (Private_Clean + Private_Dirty) of one process, kB; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0])
    return {"pss_kb": fields.get("Pss", 0), "uss_kb": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def snapshot(srv: rig.Server) -> dict[str, Any]:
    """Per role: PSS, USS, fds summed, and process count; the live-call gauge."""
    assert srv.proc is not None
    root = srv.proc.pid
    pids = srv.refresh()
    fds = rig.fds_per_process(pids)
    roles: dict[str, dict[str, int]] = {}
    for pid in pids:
        role, mem = rig.role_of(pid, root), process_memory(pid)
        if role is None or mem is None:
            continue
        acc = roles.setdefault(role, {"pss_kb": 0, "uss_kb": 0, "fds": 0, "processes": 0})
        acc["pss_kb"] += mem["pss_kb"]
        acc["uss_kb"] += mem["uss_kb"]
        acc["fds"] += fds.get(pid, 0)
        acc["processes"] += 1
    total = {key: sum(r[key] for r in roles.values()) for key in ("pss_kb", "uss_kb", "fds", "processes")}
    return {"roles": {"total": total, **roles}, "live_calls": live_calls(srv)}


def slopes(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Bytes per call served, per role and memory kind: over all rounds and over the last half."""
    def fit(rows: list[dict[str, Any]], role: str, kind: str) -> float:
        points = [(float(r["calls_served"]), 1024.0 * r["roles"].get(role, {}).get(kind, 0)) for r in rows]
        return round(least_squares_slope(points) or 0.0, 1)

    half = samples[len(samples) // 2:]
    return {role: {f"{kind[:3]}_bytes_per_call_{part}": fit(rows, role, kind)
                   for kind in ("pss_kb", "uss_kb") for part, rows in (("all", samples), ("last_half", half))}
            for role in samples[0]["roles"]}


def settle(srv: rig.Server, deadline_s: float) -> int:
    """Wait (bounded) until the server reports 0 live calls; the last reading."""
    end = time.monotonic() + deadline_s
    live = live_calls(srv)
    while live != 0 and time.monotonic() < end:
        time.sleep(0.5)
        live = live_calls(srv)
    return live


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    srv = rig.Server(args.workers, args.workdir / "server", ports=PORTS).start()
    sipp: drive.Sipp | None = None
    try:
        time.sleep(args.settle)
        idle = {"calls_served": 0, "round": 0, **snapshot(srv)}
        samples = [idle]
        served = 0
        round_s = args.calls / args.rate + 60
        for n in range(1, args.rounds + 1):
            if time.monotonic() - started + round_s > args.max_minutes * 60:
                print(f"leak_rounds: stopping before round {n}: --max-minutes {args.max_minutes}", flush=True)
                break
            sipp = drive.Sipp("full_flow.xml", args.workdir / f"round-{n:02d}", PORTS.sip, SIPP_SIGNAL, SIPP_MEDIA,
                              rtp_ports=[SIPP_MEDIA], rate=args.rate, total=args.calls, limit=4 * args.workers,
                              pause_ms=500, service=rig.FULL_NUMBER, sets=FULL_SETS,
                              timeout_s=args.calls / args.rate + 60, extra=["-rtp_echo"]).start()
            sipp.wait()
            res = sipp.result()
            served += res["successful"]
            live_after = settle(srv, 60)
            time.sleep(args.settle)
            snap = snapshot(srv)
            samples.append({"calls_served": served, "round": n, "sipp": {k: res[k] for k in (
                "created", "successful", "failed", "exit_code", "failure_kinds")}, "live_after_round": live_after,
                **snap})
            tot = snap["roles"]["total"]
            print(f"round {n}: {res['successful']}/{res['created']} ok, served {served}; PSS {tot['pss_kb']} kB, "
                  f"USS {tot['uss_kb']} kB, fds {tot['fds']}, live {snap['live_calls']}; load {rig.loadavg()}",
                  flush=True)
        fds = [s["roles"]["total"]["fds"] for s in samples[1:]]
        return {"idle": idle, "samples": samples, "slopes": slopes(samples[1:]) if len(samples) > 2 else {},
                "fds_after_rounds": fds, "fds_idle": idle["roles"]["total"]["fds"],
                "fds_bounded": bool(fds) and max(fds) - min(fds) <= FDS_SLACK,
                "live_back_to_zero": all(s["live_calls"] == 0 for s in samples[1:])}
    finally:
        if sipp is not None:
            sipp.kill()
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--calls", type=int, default=300, help="full-flow calls per round")
    p.add_argument("--rate", type=float, default=3.0, help="calls/s within a round (keep it under the slots)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds idle before each measurement")
    p.add_argument("--max-minutes", type=float, default=20.0)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/ivr-leak-rounds"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if not (1 <= args.rounds <= 20 and 1 <= args.calls <= 2000 and 0 < args.rate <= 50 and args.max_minutes <= 60):
        p.error("bounded by design: 1-20 rounds of at most 2,000 calls, at most 50 calls/s, at most 60 minutes")
    args.workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # so `run`'s finally stops the server
    out: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
           "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    out.update(run(args))
    out["loadavg_after"] = rig.loadavg()
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({"slopes": out["slopes"], "fds_after_rounds": out["fds_after_rounds"],
                      "fds_bounded": out["fds_bounded"],
                      "live_back_to_zero": out["live_back_to_zero"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
