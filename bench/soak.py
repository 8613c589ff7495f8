"""bench/capacity.py's soak phase: a long run at a steady rate with media calls held alongside, judged as a
leak test.

Samples (every --soak-sample s, default 10) of the server's process tree: RSS and PSS per role (controller,
workers, Kamailio), open file descriptors (of every process, summed per role), the live-call gauge
(`ivr_live_calls` on the admin /metrics, /healthz's `live_calls` if the gauge is absent), CPU per role, and
SIPp's count of flow calls placed so far. Each sample has a phase:

  idle_before   one sample before the held calls are placed, once the live-call gauge reads 0 (an earlier
                phase's calls may still be ending; waits at most --soak-drain s): the baseline
  load          while the flow runs (`placing`: SIPp has not yet placed its last call)
  ramp_down     the flow's and then the held calls' last calls ending
  idle_after    after every call ended: sampled every DRAIN_POLL_S until live calls and fds are back to the
                baseline, for at most --soak-drain s (the last one is the verdict's)

What leaks is judged where a leak shows, not where the gauges merely follow the calls in flight:
- `back_to_idle`: idle after == idle before, exactly, for the live-call gauge and the open fds (total and
  per role; per process listed when they differ), except a worker's last prompt player, whose WAV files
  pjmedia closes at the worker's next call (DEFERRED_PLAYER_FDS: at most 2 per worker, WAV files only,
  sockets/pipes exact; reported as `fds_excess_is_deferred_players`). fds and live calls follow the calls in
  flight at the sample instant (a call's RTP sockets), so only the idle ends can judge them.
- `memory_flat`: RSS/PSS slope (least squares, per minute) over the steady window only: samples of the
  `load` phase after --soak-warmup s while SIPp was still placing calls (not the ramp-up, not the ramp-down),
  flat when the drift over that window is within FLAT_MEMORY of its mean. Memory's warm-up (a worker's first
  calls copy the zygote's shared pages, pools grow to the load's high-water mark) is reported, not judged:
  idle after - idle before, and the growth from the baseline to the steady window's start.
- reported, not judged: the fds' and live calls' slopes over the steady window, and the fds normalised by the
  live calls (least squares fds = a + b x live: b = fds per live call, and the slope of what is left).
Plus: 0 failed calls, and every call SIPp placed recorded exactly once in the records store (rows of the
store's `calls` table counted per SIP Call-ID against the Call-IDs SIPp numbered).

Samples recorded before this scheme (no phase, no idle samples) are judged on the same steady window
(t >= warm-up and before the flow's end - RAMP_DOWN_MARGIN_S); `back_to_idle` is then `None`: not measured.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import digit_latency
import drive
import rig

FLAT_MEMORY = 0.01
"""Memory counts as flat when it drifts by less than 1% of its mean over the steady window."""
FLAT_COUNT = 0.02
"""(Reported only) fds and live calls: 'flat' when they drift by less than 2% of the mean (+2) over the window."""
RAMP_DOWN_MARGIN_S = 5.0
"""Samples without a phase (older runs): the steady window ends this long before the flow's end."""
DRAIN_POLL_S = 2.0
DEFERRED_PLAYER_FDS = 2
"""A worker may keep its last prompt player's WAV files open at idle (a playlist: 2): pjmedia's conference
bridge (asynchronous since pjproject 2.14) removes a port on its clock, which stops with the worker's last
call, so the last player's port and files go at the next call (pjsip/pjproject#4253). Bounded: at most one
player per worker, whatever the number of calls (a probe of 6 and 16 held calls on 2 workers left exactly one
per worker). `back_to_idle` accepts that excess, WAV files in workers only, every other fd kind exact."""
JUDGED_MEMORY = ("pss_kb.total", "rss_kb.total")

Sample = dict[str, Any]


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (x, y) points; None when x does not vary (or fewer than two points)."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, in value per minute (None under three points)."""
    slope = least_squares_slope(points) if len(points) >= 3 else None
    return None if slope is None else 60 * slope


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


