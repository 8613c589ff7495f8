"""bench/capacity.py's soak phase: a long run at a steady rate with media calls held alongside.

Every --soak-sample s (default 10) it samples the server's process tree: RSS and PSS per role (controller,
workers, Kamailio), open file descriptors (of every process, summed per role), the live-call gauge
(`ivr_live_calls` on the admin /metrics, /healthz's `live_calls` if the gauge is absent) and CPU per role.
At the end: the slope of each series per minute (least squares over the samples after the first
--soak-warmup s, while the load ramps up, and before the flow's last calls drain), whether it is flat within
a stated tolerance (FLAT_MEMORY, FLAT_COUNT), and the verdicts: 0 failed calls, and every call SIPp placed
recorded exactly once in the records store (rows of the store's `calls` table counted per SIP Call-ID against
the Call-IDs SIPp numbered).
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import drive
import rig

FLAT_MEMORY = 0.01
"""Memory counts as flat when it grows by less than 1% of its mean over the whole soak."""
FLAT_COUNT = 0.02
"""fds and live calls count as flat when they move by less than 2% of the mean (+2) over the whole soak."""
PROCESS_FDS_SLACK = 4
"""One process's fds (the steepest of all) may drift by 2% + 4 over the soak: a worker's count follows its
calls (media sockets), so a single process is noisier than the sum."""


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, in value per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return 60 * sum((t - mx) * (v - my) for t, v in points) / sxx


def live_gauge(srv: rig.Server) -> float | None:
    """The live-call gauge of the admin endpoint (None if it did not answer within 5 s: a gap in the series,
    counted in `live_gauge_unanswered`, never a value)."""
    base = f"http://{rig.HOST}:{srv.ports.admin}"
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("ivr_live_calls "):
                    return float(line.split()[1])
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
            return float(json.load(r)["live_calls"])
    except (OSError, ValueError, KeyError):
        return None


def sample(srv: rig.Server, t: float) -> dict[str, Any]:
    assert srv.proc is not None
    pids, root = srv.refresh(), srv.proc.pid
    fds = rig.fds_per_process(pids)
    return {"t_s": round(t, 1), "memory": rig.memory_by_role(pids, root), "fds": rig.fds_by_role(fds, root),
            "fds_per_process": {str(pid): n for pid, n in fds.items()},
            "live_calls": live_gauge(srv), "cpu_s": {k: round(v, 2) for k, v in rig.cpu_by_role(pids, root).items()},
            "processes": len(pids), "loadavg": rig.loadavg()}


def series(samples: list[dict[str, Any]], warmup_s: float, end_s: float) -> dict[str, list[tuple[float, float]]]:
    """The judged series, (t, value) after the warm-up and before the load ends (SIPp's last calls drain)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        if not warmup_s <= s["t_s"] <= end_s:
            continue
        t = s["t_s"]
        for role, mem in s["memory"].items():
            out.setdefault(f"pss_kb.{role}", []).append((t, mem["pss_kb"]))
            out.setdefault(f"rss_kb.{role}", []).append((t, mem["rss_kb"]))
        for role, fds in s["fds"].items():
            out.setdefault(f"fds.{role}", []).append((t, fds["fds"]))
        out.setdefault("fds.max_per_process", []).append((t, s["fds"].get("total", {}).get("max_per_process", 0)))
        if s["live_calls"] is not None and s["live_calls"] >= 0:  # (-1: an unanswered sample of an older run)
            out.setdefault("live_calls", []).append((t, s["live_calls"]))
        for pid, n in s.get("fds_per_process", {}).items():
            out.setdefault(f"fds.pid.{pid}", []).append((t, n))
    return out


def trends(samples: list[dict[str, Any]], warmup_s: float, end_s: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    per_process: list[tuple[float, str, list[tuple[float, float]]]] = []
    for name, points in series(samples, warmup_s, end_s).items():
        if name.startswith("fds.pid."):  # every process's own fds: the one with the steepest slope is judged
            per_process.append((abs(slope_per_minute(points) or 0.0), name, points))
            continue
        slope = slope_per_minute(points)
        mean = sum(v for _, v in points) / len(points)
        minutes = (points[-1][0] - points[0][0]) / 60
        if name.startswith(("pss", "rss")):
            tolerance = FLAT_MEMORY * mean
        else:
            tolerance = FLAT_COUNT * mean + 2
        drift = None if slope is None else slope * minutes
        out[name] = {"slope_per_min": None if slope is None else round(slope, 2), "mean": round(mean, 1),
                     "first": points[0][1], "last": points[-1][1], "drift_over_soak": None if drift is None
                     else round(drift, 1), "tolerance": round(tolerance, 1),
                     "flat": drift is not None and abs(drift) <= tolerance}
    if per_process:
        _, name, points = max(per_process)
        slope = slope_per_minute(points) or 0.0
        drift = slope * (points[-1][0] - points[0][0]) / 60
        mean = sum(v for _, v in points) / len(points)
        tolerance = FLAT_COUNT * mean + PROCESS_FDS_SLACK
        out["fds.steepest_process"] = {"pid": name.rsplit(".", 1)[1], "slope_per_min": round(slope, 2),
                                       "first": points[0][1], "last": points[-1][1], "drift_over_soak": round(drift, 1),
                                       "tolerance": round(tolerance, 1), "flat": abs(drift) <= tolerance,
                                       "processes": len(per_process)}
    return out


def records_check(db: Path, placed: set[str], wait_s: float = 30.0) -> dict[str, Any]:
    """Rows of the records store per SIP Call-ID, against the Call-IDs SIPp placed. Waits (up to wait_s) until
    the store stops growing: the controller writes records in batches through its spool."""
    if not db.exists():
        return {"error": f"no records store at {db}", "ok": False}
    end, last, stable_since = time.monotonic() + wait_s, -1, time.monotonic()
    counts: dict[str, int] = {}
    while True:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0) as con:
            rows = con.execute("SELECT sip_call_id, COUNT(*) FROM calls GROUP BY sip_call_id").fetchall()
        counts = {str(cid): int(n) for cid, n in rows}
        total = sum(counts.values())
        if total != last:
            last, stable_since = total, time.monotonic()
        if time.monotonic() - stable_since >= 3.0 or time.monotonic() > end:
            break
        time.sleep(0.5)
    missing = sorted(cid for cid in placed if cid not in counts)
    twice = {cid: n for cid, n in counts.items() if cid in placed and n > 1}
    return {"placed": len(placed), "recorded_once": sum(1 for cid in placed if counts.get(cid) == 1),
            "missing": len(missing), "missing_head": missing[:5], "more_than_once": len(twice),
            "more_than_once_head": dict(list(twice.items())[:5]),
            "rows_of_other_calls": sum(n for cid, n in counts.items() if cid not in placed),
            "ok": not missing and not twice}


def run(bench: Any, srv: rig.Server, idle_cores: float, *, meter_base: int,
        cpu_report: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The soak: held media calls first, then the full flow at a steady rate; samples until the flow ends."""
    a = bench.args
    seconds = a.soak_minutes * 60
    run_dir = bench.run_dir(f"soak-{a.soak_rate}cps-{a.soak_hold}held")
    load0, t00 = rig.loadavg(), time.monotonic()
    hold = hold_meter = None
    with rig.DropWatch(bench.drop_ranges(srv)) as drops:
        if a.soak_hold:
            hold, hold_meter = bench.hold(srv, a.soak_hold, seconds + 30, run_dir / "hold", ramp=a.ramp)
            time.sleep(a.soak_hold / a.ramp + 1.5)
        meter = drive.Meter(meter_base, min(1400, max(200, a.soak_rate * 8)), run_dir)
        flow = bench.full_flow(srv, a.soak_rate, seconds, run_dir / "flow")
        flow.rtp_ports = meter.ports
        offset, cpu0, t0 = srv.log_offset(), srv.cpu(), time.monotonic()
        samples = [sample(srv, 0.0)]
        flow.start()
        assert flow.proc is not None
        deadline = t0 + seconds + 120
        while flow.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(max(0.0, t0 + len(samples) * a.soak_sample - time.monotonic()))
            samples.append(sample(srv, time.monotonic() - t0))
            s = samples[-1]
            pss_mb = s["memory"]["total"]["pss_kb"] // 1024
            print(f"  soak {s['t_s']:.0f} s: live {s['live_calls']}, PSS {pss_mb} MB, "
                  f"fds {s['fds']['total']['fds']}, load {s['loadavg'][0]}", flush=True)
        flow.wait()
        cpu1, wall = srv.cpu(), time.monotonic() - t0
        if hold is not None:
            hold.wait()
        time.sleep(1.0)
    res = flow.result()
    hres = hold.result() if hold is not None else None
    rtp_flow = meter.stop()
    rtp_hold = hold_meter.stop() if hold_meter is not None else None
    placed = flow.call_ids() | (hold.call_ids() if hold is not None else set())
    records = records_check(srv.workdir / "run" / "records.sqlite3", placed)
    trend = trends(samples, a.soak_warmup, seconds)
    out: dict[str, Any] = {
        "minutes": a.soak_minutes, "rate_cps": a.soak_rate, "hold_calls": a.soak_hold, "sample_s": a.soak_sample,
        "warmup_s": a.soak_warmup, "wall_s": round(wall, 1), "loadavg_before": load0, "loadavg_after": rig.loadavg(),
        "flow": res, "hold": hres, "rtp_flow": rtp_flow, "rtp_hold": rtp_hold, "drops": drops.result(),
        "server": drive.summarize_calls(drive.call_ended_lines(srv.log, offset)),
        "cpu": cpu_report(cpu0, cpu1, wall, idle_cores, res["successful"]),
        "cpu_note": "per full-flow call, the held calls' media included (their CPU is not split off)",
        "records": records, "trends": trend, "samples": samples,
        "live_gauge_unanswered": sum(1 for sm in samples if sm["live_calls"] is None),
        "elapsed_s": round(time.monotonic() - t00, 1)}
    failed = res["failed"] + (hres["failed"] + hres["rejected"] if hres else 0)
    expected_ok = int(a.soak_rate * seconds) + (a.soak_hold if hres else 0)
    ok_calls = res["successful"] + (hres["successful"] if hres else 0)
    judged = [k for k in trend if k.startswith(("pss_kb.total", "rss_kb.total", "fds.total", "fds.steepest", "live"))]
    out["verdicts"] = {"zero_failed": failed == 0 and ok_calls == expected_ok,
                       "recorded_once": bool(records.get("ok")),
                       "flat": {k: trend[k]["flat"] for k in judged}}
    out["ok"] = (out["verdicts"]["zero_failed"] and out["verdicts"]["recorded_once"]
                 and all(out["verdicts"]["flat"].values()))
    return out
