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


def test_trunk_sources_and_registrations_need_a_restart_only_with_a_front() -> None:
    old = load_config(ROOT / "config" / "ivr.yaml").config
    assert old.sip.workers > 1  # the default config runs a managed front
    trunk = old.trunks[0]
    refer = old.model_copy(update={"trunks": (trunk.model_copy(update={"refer": not trunk.refer}), *old.trunks[1:])})
    assert restart_needed(old, refer) == []  # the controller's part of a trunk is hot
    moved = old.model_copy(update={"trunks": (trunk.model_copy(update={"sources": ("192.0.2.1",)}), *old.trunks[1:])})
    assert restart_needed(old, moved) == ["trunks"]  # Kamailio's address table is rendered at start-up
    single = old.model_copy(update={"sip": old.sip.model_copy(update={"workers": 1})})
    single_moved = single.model_copy(update={"trunks": moved.trunks})
    assert restart_needed(single, single_moved) == []
