"""Metrics labels come from the config only: unknown tiers, flows, queues and menu digits are 'other'."""

from __future__ import annotations

from pathlib import Path

from recordkit import sample

from ivr.config.load import load_config
from ivr.metrics import Metrics
from ivr.records.model import record_from_dict
from ivr.records.stats import count_call, transfer_result_label

CONFIG = load_config(Path(__file__).resolve().parents[2] / "config" / "ivr.yaml", check_files=False).config


def test_labels_are_bounded_by_the_config() -> None:
    metrics = Metrics()
    hostile = sample("x", tier="+15551234567", queue="sales", path=("main_menu:7", "main_menu:2", "to_support:ok"))
    count_call(metrics, CONFIG, record_from_dict(hostile))
    count_call(metrics, CONFIG, record_from_dict(sample("y", tier="gold", queue="nowhere")))
    text = metrics.render()
    assert "+15551234567" not in text
    assert 'ivr_call_records_total{flow="support",outcome="transfer",queue="sales",tier="other"} 1' in text
    assert 'ivr_call_records_total{flow="support",outcome="transfer",queue="other",tier="gold"} 1' in text
    assert 'ivr_menu_choices_total{menu="support/main_menu",option="other"} 1' in text
    assert 'ivr_menu_choices_total{menu="support/main_menu",option="2"} 1' in text
    assert 'ivr_time_to_transfer_ms_count{flow="support",queue="sales"} 1' in text


def test_transfer_results_are_a_fixed_set_of_labels() -> None:
    assert [transfer_result_label(r) for r in ("ok", "rejected_486", "no_notify", "disallowed", "weird_thing")] == [
        "ok", "rejected", "no_notify", "disallowed", "other"]
