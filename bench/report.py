"""bench/capacity.py's command line, the order of its phases, and its table."""

from __future__ import annotations

import argparse
import time
from typing import Any


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/capacity.py", description="Measured capacity of `ivr run` behind its "
                                "Kamailio front (127.0.0.1 only). See bench/README.md.")
    p.add_argument("--phases", default="rate,hold,combined,scale",
                   help="comma list of rate,ladder,hold,combined,soak,scale (run in this order)")
    p.add_argument("--quick", action="store_true", help="short windows for development (10 s, 4 s idle)")
    p.add_argument("--workers", type=int, default=72, help="workers for rate/hold/combined (default: %(default)s)")
    p.add_argument("--rates", type=_ints, default=[10, 20, 35, 50, 70, 100, 130], help="full-flow rate steps (cps)")
    p.add_argument("--ladder-rates", type=_ints, default=[10, 30, 50, 80, 120, 160, 200, 250],
                   help="the peer kit's call: rate steps (cps), --window s each (default: %(default)s)")
    p.add_argument("--soak-minutes", type=float, default=10.0, help="soak length (default: %(default)s)")
    p.add_argument("--soak-rate", type=int, default=28,
                   help="full-flow cps during the soak (default %(default)s: 80%% of 35, today's sustained rate)")
    p.add_argument("--soak-hold", type=int, default=100, help="media calls held alongside the soak")
    p.add_argument("--soak-sample", type=float, default=10.0, help="seconds between soak samples")
    p.add_argument("--soak-warmup", type=float, default=180.0,
                   help="seconds of the soak left out of the slopes: the load ramps up and the workers' memory "
                   "warms up (their first calls un-share the zygote's pages; ~2 min at 28 cps on 96 workers)")
    p.add_argument("--soak-drain", type=float, default=60.0,
                   help="after the soak's last call: at most this many seconds for live calls and fds to come "
                   "back to the idle baseline (default: %(default)s)")
    p.add_argument("--holds", type=_ints, default=[100, 200, 250, 280], help="concurrent long-call levels")
    p.add_argument("--window", type=float, default=60.0, help="seconds of each rate step and of combined")
    p.add_argument("--hold-window", type=float, default=60.0, help="seconds each hold level is held at full load")
    p.add_argument("--idle", type=float, default=15.0, help="seconds of idle measurement per server")
    p.add_argument("--ramp", type=int, default=25, help="calls/s at which long calls are placed")
    p.add_argument("--combined-hold", type=int, default=200, help="long media calls in the combined phase")
    p.add_argument("--combined-rate", type=int, default=50, help="full-flow cps in the combined phase")
    p.add_argument("--scale-workers", type=_ints, default=[2, 8, 24, 48, 72], help="worker counts for scale")
    p.add_argument("--scale-rate", type=int, default=5, help="full-flow cps at each worker count (scale)")
    p.add_argument("--greeting-ms", type=int, default=500,
                   help="how long the full-flow caller listens before typing (barge-in); default %(default)s")
    p.add_argument("--front-children", type=int, default=1, help="Kamailio UDP receivers (product default 1)")
    p.add_argument("--strict-pike", action="store_true",
                   help="keep the product's pike flood limit (60 requests / 2 s per source IP)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy the controller and worker w000 in rate steps and combined (py-spy in the venv)")
    p.add_argument("--hold-echo", choices=["meter", "sipp"], default="meter",
                   help="who echoes the long calls' RTP: bench/rtpmeter.py (measures loss; ~0.3 core at 200 "
                   "calls) or SIPp's C -rtp_echo (cheaper; loss judged by socket drops only)")
    p.add_argument("--variant", "--worker-variant", dest="variant", default="",
                   help="BENCH-ONLY A/B experiments, comma list of media-thread, front-shm-256, uvloop "
                   "(bench/variant/sitecustomize.py); default: the product as it is")
    p.add_argument("--digit-rate", type=float, default=0.0,
                   help="rate steps (full flow), combined and soak: also this many calls/s that type 1234# as "
                   "RFC 4733 events (SIPp play_pcap_audio, needs root); reports the server's digit delay "
                   "(bench/digit_latency.py); their failures or refusals fail the step")
    p.add_argument("--max-minutes", type=float, default=40.0, help="hard bound on the whole run")
    p.add_argument("--out", help="JSON path (default bench/results/capacity-<UTC time>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.window = min(args.window, 10.0)
        args.hold_window = min(args.hold_window, 10.0)
        args.idle = min(args.idle, 4.0)
    if set(filter(None, args.variant.split(","))) - {"media-thread", "front-shm-256", "uvloop"}:
        p.error("--variant: media-thread, front-shm-256 and/or uvloop")
    args.phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases: {', '.join(sorted(unknown))}")
    args.phases = [ph for ph in PHASES if ph in args.phases]
    top = max(args.rates + args.ladder_rates, default=0)
    if top * args.window > 20000 or args.window > 300 or args.hold_window > 300:
        p.error("bounded by design: at most 20,000 calls per step and 300 s windows")
    if (args.soak_minutes > 18 or args.soak_rate * args.soak_minutes * 60 > 40000 or args.soak_sample < 1
            or not 0 <= args.soak_drain <= 300):
        p.error("bounded by design: a soak of at most 18 minutes and 40,000 calls, samples >= 1 s apart, "
                "a drain of at most 300 s")
    if "soak" in args.phases and args.soak_warmup >= args.soak_minutes * 60 - 3 * args.soak_sample:
        p.error("--soak-warmup leaves fewer than 3 samples of the soak to judge memory on")
    holds = (args.holds if "hold" in args.phases else []) + ([args.combined_hold] if "combined" in args.phases else [])
    holds += [args.soak_hold + args.soak_rate * 2] if "soak" in args.phases else []
    if max(holds, default=0) > 4 * args.workers:
        p.error("a hold level above workers x 4 slots cannot pass")
    return args


PHASES = ("rate", "ladder", "hold", "combined", "soak", "scale")


def run_phases(bench: Any) -> None:
    args, res = bench.args, bench.results
    main_phases = [ph for ph in args.phases if ph != "scale"]
    if main_phases:
        srv = bench.server(args.workers)
        stub = None
        try:
            stub = bench.crm_stub(srv) if "ladder" in main_phases else None
            idle = bench.idle(srv, args.idle)
            res["idle"] = idle
            res["startup_s"] = round(srv.started_s, 1)
            print(f"idle: {idle['cores']['total']:.3f} cores, {idle['per_worker_pct_core']:.2f}% per worker",
                  flush=True)
            for phase in main_phases:
                globals()[f"_{phase}"](bench, srv, idle)
        finally:
            if stub is not None:
                res["crm_stub_hits"] = stub.hits()
                stub.stop()
            srv.stop()
    if "scale" in args.phases:
        _scale(bench)


def _rate(bench: Any, srv: Any, idle: dict[str, Any]) -> None:
    _rate_steps(bench, srv, idle, "rate", bench.args.rates, "rate: {rate} cps", "full")


def _ladder(bench: Any, srv: Any, idle: dict[str, Any]) -> None:
    """The peer kit's call at rising rates; stops after the first step with a failed call."""
    _rate_steps(bench, srv, idle, "ladder", bench.args.ladder_rates, "ladder: peer call at {rate} cps", "peer")


def _rate_steps(bench: Any, srv: Any, idle: dict[str, Any], key: str, rates: list[float], title: str,
                call: str) -> None:
    """Rising rate steps of one call kind, `--window` s each; stops after the first step with a failure."""
    steps: list[dict[str, Any]] = bench.results.setdefault(key, {"steps": []})["steps"]
    for rate in rates:
        if bench.out_of_time(bench.args.window + 30):
            break
        print(f"{title.format(rate=rate)} for {bench.args.window:g} s ...", flush=True)
        step = bench.rate_step(srv, rate, idle["cores"]["total"], call=call)
        steps.append(step)
        print("  " + _rate_line(step), flush=True)
        if not step["ok"]:
            break
        time.sleep(3)
    passed = [s["rate_cps"] for s in steps if s["ok"]]
    bench.results[key]["max_sustained_cps"] = max(passed, default=0)


def _soak(bench: Any, srv: Any, idle: dict[str, Any]) -> None:
    a = bench.args
    if bench.out_of_time(a.soak_hold / a.ramp + a.soak_minutes * 60 + 90 + 2 * a.soak_drain):
        return
    print(f"soak: {a.soak_minutes:g} min at {a.soak_rate} cps with {a.soak_hold} media calls held ...", flush=True)
    out = bench.soak(srv, idle["cores"]["total"])
    bench.results["soak"] = out
    print("  " + _soak_line(out), flush=True)


def _hold(bench: Any, srv: Any, idle: dict[str, Any]) -> None:
    levels: list[dict[str, Any]] = bench.results.setdefault("hold", {"levels": []})["levels"]
    for calls in bench.args.holds:
        if bench.out_of_time(calls / bench.args.ramp + bench.args.hold_window + 40):
            break
        print(f"hold: {calls} long media calls for {bench.args.hold_window:g} s ...", flush=True)
        level = bench.hold_level(srv, calls, idle)
        levels.append(level)
        print("  " + _hold_line(level), flush=True)
        if not (level["ok"] and level["rtp_clean"]):
            break
        time.sleep(3)
    passed = [lv["calls"] for lv in levels if lv["ok"] and lv["rtp_clean"]]
    bench.results["hold"]["max_clean_calls"] = max(passed, default=0)


def _combined(bench: Any, srv: Any, idle: dict[str, Any]) -> None:
    a = bench.args
    if bench.out_of_time(a.combined_hold / a.ramp + a.window + 60):
        return
    print(f"combined: {a.combined_hold} media calls + {a.combined_rate} cps for {a.window:g} s ...", flush=True)
    out = bench.combined(srv, idle["cores"]["total"])
    bench.results["combined"] = out
    print("  " + _combined_line(out), flush=True)


def _scale(bench: Any) -> None:
    rows: list[dict[str, Any]] = bench.results.setdefault("scale", [])
    a = bench.args
    for workers in a.scale_workers:
        if bench.out_of_time(a.idle + a.window + 60):
            break
        srv = bench.server(workers)
        try:
            idle = bench.idle(srv, a.idle)
            row: dict[str, Any] = {"workers": workers, "startup_s": round(srv.started_s, 1), "idle": idle}
            if a.scale_rate:
                step = bench.rate_step(srv, a.scale_rate, idle["cores"]["total"], digits_alongside=False)
                row["rate_step"] = step
            rows.append(row)
            print("  " + _scale_line(row), flush=True)
        finally:
            srv.stop()


def fold_profile(raw: str, possible: int) -> dict[str, Any]:
    """py-spy raw (folded) stacks -> busy share of the sampled process (idle stacks are not sampled), the
    heaviest leaf functions (self time) and inclusive shares of a few areas of interest."""
    total = 0
    leaf: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    areas = {"json encode/decode": ("json/", "wire.py"), "logging (structlog)": ("structlog", "logs.py"),
             "flow engine": ("ivr/flow/",), "call router": ("calls.py",), "CRM client (aiohttp)": ("crm.py", "aiohttp"),
             "worker links (workers.py)": ("workers.py",), "asyncio loop": ("asyncio/",)}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        func, _, where = frames[-1].partition(" (")
        name = f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})"
        leaf[name] = leaf.get(name, 0) + n
        for area, needles in areas.items():
            if any(needle in stack for needle in needles):
                inclusive[area] = inclusive.get(area, 0) + n
    top = sorted(leaf.items(), key=lambda kv: kv[1], reverse=True)[:12]
    waiting = sum(n for name, n in leaf.items() if name.split(" ")[0].endswith(("select", "poll", "libHandleEvents")))
    return {"samples": total, "busy_share": round((total - waiting) / max(1, possible), 3),
            "waiting_share_of_samples": round(waiting / max(1, total), 3),
            "top_self": [(name, round(n / max(1, total), 3)) for name, n in top],
            "areas_inclusive": {k: round(v / max(1, total), 3) for k, v in sorted(inclusive.items())}}


