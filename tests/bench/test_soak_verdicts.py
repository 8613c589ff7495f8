"""The soak's leak verdicts (bench/soak.py) and the digit-delay arithmetic (bench/digit_latency.py), on
synthetic samples and on samples recorded by real soaks (bench/results/). No server, no SIPp: the bench's
runs are by hand; this checks what they conclude from what they sampled."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import digit_latency  # noqa: E402
import soak  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RECORDED = RESULTS / "final-soak-96w-20261201.json"
"""The 10-minute soak whose old verdict called fds.total and live_calls 'not flat' (28 cps + 100 held)."""
RECORDED_18 = RESULTS / "soak18-96w-20261201.json"
"""The 18-minute soak (28 cps + 100 held, warm-up 180 s) on a machine at load 14-20: 13,927 flow calls failed."""


def _sample(t: float, phase: str, *, live: float | None, fds: dict[str, int], pss: dict[str, int],
            placing: bool | None = None) -> dict[str, Any]:
    """A sample as soak.sample() writes it: fds per process ('pid' -> n) summed per role (role = pid's prefix)."""
    roles: dict[str, dict[str, int]] = {}
    for pid, n in fds.items():
        for role in ("total", pid.split("-")[0]):
            acc = roles.setdefault(role, {"fds": 0, "max_per_process": 0})
            acc["fds"] += n
            acc["max_per_process"] = max(acc["max_per_process"], n)
    memory = {role: {"pss_kb": kb, "rss_kb": 3 * kb, "processes": 1} for role, kb in pss.items()}
    memory["total"] = {"pss_kb": sum(pss.values()), "rss_kb": 3 * sum(pss.values()), "processes": len(pss)}
    out: dict[str, Any] = {"t_s": t, "phase": phase, "memory": memory, "fds": roles, "fds_per_process": fds,
                           "live_calls": live, "processes": len(fds)}
    if placing is not None:
        out["placing"] = placing
    return out


def _soak(*, leak_fds_per_min: float = 0.0, leak_kb_per_min: float = 0.0, idle_after_fds: int = 0,
          idle_after_live: float = 0.0) -> list[dict[str, Any]]:
    """A 10-minute soak sampled every 10 s: live calls follow the load (ramp up, noise, ramp down), each live
    call holds 2 worker fds; the workers' PSS warms up over the first 90 s, then is flat (plus any leak)."""
    idle_fds = {"controller-1": 100, "workers-1": 11, "workers-2": 11}
    samples = [_sample(-6.0, "idle_before", live=0, fds=idle_fds, pss={"controller": 60_000, "workers": 600_000})]
    for i in range(1, 64):
        t = 10.0 * i
        live = min(t / 10, 1.0) * (130 + (7 * i) % 11)  # ramp-up over the first 10 s, then 130-140 in flight
        phase, placing = ("load", True) if t <= 590 else ("ramp_down", False)
        if t > 600:
            live = max(0.0, 100 - 10 * (t - 600))
        leaked = int(leak_fds_per_min * t / 60)
        fds = {"controller-1": 100, "workers-1": 11 + int(live) + leaked, "workers-2": 11 + int(live)}
        warm = 100_000 * min(1.0, t / 90)
        pss = {"controller": 60_000, "workers": int(600_000 + warm + leak_kb_per_min * t / 60)}
        samples.append(_sample(t, phase, live=live, fds=fds, pss=pss, placing=placing))
    after_fds = {"controller-1": 100, "workers-1": 11 + idle_after_fds, "workers-2": 11}
    pss_after = {"controller": 60_000, "workers": 700_000 + int(leak_kb_per_min * 640 / 60)}
    samples.append(_sample(642.0, "idle_after", live=idle_after_live, fds=after_fds, pss=pss_after))
    return samples


def test_a_clean_soak_is_leak_free_although_fds_and_live_calls_follow_the_load() -> None:
    verdict = soak.judge(_soak(), warmup_s=120, end_s=600)
    assert verdict["steady_window"] == {"from_s": 120.0, "to_s": 590.0, "samples": 48}
    assert verdict["back_to_idle"]["ok"] and verdict["back_to_idle"]["fds_back"]
    assert verdict["back_to_idle"]["live_calls"] == {"before": 0, "after": 0.0, "back": True}
    assert verdict["memory_flat"] == {"pss_kb.total": True, "rss_kb.total": True}
    assert verdict["leak_free"] is True
    # the warm-up is reported: 100 MB of the workers' PSS between idle before and idle after
    assert verdict["back_to_idle"]["memory"]["workers"]["pss_warm_up_kb"] == 100_000
    assert verdict["pss_kb_growth_to_steady_window"]["workers"] == 100_000
    # fds follow the calls in flight: 2 per live call, nothing left over
    per_call = verdict["per_live_call"]
    assert per_call["fds_per_live_call"] == pytest.approx(2.0, abs=0.05)
    assert abs(per_call["residual_slope_per_min"]) < 0.2


def test_the_memory_warm_up_is_not_judged_but_a_steady_growth_is() -> None:
    whole_run = soak.trends(soak.steady(_soak(), warmup_s=0, end_s=600))
    assert not whole_run["pss_kb.total"]["flat"]  # the old verdict's window: the warm-up reads as growth
    leaking = soak.judge(_soak(leak_kb_per_min=2_000), warmup_s=120, end_s=600)  # 2 MB/min on ~760 MB
    assert leaking["trends"]["pss_kb.total"]["slope_per_min"] == pytest.approx(2_000, rel=0.01)
    assert leaking["memory_flat"]["pss_kb.total"] is False
    assert leaking["leak_free"] is False


def test_an_fd_left_open_after_the_load_fails_back_to_idle_and_names_the_process() -> None:
    verdict = soak.judge(_soak(leak_fds_per_min=1.0, idle_after_fds=10), warmup_s=120, end_s=600)
    idle = verdict["back_to_idle"]
    assert idle["fds"]["total"] == {"before": 122, "after": 132, "diff": 10}
    assert idle["fds"]["workers"]["diff"] == 10 and idle["fds"]["controller"]["diff"] == 0
    assert idle["fds_differing_processes"] == {"workers-1": [11, 21]} and idle["fds_max_extra_per_process"] == 10
    assert not idle["ok"] and verdict["leak_free"] is False
    # normalised by the live calls, the same leak shows while the load runs: ~1 fd per minute left over
    assert verdict["per_live_call"]["residual_slope_per_min"] == pytest.approx(1.0, abs=0.2)


def test_a_call_still_live_after_the_drain_fails_back_to_idle() -> None:
    verdict = soak.judge(_soak(idle_after_live=1), warmup_s=120, end_s=600)
    assert verdict["back_to_idle"]["live_calls"]["back"] is False
    assert verdict["leak_free"] is False
    unanswered = soak.back_to_idle(_soak()[0], {**_soak()[-1], "live_calls": None})  # the gauge did not answer
    assert unanswered is not None and unanswered["live_calls"]["back"] is False and not unanswered["ok"]


def test_the_steady_window_ends_before_the_ramp_down() -> None:
    samples = _soak()
    samples[55]["placing"] = False  # SIPp has placed its last calls: not steady, though the phase is still load
    window = soak.steady(samples, warmup_s=30, end_s=600)
    assert [s["t_s"] for s in window][0] == 30.0 and window[-1]["t_s"] == 590.0
    assert 550.0 not in [s["t_s"] for s in window]
    assert all(s["phase"] == "load" for s in window)


@pytest.mark.skipif(not RECORDED.exists(), reason="recorded soak not in this checkout")
def test_the_recorded_10_minute_soak() -> None:
    """Its samples have no phase and no idle ends: the window stops 5 s before the flow's end (the sample at
    600 s, 104 live calls, is the ramp-down), back_to_idle is not measured, fds and live calls not judged."""
    s = json.loads(RECORDED.read_text())["soak"]
    verdict = soak.judge(s["samples"], s["warmup_s"], s["minutes"] * 60)
    assert verdict["steady_window"] == {"from_s": 30.0, "to_s": 590.0, "samples": 57}
    assert verdict["back_to_idle"] is None and verdict["leak_free"] is None
    assert set(verdict["memory_flat"]) == {"pss_kb.total", "rss_kb.total"}
    # the live calls held 130-145 except a stall at 100-130 s (298 live): the gauge follows the load
    live = [v for _, v in soak.series(soak.steady(s["samples"], 150, 600))["live_calls"]]
    assert min(live) >= 130 and max(live) <= 145
    # normalised by the live calls without an idle baseline (least squares over the window, which the stall's
    # 298 live calls dominate): 1.95 fds per live call and a residual of ~1.5 fds/min. Reported, not judged:
    # with a baseline the same normalisation reads ~4 fds per live call (RTP, RTCP, a prompt's 1-2 WAV files)
    per_call = verdict["per_live_call"]
    assert per_call["fds_per_live_call"] == pytest.approx(1.95, abs=0.1)
    assert per_call["residual_slope_per_min"] == pytest.approx(1.5, abs=0.3)


METRICS = """# TYPE ivr_digit_delay_ms histogram
ivr_digit_delay_ms_bucket{method="rfc4733",le="1"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="2"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="5"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="10"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="15"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="20"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="30"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="50"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="100"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="250"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="1000"} %d
ivr_digit_delay_ms_bucket{method="rfc4733",le="+Inf"} %d
ivr_digit_delay_ms_count{method="rfc4733"} %d
"""


def test_digit_delay_quantiles_are_bucket_bounds_of_the_window() -> None:
    before = digit_latency.parse(METRICS % (5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5))  # an earlier phase's 5
    # the window: 200 digits, 150 within 2 ms, 197 within 10, 199 within 30, one at 50-100 ms
    after = digit_latency.parse(METRICS % (65, 155, 195, 202, 203, 203, 204, 204, 205, 205, 205, 205, 205))
    d = digit_latency.delays(before, after)["rfc4733"]
    assert d["digits"] == 200 and d["within_30_ms"] == 199
    assert (d["p50_ms_le"], d["p99_ms_le"], d["max_ms_le"]) == (2.0, 15.0, 100.0)
    assert digit_latency.target_met(d) is True
    late = digit_latency.parse(METRICS % (0, 0, 0, 0, 0, 0, 90, 95, 97, 98, 99, 100, 100))
    d = digit_latency.delays({}, late)["rfc4733"]
    assert (d["p99_ms_le"], d["max_ms_le"]) == (1000.0, float("inf"))
    assert digit_latency.target_met(d) is False
    assert digit_latency.target_met({"digits": 0}) is None  # no digit seen: nothing judged


def test_refused_or_failed_digit_calls_fail_the_phase() -> None:
    calls = {"failed": 0, "rejected": 0, "exit_code": 0}
    assert digit_latency.calls_ok(None) and digit_latency.calls_ok({"calls": calls})
    assert not digit_latency.calls_ok({"calls": {**calls, "rejected": 1}})
    assert not digit_latency.calls_ok({"calls": {**calls, "failed": 2, "exit_code": 1}})


@pytest.mark.parametrize("path", [RECORDED, RECORDED_18], ids=["10min", "18min"])
def test_recorded_soaks_are_judged_on_their_steady_window_only(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path.name} not in this checkout")
    s = json.loads(path.read_text())["soak"]
    end = s["minutes"] * 60
    verdict = soak.judge(s["samples"], s["warmup_s"], end)
    window = soak.steady(s["samples"], s["warmup_s"], end)
    assert window and window[0]["t_s"] >= s["warmup_s"] and window[-1]["t_s"] <= end - soak.RAMP_DOWN_MARGIN_S
    assert len(window) == verdict["steady_window"]["samples"] < len(s["samples"])
    # what the old verdict judged and got wrong is reported, not judged
    assert set(verdict["memory_flat"]) == {"pss_kb.total", "rss_kb.total"}
    assert "fds.total" in verdict["trends"] and "live_calls" in verdict["trends"]
    assert verdict["back_to_idle"] is None and verdict["leak_free"] is None


def _idle_pair(extra: int, kind: str, path: str = "/p/hold_music.wav") -> tuple[dict[str, Any], dict[str, Any]]:
    """Idle before/after with `extra` more fds of `kind` in worker workers-1 after (files: at `path`)."""
    samples = _soak(idle_after_fds=extra)
    before, after = samples[0], samples[-1]
    before["fd_kinds"] = {"workers": {"socket": 16, "file": 6}, "controller": {"socket": 100}}
    before["fd_files"] = {"workers": {"/dev/null": 6}}
    after["fd_kinds"] = {"workers": {"socket": 16 + (extra if kind == "socket" else 0),
                                     "file": 6 + (extra if kind == "file" else 0)}, "controller": {"socket": 100}}
    after["fd_files"] = {"workers": {"/dev/null": 6, **({path: extra} if kind == "file" else {})}}
    return before, after


def test_a_workers_last_prompt_player_left_open_at_idle_is_not_a_leak() -> None:
    """pjmedia removes a conference port on its clock, which stops with the worker's last call: that call's
    playlist (2 WAV files) closes at the next call. At most 2 WAV fds per worker pass; anything else fails."""
    idle = soak.back_to_idle(*_idle_pair(2, "file"))
    assert idle is not None and not idle["fds_back"] and idle["fds_excess_is_deferred_players"] and idle["ok"]
    assert idle["fd_files_differing"] == {"workers": {"/p/hold_music.wav": [0, 2]}}
    for pair in (_idle_pair(2, "socket"), _idle_pair(4, "file"), _idle_pair(2, "file", "/run/spool/seg-1")):
        idle = soak.back_to_idle(*pair)
        assert idle is not None and not idle["fds_excess_is_deferred_players"] and not idle["ok"]
