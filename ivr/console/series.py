"""The console's charts: calls per time bucket by queue and by tier, from stored records (pure, no I/O).

Labels are bounded the way the metrics bound them (`records.stats`): a queue the config does not name, or a tier
outside `records.tiers`, is "other"; no queue or tier is "none". Caller data never becomes a series name.
"""

from __future__ import annotations

from collections.abc import Iterable

from ivr.config.model import IvrConfig
from ivr.records.stats import TIER_VARIABLE, queue_label, tier_label

BUCKETS = 60
WINDOWS_H = (1, 6, 24)
"""The windows the page offers; each is 60 buckets (1 h: a minute each, 24 h: 24 minutes each)."""


def _queue_of(record: dict[str, object]) -> str | None:
    outcome = record.get("outcome")
    if isinstance(outcome, dict) and outcome.get("queue"):
        return str(outcome["queue"])
    transfers = record.get("transfers")
    if isinstance(transfers, list) and transfers and isinstance(transfers[-1], dict):
        queue = transfers[-1].get("queue")
        return str(queue) if queue else None
    return None


def per_bucket(config: IvrConfig, records: Iterable[dict[str, object]], *, now: float,
               hours: int) -> dict[str, object]:
    """{"start": epoch s of the first bucket, "bucket_s", "buckets", "queue": {label: [count per bucket]},
    "tier": ...} over the last `hours`. Records are placed by `started_at`; those outside are ignored."""
    bucket_s = hours * 3600 // BUCKETS
    end = (int(now) // bucket_s + 1) * bucket_s
    start = end - BUCKETS * bucket_s
    by_queue: dict[str, list[int]] = {}
    by_tier: dict[str, list[int]] = {}
    for record in records:
        started = record.get("started_at")
        if not isinstance(started, int | float) or not start <= started < end:
            continue
        index = int(started - start) // bucket_s
        variables = record.get("variables")
        tier_vars = {TIER_VARIABLE: str(variables.get(TIER_VARIABLE, ""))} if isinstance(variables, dict) else {}
        for series, label in ((by_queue, queue_label(config, _queue_of(record))),
                              (by_tier, tier_label(config, tier_vars))):
            series.setdefault(label, [0] * BUCKETS)[index] += 1
    return {"start": start, "bucket_s": bucket_s, "buckets": BUCKETS, "hours": hours,
            "queue": dict(sorted(by_queue.items())), "tier": dict(sorted(by_tier.items()))}
