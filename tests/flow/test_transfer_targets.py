"""The transfer step over several targets: failover before on_fail, the shared cursor, variable targets,
the allow-list, and where the caller's headers go (REFER, Refer-To URI, both)."""

from __future__ import annotations

from typing import Any

import pytest
from flowkit import T0, call, connect, make_config
from recordkit import transferred

from ivr.flow.commands import Play, Transfer
from ivr.flow.events import CallConnected, TransferProgress
from ivr.flow.session import FlowSession
from ivr.flow.targets import QueueCursors

A, B, C = "sip:a@pbx.test", "sip:b@pbx.test", "sip:c@pbx.test"
SORRY = [Play(1, ("sorry",), interruptible=False)]


def config(queue: dict[str, Any], *, target: str | None = None, am: str = "grace") -> Any:
    step: dict[str, Any] = {"id": "go", "type": "transfer", "queue": "agents", "notify_timeout": 5, "on_fail": "sorry"}
    if target is not None:
        step["target"] = target
    steps = [{"id": "set", "type": "set", "values": {"am": am, "cid": "C-1001"}}, step,
             {"id": "sorry", "type": "hangup", "prompts": ["sorry"], "reason": "sorry"}]
    return make_config(steps, queues={"agents": queue, "default": {"uri": "sip:default@pbx.test"}})


AGENTS = {"targets": [{"uri": A}, {"uri": B}, {"uri": C}], "strategy": "ordered",
          "headers": {"X-Customer-Id": "{{cid}}"}}


@pytest.mark.parametrize("failure", [
    lambda s, t: s.handle(TransferProgress(603, True), t),                                     # REFER refused
    lambda s, t: s.handle(TransferProgress(202, False), t) + s.handle(TransferProgress(486, True), t),  # NOTIFY 486
    lambda s, t: s.handle_timer(t + 5),                                                         # no NOTIFY
])
def test_ordered_fails_over_through_every_target_before_on_fail(failure: Any) -> None:
    session, first = connect(config(AGENTS))
    assert [c.uri for c in first if isinstance(c, Transfer)] == [A]
    second = failure(session, T0 + 1)
    assert [c.uri for c in second if isinstance(c, Transfer)] == [B]
    assert session.deadline is not None and session.current_step == "go"
    third = session.handle(TransferProgress(405, True), T0 + 2)
    assert [c.uri for c in third if isinstance(c, Transfer)] == [C]
    assert session.handle(TransferProgress(603, True), T0 + 3) == SORRY
    record = session.record().as_dict()
    assert [(t["uri"], t["result"]) for t in record["transfers"]][1:] == [  # type: ignore[index, union-attr]
        (B, "rejected_405"), (C, "rejected_603")]
    assert record["path"] == ["set:set", "go:rejected_603"]


def test_the_second_target_takes_the_call() -> None:
    session, _ = connect(config(AGENTS))
    session.handle(TransferProgress(603, True), T0 + 1)
    session.handle(TransferProgress(200, True), T0 + 2)
    record = session.record().as_dict()
    assert record["outcome"] == transferred("agents", B)
    assert [t["result"] for t in record["transfers"]] == ["rejected_603", "ok"]  # type: ignore[union-attr]
    assert record["transfers"][1]["code"] == 200  # type: ignore[index]


def test_round_robin_state_lives_in_the_controllers_cursor() -> None:
    cfg = config(AGENTS | {"strategy": "round_robin"})
    cursors = QueueCursors()
    firsts = []
    for _ in range(6):
        session = FlowSession(cfg, "main", call(), T0, cursors)
        session.start(T0)
        firsts += [c.uri for c in session.handle(CallConnected(), T0) if isinstance(c, Transfer)]
    assert firsts == [A, B, C, A, B, C]
    # a session without the controller's cursor starts from zero every time: nothing hidden in the engine
    assert [c.uri for c in connect(cfg)[1] if isinstance(c, Transfer)] == [A]


def test_headers_go_where_the_queue_says() -> None:
    for mode, uri, on_refer in [("refer", A, (("X-Customer-Id", "C-1001"),)),
                                ("refer_to", A + "?X-Customer-Id=C-1001", ()),
                                ("both", A + "?X-Customer-Id=C-1001", (("X-Customer-Id", "C-1001"),))]:
        _, commands = connect(config(AGENTS | {"header_mode": mode}))
        assert commands[-1] == Transfer("agents", uri, on_refer)


MANAGERS = {"allow": ["sip:*@pbx.example.com"], "targets": [{"uri": A}]}


def test_variable_target_is_tried_first_then_the_queue() -> None:
    session, commands = connect(config(MANAGERS, target="sip:{{am}}@pbx.example.com"))
    assert commands[-1].uri == "sip:grace@pbx.example.com"  # type: ignore[union-attr]
    assert [c.uri for c in session.handle(TransferProgress(486, True), T0 + 1)  # type: ignore[union-attr]
            if isinstance(c, Transfer)] == [A]


@pytest.mark.parametrize(("am", "reason"), [("", "empty"), ("evil@attacker.test", "invalid"),
                                            ("grace;maddr=attacker.test", "invalid")])
def test_variable_target_outside_the_allow_list_is_skipped_and_recorded(am: str, reason: str) -> None:
    session, commands = connect(config(MANAGERS, target="sip:{{am}}@pbx.example.com", am=am))
    assert [c.uri for c in commands if isinstance(c, Transfer)] == [A]
    skipped = session.record().as_dict()["transfers"][0]  # type: ignore[index]
    assert (skipped["result"], skipped["code"]) == (reason, None)


def test_variable_target_only_queue_goes_to_on_fail_with_the_reason() -> None:
    session, commands = connect(config({"allow": ["sip:*@pbx.example.com"]}, target="sip:{{am}}@evil.test"))
    assert commands == SORRY
    assert session.record().as_dict()["path"] == ["set:set", "go:target_disallowed"]
    assert session.record().as_dict()["transfers"][0]["uri"] == "sip:grace@evil.test"  # type: ignore[index]


def test_a_manager_who_refuses_ends_in_on_fail() -> None:
    session, commands = connect(config({"allow": ["sip:*@pbx.example.com"]}, target="sip:{{am}}@pbx.example.com"))
    assert commands[-1].uri == "sip:grace@pbx.example.com"  # type: ignore[union-attr]
    assert session.handle(TransferProgress(603, True), T0 + 1) == SORRY
    assert session.record().as_dict()["path"] == ["set:set", "go:rejected_603"]
