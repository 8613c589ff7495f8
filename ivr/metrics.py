"""In-process counters and latency histograms, rendered in the Prometheus text format by `admin.py`."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]

_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
FINE_BUCKETS_MS = (1, 2, 5, 10, 15, 20, 30, 50, 100, 250, 1000)
"""For delays whose target is tens of milliseconds (the RFC 4733 digit delay: p99 <= 30 ms)."""


@dataclass
class Histogram:
    bounds: tuple[float, ...] = _BUCKETS_MS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value_ms: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value_ms)] += 1
        self.total += value_ms
        self.n += 1


@dataclass
class Metrics:
    """Everything the controller counts. Keys are (metric name, labels)."""

    counters: dict[tuple[str, Labels], float] = field(default_factory=lambda: defaultdict(float))
    gauges: dict[tuple[str, Labels], float] = field(default_factory=dict)
    histograms: dict[tuple[str, Labels], Histogram] = field(default_factory=dict)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += value

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[(name, tuple(sorted(labels.items())))] = value

    def observe(self, name: str, value_ms: float, buckets: tuple[float, ...] = _BUCKETS_MS, **labels: str) -> None:
        """`buckets`: upper bounds in ms, fixed by a histogram's first observation."""
        key = (name, tuple(sorted(labels.items())))
        if (hist := self.histograms.get(key)) is None:
            hist = self.histograms[key] = Histogram(buckets)
        hist.observe(value_ms)

    def render(self) -> str:
        lines: list[str] = []
        for (name, labels), value in sorted(self.counters.items()):
            lines.append(f"{name}{_fmt(labels)} {value:g}")
        for (name, labels), value in sorted(self.gauges.items()):
            lines.append(f"{name}{_fmt(labels)} {value:g}")
        for (name, labels), hist in sorted(self.histograms.items(), key=lambda kv: kv[0]):
            cumulative = 0
            for bound, count in zip((*hist.bounds, "+Inf"), hist.counts, strict=True):
                cumulative += count
                lines.append(f"{name}_bucket{_fmt((*labels, ('le', str(bound))))} {cumulative}")
            lines.append(f"{name}_sum{_fmt(labels)} {hist.total:g}")
            lines.append(f"{name}_count{_fmt(labels)} {hist.n}")
        return "\n".join(lines) + "\n"


def _fmt(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