# --- lines and the table -------------------------------------------------------------------------------


def _ms(timers: dict[str, Any], key: str) -> str:
    t = timers.get(key)
    return "-" if not t or t["p50"] is None else f"{t['p50']:g}/{t['p99']:g}"


def _rtp(rtp: dict[str, Any], drops: dict[str, Any]) -> str:
    sock = drops.get("worker_rtp_socket_drops", 0) + drops.get("meter_rtp_socket_drops", 0)
    sock += drops.get("sipp_media_socket_drops", 0)
    if "mode" in rtp:
        return f"sipp echo, sockdrops {sock}"
    return f"lost {rtp.get('lost_seq', '?')} deficit {rtp.get('deficit_time', '?')} sockdrops {sock}"


def _rate_line(s: dict[str, Any]) -> str:
    sp, cpu = s["sipp"], s["cpu"]
    return (f"{s['rate_cps']} cps: {sp['successful']}/{sp['created']} ok, {sp['failed']} failed; "
            f"INVITE->200 p50/p99 {_ms(sp['timers_ms'], '1')} ms; digit->REFER {_ms(sp['timers_ms'], '2')} ms; "
            f"{cpu['ms_per_call']['total']} CPU ms/call ({cpu['cores']['total']} cores); "
            f"RTP {_rtp(s['rtp'], s['drops'])}; load gen {s.get('load_generator_cores')} cores; "
            f"load {s['loadavg_after'][0]}" + _digits(s.get("digits")))