def fd_kinds(pids: list[int], root: int) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Open fds per role by kind (socket, pipe, anon_inode, file, other), and the files' paths per role with
    their counts: what a difference at idle is made of."""
    kinds: dict[str, dict[str, int]] = {}
    files: dict[str, dict[str, int]] = {}
    for pid in pids:
        role = rig.role_of(pid, root) or "other"
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            if target.startswith("/"):
                kind = "file"
                acc = files.setdefault(role, {})
                acc[target] = acc.get(target, 0) + 1
            else:
                kind = target.split(":", 1)[0] if ":" in target else "other"
            kinds.setdefault(role, {})[kind] = kinds.setdefault(role, {}).get(kind, 0) + 1
    return kinds, files


def sample(srv: rig.Server, t: float, phase: str, placing: bool | None = None) -> Sample:
    assert srv.proc is not None
    pids, root = srv.refresh(), srv.proc.pid
    fds = rig.fds_per_process(pids)
    out: Sample = {"t_s": round(t, 1), "phase": phase, "memory": rig.memory_by_role(pids, root),
                   "fds": rig.fds_by_role(fds, root), "fds_per_process": {str(pid): n for pid, n in fds.items()},
                   "live_calls": live_gauge(srv),
                   "cpu_s": {k: round(v, 2) for k, v in rig.cpu_by_role(pids, root).items()},
                   "processes": len(pids), "loadavg": rig.loadavg()}
    if placing is not None:
        out["placing"] = placing
    if phase.startswith("idle"):
        out["fd_kinds"], out["fd_files"] = fd_kinds(pids, root)
    return out


# --- the verdicts' arithmetic (pure: samples in, figures out) ------------------------------------------------


def steady(samples: list[Sample], warmup_s: float, end_s: float) -> list[Sample]:
    """The steady window: `load` samples after the warm-up while SIPp was still placing calls. Samples without
    a phase (older runs): after the warm-up and RAMP_DOWN_MARGIN_S before the flow's end (`end_s`)."""
    out = []
    for s in samples:
        if s["t_s"] < warmup_s:
            continue
        if "phase" in s:
            if s["phase"] == "load" and s.get("placing", True):
                out.append(s)
        elif s["t_s"] <= end_s - RAMP_DOWN_MARGIN_S:
            out.append(s)
    return out


def series(samples: list[Sample]) -> dict[str, list[tuple[float, float]]]:
    """(t, value) series of the given samples: memory and fds per role, the live-call gauge."""
    out: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        t = s["t_s"]
        for role, mem in s["memory"].items():
            out.setdefault(f"pss_kb.{role}", []).append((t, mem["pss_kb"]))
            out.setdefault(f"rss_kb.{role}", []).append((t, mem["rss_kb"]))
        for role, fds in s["fds"].items():
            out.setdefault(f"fds.{role}", []).append((t, fds["fds"]))
        if s["live_calls"] is not None and s["live_calls"] >= 0:  # (-1: an unanswered sample of an older run)
            out.setdefault("live_calls", []).append((t, s["live_calls"]))
    return out


def trend(points: list[tuple[float, float]], tolerance: float) -> dict[str, Any]:
    """Slope per minute over the points, drift over their span, flat when |drift| <= tolerance."""
    slope = slope_per_minute(points)
    mean = sum(v for _, v in points) / len(points)
    minutes = (points[-1][0] - points[0][0]) / 60
    drift = None if slope is None else slope * minutes
    return {"slope_per_min": None if slope is None else round(slope, 2), "mean": round(mean, 1),
            "first": points[0][1], "last": points[-1][1], "minutes": round(minutes, 2),
            "drift": None if drift is None else round(drift, 1), "tolerance": round(tolerance, 1),
            "flat": drift is not None and abs(drift) <= tolerance}


def trends(window: list[Sample]) -> dict[str, dict[str, Any]]:
    """Every series' trend over the steady window (memory: FLAT_MEMORY of the mean; counts: FLAT_COUNT + 2)."""
    out: dict[str, dict[str, Any]] = {}
    for name, points in series(window).items():
        mean = sum(v for _, v in points) / len(points)
        tolerance = FLAT_MEMORY * mean if name.startswith(("pss", "rss")) else FLAT_COUNT * mean + 2
        out[name] = trend(points, tolerance)
    return out


