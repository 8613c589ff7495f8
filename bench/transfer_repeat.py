"""How often a refused first transfer still lands in the fallback queue, run after run (issue 10's repetitions).

The suite (tests/e2e/test_transfer_fallback.py) places one run of 20 calls at once per refusal kind and checks
every call; this bench repeats those runs to measure rates: how many calls fell back as they should, how many
first attempts the front answered 408 itself (a transferee slower than Kamailio's fr_timer), how many calls
were up at once, SIPp's verdict. A repetition loop measures flakiness, which is bench work, not a test.

Starts `ivr run` on the bench copy of config/ivr.yaml (rig.py; `--workers` behind the managed front, bench
ports 25060/25100+, SIPp 25010, media 25020) with one bench-only flow on number 300: a menu whose "1" transfers
to `sales` (notify_timeout 3 s) and falls back to `default`. The caller scenarios refuse the first REFER in
each way of CASES. 127.0.0.1 only; every SIPp run is bounded by -timeout and the whole run by --max-minutes.

    flock /tmp/bench.lock .venv/bin/python bench/transfer_repeat.py --repeats 5 [--calls 20] [--kinds refer405,...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rig import ROOT, Ports, Server, loadavg  # noqa: E402

PORTS = Ports()
SIPP_PORT, SIPP_MEDIA = 25010, 25020
QUEUE_HOST = "127.0.0.1:5070"
CALLER = "+15553000006"

# kind: scenario, extra SIPp variables, the first attempt's expected (result, code) through the front
CASES: dict[str, tuple[str, dict[str, str], tuple[str, int | None]]] = {
    "refer405": ("refer_reject.xml", {"refer_status": "405"}, ("rejected_405", 405)),
    "refer603": ("refer_reject.xml", {"refer_status": "603"}, ("rejected_603", 603)),
    "notify486": ("notify_fail.xml", {}, ("rejected_486", 486)),
    "refer408": ("refer_timeout.xml", {}, ("rejected_408", 408)),
    "nonotify": ("no_notify.xml", {}, ("no_notify", None)),
}

MENU_FLOW: dict[str, Any] = {
    "description": "BENCH ONLY (bench/transfer_repeat.py): '1' transfers to sales, which the caller's scenario "
                   "refuses; the fallback is the default queue.",
    "steps": [
        {"id": "main_menu", "type": "menu", "prompts": ["main_menu"], "options": {"1": "to_sales"},
         "timeout": "2s", "attempts": 3, "on_exhausted": "goodbye"},
        {"id": "to_sales", "type": "transfer", "queue": "sales", "notify_timeout": "3s", "on_fail": "to_default"},
        {"id": "to_default", "type": "transfer", "queue": "default", "notify_timeout": "3s", "on_fail": "goodbye"},
        {"id": "goodbye", "type": "hangup", "prompts": ["goodbye"], "reason": "menu_exhausted"}]}


def tweak(cfg: dict[str, Any]) -> None:
    cfg["flows"]["bench_transfer_menu"] = MENU_FLOW
    cfg["numbers"]["300"] = "bench_transfer_menu"


def peak_overlap(lines: list[dict[str, Any]]) -> int:
    edges = sorted([(line["started_at"], 1) for line in lines] + [(line["ended_at"], -1) for line in lines])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    return peak


def verdict(line: dict[str, Any], first: tuple[str, int | None]) -> str:
    """'ok' when the call fell back as issue 10 says (first attempt refused, then `ok` on default), else why not."""
    attempts = [(t.get("queue"), t.get("result"), t.get("code")) for t in line.get("transfers", [])]
    outcome = line.get("outcome") or {}
    if (outcome.get("kind"), outcome.get("reason"), outcome.get("queue")) != ("transfer", "transferred", "default"):
        return f"outcome {outcome.get('reason') or line.get('end_reason')}"
    if not attempts or attempts[0] not in (("sales", *first), ("sales", "rejected_408", 408)):
        return f"first attempt {attempts[:1]}"
    if len(attempts) != 2 or attempts[1][:2] != ("default", "ok"):
        return f"attempts {attempts}"
    return "ok"


def ended_lines(server: Server, offset: int) -> list[dict[str, Any]]:
    with server.log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [json.loads(line) for line in text.splitlines() if '"call.ended"' in line and line.startswith("{")]


def one_run(server: Server, workdir: Path, kind: str, repeat: int, calls: int) -> dict[str, Any]:
    scenario, variables, first = CASES[kind]
    tag = f"{kind}r{repeat}"
    offset = server.log_offset()
    cmd = [shutil.which("sipp") or "sipp", f"127.0.0.1:{PORTS.sip}", "-sf", str(ROOT / "sipp-scenarios" / scenario),
           "-s", "300", "-i", "127.0.0.1", "-p", str(SIPP_PORT), "-mi", "127.0.0.1", "-mp", str(SIPP_MEDIA),
           "-m", str(calls), "-l", str(calls), "-r", "2000", "-cid_str", f"{tag}-%u-%p@%s", "-timeout", "60s",
           "-timeout_error", "-nostdin", "-set", "caller", CALLER, "-set", "digits", "1",
           "-set", "expected_refer", f"sip:sales@{QUEUE_HOST}"]
    for name, value in variables.items():
        cmd += ["-set", name, value]
    load = loadavg()
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - started
    deadline = time.monotonic() + 30  # the server's call.ended lines follow SIPp's end by a little
    while True:
        ours = [e for e in ended_lines(server, offset) if str(e.get("sip_call_id", "")).startswith(f"{tag}-")]
        if len(ours) >= calls or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    verdicts = Counter(verdict(line, first) for line in ours)
    return {"kind": kind, "repeat": repeat, "calls": calls, "sipp_exit": done.returncode, "wall_s": round(wall, 1),
            "load_before": load, "records": len(ours), "fell_back": verdicts.get("ok", 0),
            "not_fallen_back": {k: v for k, v in verdicts.items() if k != "ok"},
            "front_408": sum(1 for e in ours if e.get("transfers") and e["transfers"][0].get("result") == "rejected_408"
                             and first[0] != "rejected_408"),
            "workers": len({e.get("worker") for e in ours}),
            "peak_overlap": peak_overlap(ours) if ours else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="calls per run, all at once (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=6, help="default 6: 24 slots for 20 calls")
    parser.add_argument("--kinds", default=",".join(CASES))
    parser.add_argument("--max-minutes", type=float, default=6.0)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    unknown = [k for k in kinds if k not in CASES]
    if unknown:
        parser.error(f"unknown kinds {unknown}; known: {list(CASES)}")
    end = time.monotonic() + 60 * args.max_minutes
    results: list[dict[str, Any]] = []
    load_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="transfer-repeat-") as tmp:
        server = Server(workers=args.workers, workdir=Path(tmp) / "server", ports=PORTS, tweak=tweak).start()
        try:
            for repeat in range(args.repeats):
                for kind in kinds:
                    if time.monotonic() > end:
                        print(f"stopped at --max-minutes {args.max_minutes}", flush=True)
                        break
                    result = one_run(server, Path(tmp), kind, repeat, args.calls)
                    results.append(result)
                    print(json.dumps(result), flush=True)
                else:
                    continue
                break
        finally:
            server.stop()
    summary = []
    print(f"{'kind':<10} {'runs':>4} {'calls':>5} {'fell back':>9} {'sipp fails':>10} {'front 408':>9} "
          f"{'peak up at once':>15}")
    for kind in kinds:
        rs = [r for r in results if r["kind"] == kind]
        if not rs:
            continue
        row = {"kind": kind, "runs": len(rs), "calls": sum(r["calls"] for r in rs),
               "fell_back": sum(r["fell_back"] for r in rs), "sipp_failed_runs": sum(r["sipp_exit"] != 0 for r in rs),
               "front_408": sum(r["front_408"] for r in rs),
               "peak_overlap_min_max": [min(r["peak_overlap"] for r in rs), max(r["peak_overlap"] for r in rs)]}
        summary.append(row)
        print(f"{kind:<10} {row['runs']:>4} {row['calls']:>5} {row['fell_back']:>9} {row['sipp_failed_runs']:>10} "
              f"{row['front_408']:>9} {row['peak_overlap_min_max'][0]:>7}-{row['peak_overlap_min_max'][1]}")
    out = ROOT / "bench" / "results" / f"transfer-repeat-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"command": sys.argv, "workers": args.workers, "load_start": load_start,
                               "load_end": loadavg(), "summary": summary, "runs": results}, indent=2))
    print(f"written {out}")
    failed = sum(r["calls"] - r["fell_back"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