def _hold_line(lv: dict[str, Any]) -> str:
    sp = lv["sipp"]
    return (f"{lv['calls']} calls: live {lv['live_at_plateau']}, {sp['successful']} ok, {sp['failed']} failed, "
            f"{sp['rejected']} rejected; INVITE->200 {_ms(sp['timers_ms'], '1')} ms; {lv['cores']['total']} cores; "
            f"PSS/call {lv['memory_per_call_kb']['pss_kb']} kB; RTP {_rtp(lv['rtp'], lv['drops'])}; "
            f"worker threads {_threads(lv.get('worker_thread_cores', {}))}; load {lv['loadavg_after'][0]}")


def _threads(t: dict[str, Any]) -> str:
    keys = [k for k in ("main", "clock", "media") if k in t]
    return "/".join(f"{k} {t[k]}" for k in keys) + f", {t.get('main_wakeups_per_s')} wakeups/s"


def _combined_line(c: dict[str, Any]) -> str:
    f, h = c["flow"], c["hold"]
    return (f"flow {f['successful']}/{f['created']} ok {f['failed']} failed; hold {h['successful']}/{c['hold_calls']} "
            f"ok {h['failed']} failed {h['rejected']} rejected; INVITE->200 flow {_ms(f['timers_ms'], '1')} "
            f"hold {_ms(h['timers_ms'], '1')} ms; {c['cpu']['cores']['total']} cores; RTP flow "
            f"{_rtp(c['rtp_flow'], c['drops'])} hold lost {c['rtp_hold'].get('lost_seq')} deficit "
            f"{c['rtp_hold'].get('deficit_time')}; worker threads {_threads(c.get('worker_thread_cores', {}))}; "
            f"load gen {c.get('load_generator_cores_avg')} cores; target met: {c['target_met']}; "
            f"load {c['loadavg_after'][0]}" + _digits(c.get("digits")))


