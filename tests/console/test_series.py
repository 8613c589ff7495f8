"""The console's charts: calls per minute by queue and tier, labels bounded by the config like the metrics."""

from __future__ import annotations

from pathlib import Path

from recordkit import sample

from ivr.config.load import load_config
from ivr.console.series import per_bucket

CONFIG = load_config(Path(__file__).resolve().parents[2] / "config" / "ivr.yaml", check_files=False).config

NOW = 1_800_000_030.0  # 30 s into a minute


def test_calls_are_counted_per_minute_by_queue_and_tier() -> None:
    records = [sample("a", started_at=NOW - 5, tier="gold", queue="gold"),
               sample("b", started_at=NOW - 20, tier="gold", queue="gold"),
               sample("c", started_at=NOW - 65, tier="platinum", queue="platinum"),
               sample("d", started_at=NOW - 125, tier="+15551234567", queue="nowhere"),
               {**sample("e", started_at=NOW - 130, tier="", queue=None), "transfers": []},
               sample("old", started_at=NOW - 3 * 3600)]
    data = per_bucket(CONFIG, records, now=NOW, hours=1)
    assert data["bucket_s"] == 60 and data["buckets"] == 60 and data["hours"] == 1
    assert data["start"] == 1_800_000_060 - 3600
    queue, tier = data["queue"], data["tier"]
    assert isinstance(queue, dict) and isinstance(tier, dict)
    assert set(queue) == {"gold", "platinum", "other", "none"} and set(tier) == {"gold", "platinum", "other", "none"}
    assert queue["gold"][-1] == 2 and sum(queue["gold"]) == 2
    assert queue["platinum"][-2] == 1 and queue["other"][-3] == 1 and queue["none"][-3] == 1
    assert tier["other"][-3] == 1  # a caller's number in the tier variable never becomes a series name
    assert all(len(counts) == 60 for counts in (*queue.values(), *tier.values()))


def test_a_day_is_sixty_buckets_of_24_minutes() -> None:
    records = [sample(uid, started_at=NOW - ago) for uid, ago in (("a", 5), ("b", 23 * 3600), ("c", 3 * 3600))]
    data = per_bucket(CONFIG, records, now=NOW, hours=24)
    queue = data["queue"]
    assert isinstance(queue, dict)
    assert data["bucket_s"] == 24 * 60 and len(queue["gold"]) == 60 and sum(queue["gold"]) == 3
    assert queue["gold"][-1] == 1