def per_live_call(window: list[Sample], baseline: Sample | None = None) -> dict[str, Any] | None:
    """fds.total against the live-call gauge over the window. With the idle baseline: each sample's fds above
    the baseline per live call (mean) and the slope per minute of what the calls in flight do not explain
    (excess - mean x live). Without one (older runs): least squares fds = a + b x live, b per call, a at no
    call, the residual's slope (unreliable when the live calls barely vary). Reported, not judged."""
    pts = [(s["t_s"], float(s["live_calls"]), float(s["fds"]["total"]["fds"])) for s in window
           if s["live_calls"] is not None and s["live_calls"] > 0]
    if len(pts) < 3:
        return None
    n = len(pts)
    if baseline is not None:
        a = float(baseline["fds"]["total"]["fds"])
        b = sum(fds - a for _, _, fds in pts) / sum(live for _, live, _ in pts)
        method = "excess over the idle baseline / live calls"
    else:
        mx, my = sum(p[1] for p in pts) / n, sum(p[2] for p in pts) / n
        sxx = sum((p[1] - mx) ** 2 for p in pts)
        b = sum((p[1] - mx) * (p[2] - my) for p in pts) / sxx if sxx else 0.0
        a = my - b * mx
        method = "least squares over the window (no idle baseline)"
    residual = [(t, fds - (a + b * live)) for t, live, fds in pts]
    slope = slope_per_minute(residual)
    minutes = (pts[-1][0] - pts[0][0]) / 60
    return {"method": method, "fds_per_live_call": round(b, 2), "fds_at_no_call": round(a, 1),
            "residual_slope_per_min": None if slope is None else round(slope, 2),
            "residual_drift": None if slope is None else round(slope * minutes, 1), "samples": n}


def back_to_idle(before: Sample | None, after: Sample | None) -> dict[str, Any] | None:
    """Idle after the load vs idle before it: live calls and fds exactly back (total, per role; processes whose
    count differs listed); memory's warm-up (after - before) per role, reported. None: not measured."""
    if before is None or after is None:
        return None
    roles = sorted(set(before["fds"]) | set(after["fds"]))
    fds = {r: {"before": before["fds"].get(r, {}).get("fds", 0), "after": after["fds"].get(r, {}).get("fds", 0)}
           for r in roles}
    for v in fds.values():
        v["diff"] = v["after"] - v["before"]
    pb, pa = before["fds_per_process"], after["fds_per_process"]
    differing = {pid: [pb[pid], pa[pid]] for pid in pb if pid in pa and pb[pid] != pa[pid]}
    memory = {r: {"pss_kb_before": m["pss_kb"], "pss_kb_after": after["memory"].get(r, {}).get("pss_kb"),
                  "rss_kb_before": m["rss_kb"], "rss_kb_after": after["memory"].get(r, {}).get("rss_kb")}
              for r, m in before["memory"].items()}
    for m in memory.values():
        m["pss_warm_up_kb"] = None if m["pss_kb_after"] is None else m["pss_kb_after"] - m["pss_kb_before"]
    live_back = after["live_calls"] is not None and after["live_calls"] == before["live_calls"]
    fds_back = all(v["diff"] == 0 for v in fds.values())
    files = _differing_files(before.get("fd_files") or {}, after.get("fd_files") or {})
    kinds_b, kinds_a = before.get("fd_kinds") or {}, after.get("fd_kinds") or {}
    extra = max((a - b for b, a in differing.values()), default=0)
    deferred = (not fds_back and "fd_files" in before and "fd_files" in after and not (set(pb) ^ set(pa))
                and extra <= DEFERRED_PLAYER_FDS
                and {r for r, v in fds.items() if v["diff"]} <= {"workers", "total"}
                and set(files) <= {"workers"}
                and all(p.endswith(".wav") for p in files.get("workers", {}))
                and all({k: n for k, n in kinds_b.get(r, {}).items() if k != "file"}
                        == {k: n for k, n in kinds_a.get(r, {}).items() if k != "file"} for r in kinds_b))
    return {"live_calls": {"before": before["live_calls"], "after": after["live_calls"], "back": live_back},
            "fds": fds, "fds_back": fds_back, "fds_excess_is_deferred_players": deferred,
            "processes": {"before": before["processes"], "after": after["processes"]},
            "pids_gone": sorted(set(pb) - set(pa)), "pids_new": sorted(set(pa) - set(pb)),
            "fds_differing_processes": differing, "fds_max_extra_per_process": extra, "memory": memory,
            "fd_kinds": {"before": kinds_b, "after": kinds_a}, "fd_files_differing": files,
            "after_t_s": after["t_s"], "ok": live_back and (fds_back or deferred)}


