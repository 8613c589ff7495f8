"""The live-call journal (ivr/records/journal.py): calls open when a node died are recorded once, as lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow.context import CallInfo
from ivr.records import journal
from ivr.records.journal import LiveJournal
from ivr.records.model import Outcome


def info(uid: str) -> CallInfo:
    return CallInfo(call_id=f"c-{uid}", caller="+15551000001", dialed="100", trunk="demo", sip_call_id=f"sip-{uid}",
                    worker="w001", uid=uid, node="node-a")


def test_open_calls_of_a_dead_run_come_back_as_lost_records_once(tmp_path: Path) -> None:
    first = LiveJournal(tmp_path)
    assert first.recover() == []
    for uid in ("a", "b", "c"):
        first.opened(info(uid), "main", 1000.0)
    first.closed("b")
    # SIGKILL: nothing more is written; the file holds what the kernel had, plus a line torn by the crash.
    with (tmp_path / journal.NAME).open("a") as f:
        f.write('{"event":"open","uid":"d","ca')
    again = LiveJournal(tmp_path)
    lost = again.recover()
    assert sorted(r.uid for r in lost) == ["a", "c"]
    record = next(r for r in lost if r.uid == "a")
    assert (record.sip_call_id, record.worker, record.trunk, record.caller, record.flow, record.node) == (
        "sip-a", "w001", "demo", "+15551000001", "main", "node-a")
    assert record.started_at == 1000.0 and record.ended_at is None
    assert record.end_reason == "node_lost" and record.outcome == Outcome("abandoned", "node_lost")
    assert LiveJournal(tmp_path).recover() == []  # recovered once: the journal starts empty again


def test_the_journal_is_compacted_to_the_open_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "COMPACT_EVERY", 10)
    live = LiveJournal(tmp_path)
    live.recover()
    live.opened(info("keep"), "main", 1.0)
    for i in range(20):
        live.opened(info(f"x{i}"), "main", 2.0)
        live.closed(f"x{i}")
    assert len((tmp_path / journal.NAME).read_text().splitlines()) < 10
    live.close()
    assert [r.uid for r in LiveJournal(tmp_path).recover()] == ["keep"]


def test_a_journal_not_started_writes_nothing(tmp_path: Path) -> None:
    live = LiveJournal(tmp_path)
    live.opened(info("a"), "main", 1.0)
    live.closed("a")
    assert not (tmp_path / journal.NAME).exists()
