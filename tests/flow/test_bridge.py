"""Bridged transfer (a trunk with refer: false): Bridge command, leg progress, busy/no answer, both legs recorded."""

from __future__ import annotations

from typing import Any

import pytest
from flowkit import T0, connect, make_config
from test_transfer import QUEUES, flow

from ivr.flow.commands import Bridge, HangUp, Play
from ivr.flow.events import BridgeEnded, BridgeProgress, CallEnded, DigitReceived
from ivr.records.model import Leg, Outcome

URI = "sip:gold@pbx.test;transport=tcp;cust=C%201%3Bx%3E"


def start(on_fail: str | None = "sorry", **extra: Any) -> Any:
    config = make_config(flow(on_fail, **extra), queues=QUEUES,
                         trunks=[{"name": "t1", "sources": ["127.0.0.1"], "refer": False}])
    return connect(config)


def test_refer_false_bridges_with_the_queue_headers_and_ring_timeout() -> None:
    session, commands = start(ring_timeout=15)
    assert commands == [Bridge("gold", URI, (("X-Tier", "goldVia: evil"), ("X-Evil", "+15551000001")), 15.0)]
    assert session.deadline is not None and session.deadline > T0 + 15


def test_answered_leg_stays_bridged_until_the_caller_hangs_up() -> None:
    session, _ = start()
    assert session.handle(BridgeProgress(180, False), T0 + 0.5) == []
    assert session.handle(BridgeProgress(200, True, "answered", "leg-1@w"), T0 + 2) == []
    assert session.handle(DigitReceived("5"), T0 + 3) == []
    assert session.handle(CallEnded("caller_hangup"), T0 + 62) == []
    record = session.record()
    assert record.outcome == Outcome("transfer", "bridged", "gold", URI)
    assert record.path == ("set:set", "to_gold:bridged")
    (transfer,) = record.transfers
    assert (transfer.result, transfer.code, transfer.progress, transfer.sent_at) == ("bridged", 200, (180, 200), T0)
    assert record.legs == (Leg(URI, "leg-1@w", T0 + 2, 60000.0, "caller_hangup"),)
    assert record.end_reason == "caller_hangup"
    assert record.as_dict()["legs"] == [{"target": URI, "sip_call_id": "leg-1@w", "answered_at": T0 + 2,
                                         "duration_ms": 60000.0, "end_reason": "caller_hangup"}]


def test_agent_hangup_is_recorded_on_the_leg() -> None:
    session, _ = start()
    session.handle(BridgeProgress(200, True, "answered", "leg-2@w"), T0 + 1)
    assert session.handle(BridgeEnded("agent_hangup", 200), T0 + 11) == []
    assert not session.finished
    session.handle(CallEnded("agent_hangup"), T0 + 11.1)
    (leg,) = session.record().legs
    assert (leg.end_reason, leg.duration_ms) == ("agent_hangup", 10000.0)
    assert session.record().end_reason == "agent_hangup"


@pytest.mark.parametrize(("code", "result"), [(486, "busy"), (600, "busy"), (408, "no_answer"), (503, "rejected_503")])
def test_failed_leg_goes_to_on_fail(code: int, result: str) -> None:
    session, _ = start()
    session.handle(BridgeProgress(180, False), T0 + 0.5)
    assert session.handle(BridgeProgress(code, True, "", "leg@w"), T0 + 1) == [Play(1, ("sorry",), interruptible=False)]
    record = session.record()
    assert record.path == ("set:set", f"to_gold:{result}")
    assert (record.transfers[0].result, record.transfers[0].code) == (result, code)
    assert record.legs == (Leg(URI, "leg@w", None, None, result),)


def test_no_final_answer_from_the_worker_fails_as_no_answer() -> None:
    session, _ = start(ring_timeout=5)
    deadline = session.deadline
    assert deadline is not None
    assert session.handle_timer(deadline - 0.1) == []
    assert session.handle_timer(deadline) == [Play(1, ("sorry",), interruptible=False)]
    assert session.record().transfers[0].result == "no_answer"
    assert session.handle(BridgeProgress(200, True), deadline + 1) == []


def test_failure_without_on_fail_hangs_up() -> None:
    session, _ = start(on_fail=None)
    assert session.handle(BridgeProgress(486, True), T0 + 1) == [HangUp("transfer_failed")]


def test_caller_hangs_up_while_the_agent_rings() -> None:
    session, _ = start()
    session.handle(BridgeProgress(180, False), T0 + 0.5)
    session.handle(CallEnded("caller_hangup"), T0 + 3)
    record = session.record()
    assert record.transfers[0].result == "abandoned"
    assert record.legs[0].end_reason == "abandoned"
    assert record.outcome == Outcome("abandoned", "caller_hangup")


def test_a_busy_target_moves_on_to_the_queues_next_target() -> None:
    queues = {"agents": {"targets": [{"uri": "sip:a@pbx.test"}, {"uri": "sip:b@pbx.test"}],
                         "headers": {"X-Customer-Caller": "{{caller}}"}}}
    steps = [{"id": "go", "type": "transfer", "queue": "agents", "on_fail": "bye"},
             {"id": "bye", "type": "hangup", "prompts": ["sorry"]}]
    config = make_config(steps, queues=queues, trunks=[{"name": "t1", "sources": ["127.0.0.1"], "refer": False}])
    session, commands = connect(config)
    headers = (("X-Customer-Caller", "+15551000001"),)
    assert commands == [Bridge("agents", "sip:a@pbx.test", headers, 20.0)]
    assert session.handle(BridgeProgress(486, True, "", "a@w"), T0 + 1) == [
        Bridge("agents", "sip:b@pbx.test", headers, 20.0)]
    assert session.handle(BridgeProgress(200, True, "answered", "b@w"), T0 + 2) == []
    session.handle(CallEnded("caller_hangup"), T0 + 5)
    record = session.record()
    assert [(t.uri, t.result) for t in record.transfers] == [("sip:a@pbx.test", "busy"), ("sip:b@pbx.test", "bridged")]
    assert [(leg.target, leg.end_reason) for leg in record.legs] == [("sip:a@pbx.test", "busy"),
                                                                     ("sip:b@pbx.test", "caller_hangup")]
    assert record.outcome == Outcome("transfer", "bridged", "agents", "sip:b@pbx.test")
