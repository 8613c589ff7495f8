"""The worker loop's deadline heap (ivr/sip/deadlines.py): no pjsua2, no clock."""

from __future__ import annotations

from ivr.sip.deadlines import Deadlines, Due


def test_due_deadlines_come_out_earliest_first_and_only_once() -> None:
    d = Deadlines()
    d.arm("c1", "end", 30.0)
    d.arm("c1", "answer", 5.0)
    d.arm("c2", "play", 7.0, token=3)
    assert d.next_at() == 5.0
    assert d.due(4.9) == []
    assert d.due(10.0) == [Due("c1", "answer", 0), Due("c2", "play", 3)]
    assert d.due(10.0) == []
    assert d.next_at() == 30.0 and len(d) == 1


def test_a_replaced_deadline_fires_once_at_its_new_time_with_its_new_token() -> None:
    d = Deadlines()
    d.arm("c1", "play", 5.0, token=1)
    d.arm("c1", "play", 9.0, token=2)
    assert d.next_at() == 9.0  # the stale entry at 5.0 is dropped, not waited for
    assert d.due(8.0) == []
    assert d.due(9.0) == [Due("c1", "play", 2)]


def test_cancelled_deadlines_never_fire_and_do_not_hold_the_next_wake_up() -> None:
    d = Deadlines()
    d.arm("c1", "answer", 1.0)
    d.arm("c1", "end", 2.0)
    d.arm("c2", "record", 3.0)
    d.cancel("c1", "answer")
    assert d.next_at() == 2.0
    d.cancel_call("c1")
    assert d.next_at() == 3.0
    assert d.due(100.0) == [Due("c2", "record", 0)]
    assert d.next_at() is None and len(d) == 0
