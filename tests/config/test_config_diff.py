"""Which changes a SIGHUP reload may apply while calls are up."""

from __future__ import annotations

from pathlib import Path

from ivr.config.diff import changed_sections, restart_needed
from ivr.config.load import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_flow_and_number_changes_are_hot_and_sip_changes_need_a_restart() -> None:
    old = load_config(ROOT / "config" / "ivr.yaml").config
    numbers = {**old.numbers, "600": "support"}
    hot = old.model_copy(update={"numbers": numbers})
    assert (changed_sections(old, hot), restart_needed(old, hot)) == (["numbers"], [])
    cold = hot.model_copy(update={"sip": old.sip.model_copy(update={"retry_after": 5})})
    assert restart_needed(old, cold) == ["sip"]
    assert changed_sections(old, old) == []
