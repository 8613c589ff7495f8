"""The console's charts: calls per minute by queue and by tier, from stored records (pure, no I/O).

Labels are bounded the way the metrics bound them (`records.stats`): a queue the config does not name, or a tier
outside `records.tiers`, is "other"; no queue or tier is "none". Caller data never becomes a series name.
"""

from __future__ import annotations

from collections.abc import Iterable

from ivr.config.model import IvrConfig
from ivr.records.stats import TIER_VARIABLE, queue_label, tier_label

BUCKET_S = 60


def _queue_of(record: dict[str, object]) -> str | None:
    outcome = record.get("outcome")
    if isinstance(outcome, dict) and outcome.get("queue"):
        return str(outcome["queue"])
    transfers = record.get("transfers")
    if isinstance(transfers, list) and transfers and isinstance(transfers[-1], dict):
        queue = transfers[-1].get("queue")
        return str(queue) if queue else None
    return None


def per_minute(config: IvrConfig, records: Iterable[dict[str, object]], *, now: float,
               minutes: int) -> dict[str, object]:
    """{"start": epoch s of the first bucket, "bucket_s": 60, "queue": {label: [count per minute]}, "tier": ...}.
    Records are placed by `started_at`; those outside the window are ignored."""
    end = (int(now) // BUCKET_S + 1) * BUCKET_S
    start = end - minutes * BUCKET_S
    by_queue: dict[str, list[int]] = {}
    by_tier: dict[str, list[int]] = {}
    for record in records:
        started = record.get("started_at")
        if not isinstance(started, int | float) or not start <= started < end:
            continue
        index = int(started - start) // BUCKET_S
        variables = record.get("variables")
        tier_vars = {TIER_VARIABLE: str(variables.get(TIER_VARIABLE, ""))} if isinstance(variables, dict) else {}
        for series, label in ((by_queue, queue_label(config, _queue_of(record))),
                              (by_tier, tier_label(config, tier_vars))):
            series.setdefault(label, [0] * minutes)[index] += 1
    return {"start": start, "bucket_s": BUCKET_S, "minutes": minutes,
            "queue": dict(sorted(by_queue.items())), "tier": dict(sorted(by_tier.items()))}
