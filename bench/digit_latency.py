"""RFC 4733 digit latency under load, for capacity.py's combined phase (`--digit-rate N`).

Callers (SIPp, `sipp-scenarios/bench/rfc4733_digits.xml`) dial the bench hold flow and type `1234#` as RTP
telephone-events while the combined load runs. The server's own metric `ivr_digit_delay_ms` (a digit's
receipt in the worker, on pjmedia's media thread -> the controller's engine: hand-over to the worker loop,
the loop's wake-up, the wire, the controller's loop) is read from the admin `/metrics` before and after
the window; p50/p99 are the upper bounds of the buckets that hold them (FINE_BUCKETS_MS, 1..1000 ms). A digit
call refused with 503 (no free slot) types nothing: the scenario logs it as "rejected" and counts it a success.
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
SIPP_DIGITS = (25012, 25050)
"""SIPp's signalling port and media port (it binds media + 2 as well): clear of capacity.py's others."""
_BUCKET = re.compile(r'^ivr_digit_delay_ms_bucket\{method="(\w+)",le="([^"]+)"\} (\d+)$', re.M)

Buckets = dict[str, list[tuple[float, int]]]


def caller(srv: rig.Server, rate: float, seconds: float, run: Path) -> drive.Sipp:
    return drive.Sipp("rfc4733_digits.xml", run, srv.ports.sip, *SIPP_DIGITS, rtp_ports=[SIPP_DIGITS[1]],
                      rate=rate, total=int(rate * seconds), limit=max(20, int(rate * 10)), pause_ms=PCAP_MS + 700,
                      service=rig.HOLD_NUMBER, sets={"caller": "+15551000002"}, timeout_s=seconds + 60,
                      extra=["-key", "dtmf_pcap", str(PCAP)])


def scrape(admin_port: int) -> Buckets:
    """Cumulative bucket counts of ivr_digit_delay_ms per method (empty before the first digit)."""
    with urllib.request.urlopen(f"http://{rig.HOST}:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: Buckets = {}
    for method, le, count in _BUCKET.findall(text):
        out.setdefault(method, []).append((float("inf") if le == "+Inf" else float(le), int(count)))
    return out


def delays(before: Buckets, after: Buckets) -> dict[str, Any]:
    """Digits seen in the window per method, with p50/p99 (bucket upper bounds, ms)."""
    result: dict[str, Any] = {}
    for method, rows in after.items():
        base = dict(before.get(method, []))
        counts = [(bound, n - base.get(bound, 0)) for bound, n in rows]
        total = counts[-1][1] if counts else 0
        result[method] = {"digits": total, "p50_ms_le": _quantile(counts, total, 0.50),
                          "p99_ms_le": _quantile(counts, total, 0.99), "buckets": counts}
    return result


def _quantile(cumulative: list[tuple[float, int]], total: int, q: float) -> float | None:
    if total == 0:
        return None
    for bound, n in cumulative:
        if n >= q * total:
            return bound
    return None
