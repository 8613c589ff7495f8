"""RFC 4733 digit latency under load (`capacity.py --digit-rate N`, in the rate steps, the combined phase and
the soak).

Callers (SIPp, `sipp-scenarios/bench/rfc4733_digits.xml`) dial the bench hold flow and type `1234#` as RTP
telephone-events while the phase's load runs. The server's own metric `ivr_digit_delay_ms` (a digit's
receipt in the worker, on pjmedia's media thread -> the controller's engine: hand-over to the worker loop,
the loop's wake-up, the wire, the controller's loop) is read from the admin `/metrics` before and after
the window. It is a histogram (FINE_BUCKETS_MS: 1, 2, 5, 10, 15, 20, 30, 50, 100, 250, 1000 ms), so p50, p99
and max are the upper bounds of the buckets that hold them (`None` for max: beyond 1 s), with the counts:
digits in the window, digits within 30 ms (the target: p99 <= 30 ms), digits expected (5 per answered call).
A digit call refused with 503 (no free slot) types nothing: the scenario logs it as "rejected" and counts it a
success. What the metric does not see: the wire and the worker's RTP socket before pjmedia's media thread
reads the packet (bench/worker_load.py --digits measures that part on one worker: ~1-3 ms quiet).
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import drive
import rig

PCAP = rig.ROOT / "sipp-scenarios" / "pcap" / "dtmf_1234hash.pcap"
DIGITS_PER_CALL = 5
PCAP_MS = 1880
TARGET_MS = 30.0
"""Issue 14: RFC 4733 digit -> the flow seeing it, p99 <= 30 ms at full load."""
SIPP_DIGITS = (25012, 25050)
"""SIPp's signalling port and media port (it binds media + 2 as well): clear of capacity.py's others."""
_BUCKET = re.compile(r'^ivr_digit_delay_ms_bucket\{method="(\w+)",le="([^"]+)"\} (\d+)$', re.M)

Buckets = dict[str, list[tuple[float, int]]]


def caller(srv: rig.Server, rate: float, seconds: float, run: Path) -> drive.Sipp:
    return drive.Sipp("rfc4733_digits.xml", run, srv.ports.sip, *SIPP_DIGITS, rtp_ports=[SIPP_DIGITS[1]],
                      rate=rate, total=int(rate * seconds), limit=max(20, int(rate * 10)), pause_ms=PCAP_MS + 700,
                      service=rig.HOLD_NUMBER, sets={"caller": "+15551000002"}, timeout_s=seconds + 60,
                      extra=["-key", "dtmf_pcap", str(PCAP)])


class DigitCallers:
    """RFC 4733 digit callers for one phase's window: `start()` with the phase's load, `wait()` after it,
    `result()` the calls and the server's digit delay over the window."""

    def __init__(self, srv: rig.Server, rate: float, seconds: float, run: Path) -> None:
        self.admin, self.rate = srv.ports.admin, rate
        self.sipp = caller(srv, rate, seconds, run)
        self.before: Buckets = {}
        self.marked: Buckets | None = None
        self.marked_at_s: float | None = None

    def start(self) -> DigitCallers:
        self.before = scrape(self.admin)
        self.sipp.start()
        return self

    def mark(self, t_s: float) -> bool:
        """Also report the digits after this point (the soak: after its warm-up), as `delay_after_mark`.
        False if the admin endpoint did not answer (a loaded server): the caller tries again later."""
        try:
            self.marked = scrape(self.admin)
        except OSError:
            return False
        self.marked_at_s = round(t_s, 1)
        return True

    def kill(self) -> None:
        self.sipp.kill()

    def wait(self) -> None:
        self.sipp.wait()

    def result(self) -> dict[str, Any]:
        calls = self.sipp.result()
        try:
            after = scrape(self.admin, timeout=30)
        except OSError as exc:
            return {"rate_cps": self.rate, "calls": calls, "error": f"/metrics did not answer: {exc}",
                    "delay": {}, "target_met": None}
        delay = delays(self.before, after)
        answered = calls["answered_logged"]
        out = {"rate_cps": self.rate, "calls": calls, "delay": delay, "expected_rfc4733_digits":
               answered * DIGITS_PER_CALL, "target_met": target_met(delay.get("rfc4733") or {})}
        if self.marked is not None:
            steady = delays(self.marked, after)
            out |= {"marked_at_s": self.marked_at_s, "delay_after_mark": steady,
                    "target_met_after_mark": target_met(steady.get("rfc4733") or {})}
        return out


def calls_ok(result: dict[str, Any] | None) -> bool:
    """The digit callers are part of the load a phase carries: none failed, none refused (True without them)."""
    if result is None:
        return True
    calls = result["calls"]
    return bool(calls["failed"] == 0 and calls["rejected"] == 0 and calls["exit_code"] == 0)


def target_met(d: dict[str, Any]) -> bool | None:
    """p99 <= 30 ms (None: no digit seen, nothing judged)."""
    if not d or not d.get("digits"):
        return None
    return d["p99_ms_le"] is not None and d["p99_ms_le"] <= TARGET_MS


def scrape(admin_port: int, timeout: float = 5.0) -> Buckets:
    """Cumulative bucket counts of ivr_digit_delay_ms per method (empty before the first digit)."""
    with urllib.request.urlopen(f"http://{rig.HOST}:{admin_port}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    return parse(text)


def parse(text: str) -> Buckets:
    out: Buckets = {}
    for method, le, count in _BUCKET.findall(text):
        out.setdefault(method, []).append((float("inf") if le == "+Inf" else float(le), int(count)))
    return out


def delays(before: Buckets, after: Buckets) -> dict[str, Any]:
    """Digits seen in the window per method: count, p50/p99/max (bucket upper bounds, ms; inf = beyond the
    last bound), how many within TARGET_MS, and the window's buckets (cumulative)."""
    result: dict[str, Any] = {}
    for method, rows in after.items():
        base = dict(before.get(method, []))
        counts = [(bound, n - base.get(bound, 0)) for bound, n in rows]
        total = counts[-1][1] if counts else 0
        within = max((n for bound, n in counts if bound <= TARGET_MS), default=0)
        result[method] = {"digits": total, "p50_ms_le": _quantile(counts, total, 0.50),
                          "p99_ms_le": _quantile(counts, total, 0.99), "max_ms_le": _quantile(counts, total, 1.0),
                          f"within_{TARGET_MS:g}_ms": within, "buckets": counts}
    return result


def _quantile(cumulative: list[tuple[float, int]], total: int, q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile (the smallest bound with >= q * total at or below)."""
    if total == 0:
        return None
    for bound, n in cumulative:
        if n >= q * total:
            return bound
    return None