def _digits(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    parts = [f"{m} {v['digits']} digits ({v.get('within_30_ms')} <= 30 ms) p50 <= {v['p50_ms_le']} p99 <= "
             f"{v['p99_ms_le']} max <= {v.get('max_ms_le')} ms" for m, v in sorted(d["delay"].items())]
    calls = d["calls"]
    return (f"; digit calls {calls['created']}, {calls['rejected']} rejected (503/486: no digits), "
            f"{calls['failed']} failed, {d.get('expected_rfc4733_digits')} RFC 4733 digits expected; digit delay "
            f"(worker -> engine) " + ", ".join(parts) + f"; p99 <= 30 ms: {d.get('target_met')}" + _after_mark(d))


def _after_mark(d: dict[str, Any]) -> str:
    if d.get("delay_after_mark") is None:
        return ""
    parts = [f"{m} {v['digits']} ({v.get('within_30_ms')} <= 30 ms) p50 <= {v['p50_ms_le']} p99 <= {v['p99_ms_le']} "
             f"max <= {v.get('max_ms_le')} ms" for m, v in sorted(d["delay_after_mark"].items())]
    return (f"; after {d['marked_at_s']} s (warm-up): " + ", ".join(parts)
            + f"; p99 <= 30 ms: {d.get('target_met_after_mark')}")


def _soak_line(s: dict[str, Any]) -> str:
    f, h, r = s["flow"], s.get("hold") or {}, s["records"]
    leak = s.get("leak") or {}
    t = leak.get("trends") or s.get("trends") or {}

    def slope(name: str, judged: bool) -> str:
        tr = t.get(name) or {}
        return f"{tr.get('slope_per_min')}/min" + ("" if not judged or tr.get("flat") else " NOT FLAT")
    w, idle, pl = leak.get("steady_window") or {}, leak.get("back_to_idle"), leak.get("per_live_call") or {}
    if idle:
        mem = idle["memory"].get("total", {})
        back = (f"idle after vs before ({idle['after_t_s']} s): live {idle['live_calls']['before']} -> "
                f"{idle['live_calls']['after']}, fds {idle['fds']['total']['before']} -> "
                f"{idle['fds']['total']['after']} ({_back(idle)}), "
                f"PSS warm-up {mem.get('pss_warm_up_kb')} kB")
    else:
        back = "idle after vs before: not measured"
    return (f"flow {f['successful']}/{f['created']} ok {f['failed']} failed; held {h.get('successful')}/"
            f"{s['hold_calls']} ok {h.get('failed')} failed; INVITE->200 {_ms(f['timers_ms'], '1')} ms; "
            f"{s['cpu']['ms_per_call']['total']} CPU ms/call; records: {r.get('recorded_once')}/{r.get('placed')} "
            f"once, {r.get('missing')} missing, {r.get('more_than_once')} twice; steady window {w.get('from_s')}-"
            f"{w.get('to_s')} s: PSS {slope('pss_kb.total', True)} kB, RSS {slope('rss_kb.total', True)} kB, "
            f"fds {slope('fds.total', False)}, live {slope('live_calls', False)} (not judged; "
            f"{pl.get('fds_per_live_call')} fds per live call, residual {pl.get('residual_slope_per_min')}/min); "
            f"{back}; ok {s['ok']}; load {s['loadavg_after'][0]}" + _digits(s.get("digits")))


def _back(idle: dict[str, Any]) -> str:
    if not idle["live_calls"]["back"]:
        return "live calls NOT BACK"
    if idle["fds_back"]:
        return "back exactly"
    if idle.get("fds_excess_is_deferred_players"):
        return f"back but for workers' last prompt players, <= {idle['fds_max_extra_per_process']} WAV fds each"
    return "fds NOT BACK"


def _scale_line(r: dict[str, Any]) -> str:
    idle, step = r["idle"], r.get("rate_step")
    text = (f"{r['workers']} workers: start {r['startup_s']} s, idle {idle['cores']['total']:.3f} cores "
            f"({idle['per_worker_pct_core']}%/worker), PSS {idle['memory']['pss_kb'] // 1024} MB"
            f" (workers {idle.get('worker_pss_kb_each', 0) / 1024:.1f} MB each)")
    if step:
        text += f"; {step['rate_cps']} cps: {step['cpu']['ms_per_call']['total']} CPU ms/call, ok {step['ok']}"
    return text


def table(res: dict[str, Any]) -> str:
    lines = [f"machine: {res['machine']}  started {res['started']}"]
    if "idle" in res:
        i = res["idle"]
        lines.append(f"idle ({i['workers']} workers): {i['cores']} cores; {i['memory']}; load {i['loadavg']}")
    for s in res.get("rate", {}).get("steps", []):
        lines.append("rate  " + _rate_line(s))
    if "rate" in res:
        lines.append(f"rate  max sustained with zero failures: {res['rate'].get('max_sustained_cps')} cps")
    for s in res.get("ladder", {}).get("steps", []):
        lines.append("ladder " + _rate_line(s))
    if "ladder" in res:
        top = res["ladder"].get("max_sustained_cps")
        lines.append(f"ladder max sustained (peer call) with zero failures: {top} cps")
    for lv in res.get("hold", {}).get("levels", []):
        lines.append("hold  " + _hold_line(lv))
    if "hold" in res:
        lines.append(f"hold  max concurrent with zero failures and clean RTP: {res['hold'].get('max_clean_calls')}")
    if "combined" in res:
        lines.append("combined " + _combined_line(res["combined"]))
    if "soak" in res:
        lines.append("soak  " + _soak_line(res["soak"]))
    for r in res.get("scale", []):
        lines.append("scale " + _scale_line(r))
    return "\n".join(lines)