def _differing_files(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per role, the files open a different number of times after than before: {path: [before, after]}."""
    out: dict[str, Any] = {}
    for role in sorted(set(before) | set(after)):
        b, a = before.get(role, {}), after.get(role, {})
        diff = {path: [b.get(path, 0), a.get(path, 0)] for path in sorted(set(b) | set(a))
                if b.get(path) != a.get(path)}
        if diff:
            out[role] = diff
    return out


def judge(samples: list[Sample], warmup_s: float, end_s: float) -> dict[str, Any]:
    """The leak verdicts from the samples alone (see the module docstring)."""
    before = next((s for s in samples if s.get("phase") == "idle_before"), None)
    after = next((s for s in reversed(samples) if s.get("phase") == "idle_after"), None)
    window = steady(samples, warmup_s, end_s)
    tr = trends(window) if window else {}
    memory_flat = {k: bool(tr.get(k, {}).get("flat")) for k in JUDGED_MEMORY}
    first = window[0] if window else None
    warm = ({r: m["pss_kb"] - before["memory"].get(r, {}).get("pss_kb", 0) for r, m in first["memory"].items()}
            if before is not None and first is not None else None)
    idle = back_to_idle(before, after)
    return {"steady_window": {"from_s": first["t_s"] if first else None,
                              "to_s": window[-1]["t_s"] if window else None, "samples": len(window)},
            "trends": tr, "memory_flat": memory_flat, "pss_kb_growth_to_steady_window": warm,
            "per_live_call": per_live_call(window, before), "back_to_idle": idle,
            "leak_free": None if idle is None else bool(window and all(memory_flat.values()) and idle["ok"])}


# --- the run -------------------------------------------------------------------------------------------------


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


def wait_idle(srv: rig.Server, limit_s: float) -> dict[str, Any]:
    """Before the baseline: wait (at most limit_s) until the live-call gauge reads 0 (an earlier phase's calls
    may still be ending) and then one more DRAIN_POLL_S (their players and media are released just after)."""
    t0, live = time.monotonic(), live_gauge(srv)
    while live != 0 and time.monotonic() - t0 < limit_s:
        time.sleep(DRAIN_POLL_S)
        live = live_gauge(srv)
    time.sleep(DRAIN_POLL_S)
    return {"waited_s": round(time.monotonic() - t0, 1), "live_calls": live}


def drain(srv: rig.Server, baseline: Sample, t0: float, limit_s: float) -> list[Sample]:
    """idle_after samples every DRAIN_POLL_S until `back_to_idle` holds against the baseline (live calls and fds
    back, a worker's deferred last player aside) or limit_s has passed; the last one is the verdict's."""
    out: list[Sample] = []
    end = time.monotonic() + limit_s
    while True:
        s = sample(srv, time.monotonic() - t0, "idle_after")
        out.append(s)
        idle = back_to_idle(baseline, s)
        if (idle is not None and idle["ok"]) or time.monotonic() + DRAIN_POLL_S > end:
            return out
        time.sleep(DRAIN_POLL_S)


def run(bench: Any, srv: rig.Server, idle_cores: float, *, meter_base: int,
        cpu_report: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The soak: the idle baseline, held media calls, then the full flow at a steady rate (and `--digit-rate`
    RFC 4733 digit callers); samples until every call has ended and the server is idle again."""
    a = bench.args
    seconds = a.soak_minutes * 60
    run_dir = bench.run_dir(f"soak-{a.soak_rate}cps-{a.soak_hold}held")
    load0, t00 = rig.loadavg(), time.monotonic()
    idle_wait = wait_idle(srv, a.soak_drain)
    samples = [sample(srv, -(a.soak_hold / a.ramp + 1.5) if a.soak_hold else 0.0, "idle_before")]
    hold = hold_meter = None
    meter: drive.Meter | None = None
    flow: drive.Sipp | None = None
    digits: digit_latency.DigitCallers | None = None
    try:
        with rig.DropWatch(bench.drop_ranges(srv)) as drops:
            if a.soak_hold:
                hold, hold_meter = bench.hold(srv, a.soak_hold, seconds + 30, run_dir / "hold", ramp=a.ramp)
                time.sleep(a.soak_hold / a.ramp + 1.5)
            meter = drive.Meter(meter_base, min(1400, max(200, a.soak_rate * 8)), run_dir)
            flow = bench.full_flow(srv, a.soak_rate, seconds, run_dir / "flow")
            flow.rtp_ports = meter.ports
            digits = bench.digit_callers(srv, seconds, run_dir)
            total = int(a.soak_rate * seconds)
            offset, cpu0, t0 = srv.log_offset(), srv.cpu(), time.monotonic()
            flow.start()
            if digits:
                digits.start()
            assert flow.proc is not None
            deadline = t0 + seconds + 120

            def tick(phase: Callable[[], tuple[str, bool | None]]) -> None:
                time.sleep(max(0.0, t0 + len(samples) * a.soak_sample - time.monotonic()))
                name, placing = phase()
                samples.append(sample(srv, time.monotonic() - t0, name, placing))
                s = samples[-1]
                print(f"  soak {s['t_s']:.0f} s ({name}): live {s['live_calls']}, PSS "
                      f"{s['memory']['total']['pss_kb'] // 1024} MB, fds {s['fds']['total']['fds']}, "
                      f"load {s['loadavg'][0]}", flush=True)

            def flow_phase() -> tuple[str, bool]:
                # steady only while SIPp has more than a second of calls left to place (its stat file lags <= 1 s)
                placing = flow.created() < total - a.soak_rate
                return ("load" if placing else "ramp_down"), placing

            while flow.proc.poll() is None and time.monotonic() < deadline:
                tick(flow_phase)
                if digits and digits.marked is None and samples[-1]["t_s"] >= a.soak_warmup:
                    digits.mark(samples[-1]["t_s"])  # the digits' delay in the steady window, apart (retried)
            flow.wait()
            cpu1, wall = srv.cpu(), time.monotonic() - t0
            if digits:
                digits.wait()
            while hold is not None and hold.proc is not None and hold.proc.poll() is None and \
                    time.monotonic() < deadline + 60:
                tick(lambda: ("ramp_down", None))
            if hold is not None:
                hold.wait()
            samples.extend(drain(srv, samples[0], t0, a.soak_drain))
    except BaseException:  # never leave SIPp or a meter running (they hold the bench's fixed ports)
        for sipp in (flow, hold, digits.sipp if digits else None):
            if sipp is not None:
                sipp.kill()
        for m in (meter, hold_meter):
            if m is not None:
                m.stop()
        raise
    assert flow is not None and meter is not None
    res = flow.result()
    hres = hold.result() if hold is not None else None
    rtp_flow = meter.stop()
    rtp_hold = hold_meter.stop() if hold_meter is not None else None
    placed = flow.call_ids() | (hold.call_ids() if hold is not None else set())
    placed |= digits.sipp.call_ids() if digits else set()
    records = records_check(srv.workdir / "run" / "records.sqlite3", placed)
    verdict = judge(samples, a.soak_warmup, seconds)
    out: dict[str, Any] = {
        "minutes": a.soak_minutes, "rate_cps": a.soak_rate, "hold_calls": a.soak_hold, "sample_s": a.soak_sample,
        "warmup_s": a.soak_warmup, "drain_limit_s": a.soak_drain, "idle_wait": idle_wait, "wall_s": round(wall, 1),
        "loadavg_before": load0, "loadavg_after": rig.loadavg(),
        "flow": res, "hold": hres, "rtp_flow": rtp_flow, "rtp_hold": rtp_hold, "drops": drops.result(),
        "server": drive.summarize_calls(drive.call_ended_lines(srv.log, offset)),
        "cpu": cpu_report(cpu0, cpu1, wall, idle_cores, res["successful"]),
        "cpu_note": "per full-flow call, the held calls' media included (their CPU is not split off)",
        "digits": digits.result() if digits else None,
        "records": records, "leak": verdict, "trends": verdict["trends"], "samples": samples,
        "live_gauge_unanswered": sum(1 for sm in samples if sm["live_calls"] is None),
        "elapsed_s": round(time.monotonic() - t00, 1)}
    failed = res["failed"] + (hres["failed"] + hres["rejected"] if hres else 0)
    expected_ok = total + (a.soak_hold if hres else 0)
    ok_calls = res["successful"] + (hres["successful"] if hres else 0)
    idle = verdict["back_to_idle"]
    out["verdicts"] = {"zero_failed": failed == 0 and ok_calls == expected_ok
                       and digit_latency.calls_ok(out["digits"]),
                       "recorded_once": bool(records.get("ok")),
                       "back_to_idle": bool(idle and idle["ok"]),
                       "memory_flat": verdict["memory_flat"]}
    out["ok"] = (out["verdicts"]["zero_failed"] and out["verdicts"]["recorded_once"]
                 and out["verdicts"]["back_to_idle"] and all(verdict["memory_flat"].values()))
    return out

