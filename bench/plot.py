"""Draws bench/capacity.py's JSON results as one SVG image (no dependency: the SVG is written by hand).

Six panels, x = load:
  1. full flow (rate steps): CPU ms per call by process role (all, workers, Kamailio, controller) vs calls/s
  2. the peer kit's call (ladder steps): the same, with Asterisk's recorded band (3.1-4.0 ms, 2026-11-30,
     /work/shared/peers: recorded then, not in the same run)
  3. p99 latency vs calls/s: INVITE->200 and digit->REFER (SIPp's timers) of both calls
  4. held media calls: CPU ms per held call and second by role vs concurrent calls, with Asterisk's recorded
     point (200 held: 0.33 cores)
  5. p99 INVITE->200 of the held calls vs concurrent calls (and the combined phase's verdict in a note)
  6. the soak over time: PSS of all server processes and the live-call gauge, with the slopes in a note

Every input file is one run: its points share a marker shape, the role sets the colour. A run's label is
`--label` (one per file, in order) or the file name; the footer lists each run's date, git commit, workers
and load average, so the image says when and on what machine state its figures were taken.

    .venv/bin/python bench/plot.py bench/results/baseline-20261201.json bench/results/<run>.json --out docs/bench.svg
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

ROLES = {"total": "#222222", "workers": "#1f77b4", "kamailio": "#2ca02c", "controller": "#d62728"}
ROLE_NAMES = {"total": "all server processes", "workers": "workers", "kamailio": "Kamailio", "controller": "controller"}
TIMERS = {"1": ("INVITE->200", "#9467bd"), "2": ("digit->REFER", "#ff7f0e")}
MARKERS = ("circle", "square", "triangle", "diamond", "cross", "ring", "open-square")
ASTERISK_CALL_MS = (3.1, 4.0)
"""Asterisk 23.4.1's CPU per call on the peer kit's call, 10-80 calls/s (/work/shared/peers, 2026-11-30)."""
ASTERISK_HOLD = (200, 0.33)
"""Asterisk 23.4.1 holding 200 calls with RTP both ways: 0.33 cores (same source)."""
ASTERISK_NOTE = "Asterisk 23.4.1, recorded 2026-11-30 (peer kit), not this run"
ASTERISK_SHORT = "Asterisk, recorded 2026-11-30"

W = 1200
PANEL_W, PANEL_H = 500, 300
MARGIN_L, MARGIN_T = 70, 70
FOOTER_Y = MARGIN_T + 3 * (PANEL_H + 120) - 24


@dataclass
class Series:
    label: str
    color: str
    marker: str
    points: list[tuple[float, float]] = field(default_factory=list)
    dashed: bool = False


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    band: tuple[float, float, str] | None = None
    refs: list[tuple[float, float, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    logy: bool = False
    """A log10 y axis (latencies span 1 ms to seconds once a step overloads)."""


# --- reading the results -------------------------------------------------------------------------------


def _cpu_series(steps: list[dict[str, Any]], run: str, marker: str) -> list[Series]:
    out = []
    for role, color in ROLES.items():
        pts = [(float(s["rate_cps"]), float(s["cpu"]["ms_per_call"][role])) for s in steps
               if s.get("cpu") and s["sipp"]["successful"]]
        if pts:
            out.append(Series(f"{ROLE_NAMES[role]} ({run})", color, marker, sorted(pts)))
    return out


def _latency_series(steps: list[dict[str, Any]], run: str, marker: str, dashed: bool) -> list[Series]:
    out = []
    for timer, (name, color) in TIMERS.items():
        pts = [(float(s["rate_cps"]), float(s["sipp"]["timers_ms"][timer]["p99"])) for s in steps
               if (s["sipp"]["timers_ms"].get(timer) or {}).get("p99") is not None]
        if pts:
            out.append(Series(f"{name} p99 ({run})", color, marker, sorted(pts), dashed))
    return out


def _failed_note(steps: list[dict[str, Any]], run: str, what: str) -> list[str]:
    return [f"{run}: {what} {s['rate_cps']} cps: {s['sipp']['failed']} of {s['sipp']['created']} failed"
            for s in steps if not s.get("ok")]


def build(runs: list[tuple[str, dict[str, Any]]]) -> list[Panel]:
    flow = Panel("Full flow (bench/capacity.py --phases rate)", "calls/s", "CPU ms per call")
    peer = Panel("Peer kit's call (--phases ladder)", "calls/s", "CPU ms per call",
                 band=(*ASTERISK_CALL_MS, ASTERISK_NOTE))
    lat = Panel("p99 latency (SIPp timers; solid full flow, dashed peer call)", "calls/s", "ms (log)", logy=True)
    hold = Panel("Held media calls, prompts + RTP both ways (--phases hold)", "concurrent calls",
                 "CPU ms per call-second")
    hold.refs.append((float(ASTERISK_HOLD[0]), 1000 * ASTERISK_HOLD[1] / ASTERISK_HOLD[0], ASTERISK_SHORT))
    hold_lat = Panel("p99 INVITE->200 of held calls (SIPp) vs concurrent calls", "concurrent calls", "ms (log)",
                     logy=True)
    soak = Panel("Soak (--phases soak): memory and live calls over time", "minutes",
                 "PSS MB / 10 (all server processes); live calls")
    for i, (run, res) in enumerate(runs):
        marker = MARKERS[i % len(MARKERS)]
        rate_steps = res.get("rate", {}).get("steps", [])
        ladder_steps = res.get("ladder", {}).get("steps", [])
        flow.series += _cpu_series(rate_steps, run, marker)
        flow.notes += _failed_note(rate_steps, run, "full flow")
        peer.series += _cpu_series(ladder_steps, run, marker)
        peer.notes += _failed_note(ladder_steps, run, "peer call")
        lat.series += _latency_series(rate_steps, run, marker, False)
        lat.series += _latency_series(ladder_steps, run, marker, True)
        levels = [lv for lv in res.get("hold", {}).get("levels", []) if lv["sipp"]["successful"]]
        for role, color in ROLES.items():
            pts = [(float(lv["calls"]), 1000 * lv["cores"][role] / max(1, lv["live_at_plateau"] or lv["calls"]))
                   for lv in levels]
            if pts:
                hold.series.append(Series(f"{ROLE_NAMES[role]} ({run})", color, marker, sorted(pts)))
        pts = [(float(lv["calls"]), float(lv["sipp"]["timers_ms"]["1"]["p99"])) for lv in levels
               if (lv["sipp"]["timers_ms"].get("1") or {}).get("p99") is not None]
        if pts:
            hold_lat.series.append(Series(f"INVITE->200 p99 ({run})", TIMERS["1"][1], marker, sorted(pts)))
        for lv in levels:
            if not (lv.get("ok") and lv.get("rtp_clean")):
                hold.notes.append(f"{run}: {lv['calls']} held: {lv['sipp']['failed']} failed, "
                                  f"{lv['sipp']['rejected']} rejected, RTP clean {lv.get('rtp_clean')}")
        if "combined" in res:
            c = res["combined"]
            hold_lat.notes.append(f"{run}: combined {c['hold_calls']} held + {c['rate_cps']} cps: "
                              f"{c['flow']['failed']} of {c['flow']['created']} flow calls failed, "
                              f"p99 INVITE->200 {c.get('invite_200_p99_ms')} ms")
        if "soak" in res:
            sk = res["soak"]
            samples = sk.get("samples", [])
            mem = [(sm["t_s"] / 60, sm["memory"]["total"]["pss_kb"] / 10240) for sm in samples if sm["memory"]]
            live = [(sm["t_s"] / 60, float(sm["live_calls"])) for sm in samples
                    if sm["live_calls"] is not None and sm["live_calls"] >= 0]
            soak.series.append(Series(f"PSS MB / 10 ({run})", ROLES["workers"], marker, mem))
            soak.series.append(Series(f"live calls ({run})", ROLES["controller"], marker, live))
            tr = sk.get("trends", {})
            soak.notes.append(f"{run}: {sk['minutes']:g} min, {sk['rate_cps']} cps + {sk['hold_calls']} held: "
                              f"{sk['flow']['failed']} failed, recorded once {sk['records'].get('ok')}")
            soak.notes.append("  slopes/min: " + ", ".join(
                f"{k.split('.')[0]} {v['slope_per_min']:.0f}" for k, v in tr.items()
                if k in ("pss_kb.total", "rss_kb.total", "fds.total", "live_calls") and v["slope_per_min"] is not None))
    return [flow, peer, lat, hold, hold_lat, soak]


# --- drawing -------------------------------------------------------------------------------------------


def nice_ticks(hi: float, n: int = 5) -> list[float]:
    """0 .. a round number >= hi in about n steps."""
    if hi <= 0:
        hi = 1.0
    raw = hi / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [round(i * step, 6) for i in range(int(math.ceil(hi / step - 1e-9)) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}"


def _marker(shape: str, x: float, y: float, color: str) -> str:
    if shape == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{color}"/>'
    if shape == "triangle":
        return (f'<polygon points="{x:.1f},{y - 4.5:.1f} {x - 4:.1f},{y + 3:.1f} {x + 4:.1f},{y + 3:.1f}" '
                f'fill="{color}"/>')
    if shape == "diamond":
        return (f'<polygon points="{x:.1f},{y - 4.5:.1f} {x + 4.5:.1f},{y:.1f} {x:.1f},{y + 4.5:.1f} '
                f'{x - 4.5:.1f},{y:.1f}" fill="{color}"/>')
    if shape == "ring":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="white" stroke="{color}" stroke-width="1.6"/>'
    if shape == "open-square":
        return (f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="white" stroke="{color}" '
                f'stroke-width="1.6"/>')
    if shape == "cross":
        return (f'<path d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}M{x - 4:.1f},{y + 4:.1f}'
                f'L{x + 4:.1f},{y - 4:.1f}" stroke="{color}" stroke-width="2"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>'


def draw_panel(p: Panel, ox: float, oy: float) -> list[str]:
    out = [f'<text x="{ox}" y="{oy - 12}" font-size="14" font-weight="bold">{escape(p.title)}</text>']
    xs = [x for s in p.series for x, _ in s.points] + [x for x, _, _ in p.refs]
    ys = [y for s in p.series for _, y in s.points] + [y for _, y, _ in p.refs] + ([p.band[1]] if p.band else [])
    xt, yt = nice_ticks(max(xs, default=1.0) * 1.05), nice_ticks(max(ys, default=1.0) * 1.1)
    if p.logy:
        yt = [10.0 ** e for e in range(0, max(1, math.ceil(math.log10(max(ys, default=10.0) * 1.1))) + 1)]
    xmax, ymax = xt[-1], yt[-1]

    def px(x: float) -> float:
        return ox + PANEL_W * x / xmax

    def py(y: float) -> float:
        if p.logy:  # 1 ms at the bottom; SIPp's timers tick in ms, a 0 shows as 1
            return oy + PANEL_H - PANEL_H * math.log10(max(1.0, y)) / math.log10(ymax)
        return oy + PANEL_H - PANEL_H * y / ymax

    out.append(f'<rect x="{ox}" y="{oy}" width="{PANEL_W}" height="{PANEL_H}" fill="white" stroke="#999"/>')
    for t in yt:
        out.append(f'<line x1="{ox}" x2="{ox + PANEL_W}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{ox - 6}" y="{py(t) + 4:.1f}" text-anchor="end" font-size="11">{_fmt(t)}</text>')
    for t in xt:
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{oy}" y2="{oy + PANEL_H}" stroke="#f3f3f3"/>')
        out.append(f'<text x="{px(t):.1f}" y="{oy + PANEL_H + 15}" text-anchor="middle" font-size="11">'
                   f"{_fmt(t)}</text>")
    out.append(f'<text x="{ox + PANEL_W / 2}" y="{oy + PANEL_H + 32}" text-anchor="middle" font-size="12">'
               f"{escape(p.xlabel)}</text>")
    out.append(f'<text x="{ox - 48}" y="{oy + PANEL_H / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 {ox - 48} {oy + PANEL_H / 2})">{escape(p.ylabel)}</text>')
    if p.band:
        lo, hi, note = p.band
        out.append(f'<rect x="{ox}" y="{py(hi):.1f}" width="{PANEL_W}" height="{py(lo) - py(hi):.1f}" '
                   f'fill="#f5b041" fill-opacity="0.35"><title>{escape(note)}</title></rect>')
        out.append(f'<text x="{ox + PANEL_W - 4}" y="{py(hi) - 4:.1f}" text-anchor="end" font-size="10" '
                   f'fill="#a0522d">{escape(note)}: {_fmt(lo)}-{_fmt(hi)} ms</text>')
    for x, y, note in p.refs:
        out.append(f'<path d="M{px(x) - 6:.1f},{py(y):.1f}h12M{px(x):.1f},{py(y) - 6:.1f}v12" stroke="#a0522d" '
                   f'stroke-width="2"><title>{escape(note)}</title></path>')
        anchor = "end" if px(x) > ox + PANEL_W / 2 else "start"
        out.append(f'<text x="{px(x) + (-8 if anchor == "end" else 8):.1f}" y="{py(y) + 16:.1f}" font-size="10" '
                   f'fill="#a0522d" text-anchor="{anchor}">{escape(note)}: {_fmt(round(y, 2))}</text>')
    if not p.series:
        out.append(f'<text x="{ox + PANEL_W / 2}" y="{oy + PANEL_H / 2}" text-anchor="middle" fill="#888">'
                   "no run in these files has this phase</text>")
    for s in p.series:
        path = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(s.points))
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(f'<path d="{path}" fill="none" stroke="{s.color}" stroke-width="1.6"{dash}/>')
        for x, y in s.points:
            out.append(_marker(s.marker, px(x), py(y), s.color).replace(
                "/>", f"><title>{escape(s.label)}: {_fmt(x)} -> {_fmt(round(y, 2))}</title></{_tag(s.marker)}>", 1))
    ly = oy + 14
    for s in p.series[:10]:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        out.append(f'<line x1="{ox + 8}" x2="{ox + 28}" y1="{ly - 4}" y2="{ly - 4}" stroke="{s.color}" '
                   f'stroke-width="1.6"{dash}/>')
        out.append(_marker(s.marker, ox + 18, ly - 4, s.color))
        out.append(f'<text x="{ox + 34}" y="{ly}" font-size="10">{escape(s.label)}</text>')
        ly += 13
    if len(p.series) > 10:
        out.append(f'<text x="{ox + 34}" y="{ly}" font-size="10">(+{len(p.series) - 10} more; hover the points)</text>')
    ny = oy + PANEL_H + 46
    for note in p.notes[:4]:
        shown = note if len(note) <= 100 else note[:99] + "…"
        out.append(f'<text x="{ox}" y="{ny}" font-size="10" fill="#555">{escape(shown)}<title>{escape(note)}</title>'
                   "</text>")
        ny += 12
    return out


def _tag(shape: str) -> str:
    return {"square": "rect", "open-square": "rect", "triangle": "polygon", "diamond": "polygon",
            "cross": "path"}.get(shape, "circle")


def run_label(path: Path) -> str:
    return path.stem


def footer(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for (label, res), marker in zip(runs, MARKERS * 4, strict=False):
        m = res.get("machine", {})
        a = res.get("args", {})
        steps = [s for ph in ("rate", "ladder") for s in res.get(ph, {}).get("steps", [])]
        loads = [s.get("loadavg_after", [None])[0] for s in steps]
        loads += [lv.get("loadavg_after", [None])[0] for lv in res.get("hold", {}).get("levels", [])]
        lines.append(f"{marker} {label}: {res.get('started', '?')}, git {m.get('git', '?')}, "
                     f"{a.get('workers')} workers, "
                     f"{m.get('nproc')} cores, load before {m.get('loadavg', ['?'])[0]}, after steps "
                     f"{'/'.join(str(x) for x in loads if x is not None) or '-'}"
                     f"{', quick windows' if a.get('quick') else ''}")
    return lines


def render(runs: list[tuple[str, dict[str, Any]]], title: str) -> str:
    panels = build(runs)
    height = FOOTER_Y + 13 * (len(runs) + 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
           'font-family="DejaVu Sans, Arial, sans-serif">', f'<rect width="{W}" height="{height}" fill="white"/>',
           f'<text x="{MARGIN_L - 40}" y="28" font-size="17" font-weight="bold">{escape(title)}</text>']
    for i, p in enumerate(panels):
        ox = MARGIN_L + (i % 2) * (PANEL_W + 110)
        oy = MARGIN_T + (i // 2) * (PANEL_H + 120)
        out += draw_panel(p, ox, oy)
    fy = FOOTER_Y
    out.append(f'<text x="{MARGIN_L - 40}" y="{fy}" font-size="11" font-weight="bold">Runs (marker, file, '
               "started UTC, commit, workers, 1-min load average):</text>")
    for line in footer(runs):
        fy += 13
        out.append(f'<text x="{MARGIN_L - 40}" y="{fy}" font-size="10">{escape(line)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/plot.py", description="Draw bench/capacity.py JSON results as SVG.")
    p.add_argument("files", nargs="+", type=Path, help="bench/results/*.json")
    p.add_argument("--out", type=Path, default=Path("docs/bench.svg"))
    p.add_argument("--label", action="append", default=[], help="a label per file, in order (default: file name)")
    p.add_argument("--title", default="ivr capacity bench: CPU per call and p99 latency against load")
    args = p.parse_args(argv)
    runs = []
    for i, path in enumerate(args.files):
        res = json.loads(path.read_text())
        runs.append((args.label[i] if i < len(args.label) else run_label(path), res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(runs, args.title))
    print(f"wrote {args.out} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
