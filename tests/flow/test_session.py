"""Session-level behaviour: branch, set, goto, hangup, loop guard, max duration, call end, record()."""

from __future__ import annotations

from typing import Any

import pytest
from flowkit import T0, call, connect, make_config
from recordkit import hung_up

from ivr.config.model import IvrConfig
from ivr.flow.commands import Answer, Fetch, HangUp, Play, Speak, StopPlayback, Transfer
from ivr.flow.events import CallConnected, CallEnded, DigitReceived, FetchCompleted, PlaybackFinished
from ivr.flow.session import FlowSession


def ends(*names: str) -> list[dict[str, Any]]:
    return [{"id": name, "type": "hangup", "reason": name} for name in names]


def branch_config(cases: list[dict[str, Any]], values: dict[str, str]) -> IvrConfig:
    steps = [{"id": "set", "type": "set", "values": values},
             {"id": "b", "type": "branch", "cases": cases, "default": "other"}, *ends("a", "b2", "other")]
    return make_config(steps)


@pytest.mark.parametrize(("when", "values", "expected"), [
    ({"var": "tier", "equals": "gold"}, {"tier": "gold"}, "a"),
    ({"var": "tier", "equals": "gold"}, {"tier": "Gold"}, "other"),
    ({"var": "tier", "in": ["gold", "platinum"]}, {"tier": "platinum"}, "a"),
    ({"var": "tier", "in": ["gold"]}, {"x": "1"}, "other"),
    ({"var": "tier", "exists": True}, {"tier": "x"}, "a"),
    ({"var": "tier", "exists": True}, {"tier": ""}, "other"),
    ({"var": "tier", "exists": False}, {"x": "1"}, "a"),
    ({"var": "acct", "matches": "[0-9]{3}"}, {"acct": "123"}, "a"),
    ({"var": "acct", "matches": "[0-9]{3}"}, {"acct": "1234"}, "other"),   # fullmatch
    ({"var": "acct", "matches": ".*"}, {"x": "1"}, "other"),               # unset never matches
    ([{"var": "tier", "equals": "gold"}, {"var": "acct", "exists": True}], {"tier": "gold", "acct": "1"}, "a"),
    ([{"var": "tier", "equals": "gold"}, {"var": "acct", "exists": True}], {"tier": "gold"}, "other"),
])
def test_branch_conditions(when: Any, values: dict[str, str], expected: str) -> None:
    session, commands = connect(branch_config([{"when": when, "goto": "a"}], values))
    assert commands == [HangUp(expected)]


def test_branch_first_match_wins() -> None:
    cases = [{"when": {"var": "t", "exists": True}, "goto": "b2"}, {"when": {"var": "t", "equals": "x"}, "goto": "a"}]
    session, commands = connect(branch_config(cases, {"t": "x"}))
    assert commands == [HangUp("b2")]
    assert session.record().as_dict()["path"] == ["set:set", "b:b2", "b2:hangup"]


def test_set_renders_templates_with_builtins() -> None:
    steps = [{"id": "s", "type": "set", "values": {"who": "{{caller}}@{{trunk}}/{{dialed}}/{{call_id}}",
                                                   "none": "{{nothing}}"}}, *ends("end")]
    session, _ = connect(make_config(steps))
    assert session.record().as_dict()["variables"] == {"who": "+15551000001@t1/100/c1", "none": ""}


def test_goto_step_and_flow() -> None:
    flows = {
        "main": {"steps": [{"id": "g", "type": "goto", "step": "jump"}, *ends("skipped"),
                           {"id": "jump", "type": "goto", "flow": "other"}]},
        "other": {"steps": [{"id": "hello", "type": "play", "prompts": ["hi"]}, *ends("there")]},
    }
    session, commands = connect(make_config(flows=flows))
    assert commands == [Play(1, ("hi",))]
    assert session.handle(PlaybackFinished(1), T0 + 1) == [HangUp("there")]
    assert session.record().as_dict()["path"] == ["g:goto", "jump:goto", "other/hello:played", "other/there:hangup"]
    assert session.record().as_dict()["flow"] == "main"


def test_loop_guard() -> None:
    steps = [{"id": "a", "type": "set", "values": {"x": "1"}}, {"id": "b", "type": "goto", "step": "a"}]
    session, commands = connect(make_config(steps))
    assert commands == [HangUp("loop_detected")]
    assert session.record().as_dict()["path"][-1] == "a:loop_detected"  # type: ignore[index]
    assert len(session.record().as_dict()["path"]) == 52  # type: ignore[arg-type]


def test_hangup_plays_prompts_uninterruptible_then_hangs_up() -> None:
    steps = [{"id": "bye", "type": "hangup", "prompts": ["goodbye"], "reason": "closed"}]
    session, commands = connect(make_config(steps))
    assert commands == [Play(1, ("goodbye",), interruptible=False)]
    assert session.handle(DigitReceived("1"), T0 + 0.5) == []
    assert session.handle(PlaybackFinished(1), T0 + 2) == [HangUp("closed")]
    assert session.deadline is None and not session.finished
    assert session.handle(DigitReceived("1"), T0 + 2.1) == []
    assert session.handle(CallEnded("local_hangup"), T0 + 2.2) == []
    assert session.finished and session.record().as_dict()["outcome"] == hung_up("closed")


def test_max_duration() -> None:
    steps = [{"id": "m", "type": "menu", "prompts": ["m"], "options": {"1": "m"}, "on_exhausted": "m",
              "timeout": 60, "attempts": 10}]
    config = make_config(steps, sip={"max_call_duration": 30})
    session, _ = connect(config)
    session.handle(PlaybackFinished(1), T0 + 1)
    assert session.deadline == T0 + 30
    assert session.handle_timer(T0 + 30) == [HangUp("max_duration")]
    assert session.record().as_dict()["path"] == ["m:max_duration"]
    assert session.record().as_dict()["outcome"] == hung_up("max_duration")


def test_max_duration_while_playing_stops_playback() -> None:
    config = make_config([{"id": "p", "type": "play", "prompts": ["long"]}], sip={"max_call_duration": 5})
    session, _ = connect(config)
    assert session.handle_timer(T0 + 5) == [StopPlayback(1), HangUp("max_duration")]


def test_never_connected_call_is_bounded() -> None:
    config = make_config(ends("x"), sip={"max_call_duration": 5})
    session = FlowSession(config, "main", call(), T0)
    assert session.start(T0) == [Answer()]
    assert session.deadline == T0 + 5
    assert session.handle_timer(T0 + 5) == [HangUp("max_duration")]


def test_stale_and_early_timer_firings_are_no_ops() -> None:
    steps = [{"id": "m", "type": "menu", "prompts": ["m"], "options": {"1": "end"}, "on_exhausted": "end",
              "timeout": 5}, *ends("end")]
    session, _ = connect(make_config(steps))
    session.handle(PlaybackFinished(1), T0 + 1)
    assert session.handle_timer(T0 + 3) == []
    session.handle(DigitReceived("1"), T0 + 2)
    assert session.handle_timer(T0 + 6) == []           # the old menu deadline: the session has moved on


def test_call_ended_mid_prompt_emits_nothing_more() -> None:
    session, _ = connect(make_config([{"id": "p", "type": "play", "prompts": ["x"]}]))
    assert session.handle(CallEnded("caller_hangup", 487), T0 + 1) == []
    assert session.finished and session.deadline is None
    for event in (PlaybackFinished(1), DigitReceived("1"), CallConnected(), CallEnded("again")):
        assert session.handle(event, T0 + 2) == []
    assert session.handle_timer(T0 + 10_000) == []
    record = session.record().as_dict()
    assert record["path"] == ["p:abandoned"] and record["end_reason"] == "caller_hangup"


def test_duplicate_connected_is_ignored_and_unknown_flow_is_a_bug() -> None:
    session, _ = connect(make_config([{"id": "p", "type": "play", "prompts": ["x"]}]))
    assert session.handle(CallConnected(), T0 + 1) == []
    with pytest.raises(KeyError):
        FlowSession(make_config(ends("x")), "nope", call(), T0)


# --- the default flows (config/ivr.yaml) ------------------------------------------------------------

def test_default_vip_routing_unknown_caller_by_account(default_config: IvrConfig) -> None:
    session, commands = connect(default_config, "vip_routing", info=call(caller="+15559999999"))
    assert commands == [Play(1, ("welcome",))]
    assert isinstance(session.handle(PlaybackFinished(1), T0 + 2)[0], Fetch)
    assert session.handle(FetchCompleted(1, 200, {"data": []}), T0 + 2.1) == [Play(2, ("enter_account",))]
    for d in "123456":
        session.handle(DigitReceived(d), T0 + 3)
    [fetch] = session.handle(DigitReceived("#"), T0 + 4)
    assert isinstance(fetch, Fetch) and fetch.query == (("account", "123456"),)
    body = {"data": [{"id": "C9", "loyalty": {"tier": "gold"}}]}
    assert session.handle(FetchCompleted(2, 200, body), T0 + 4.2) == [
        Transfer("gold", "sip:gold@127.0.0.1:5070", (("X-Customer-Id", "C9"), ("X-Customer-Tier", "gold")))]
    assert session.record().as_dict()["path"] == [
        "greet:played", "lookup_phone:ok", "known_by_phone:ask_account", "ask_account:ok",
        "wants_person:lookup_account", "lookup_account:ok", "known_by_account:crm_language",
        "crm_language:greet_by_name",
        "greet_by_name:route_by_tier", "route_by_tier:to_gold"]


def test_default_support_flow_closed_on_holiday(default_config: IvrConfig) -> None:
    christmas = 1798196400.0  # 2026-12-25 10:00 UTC
    session, commands = connect(default_config, "support", now=christmas)
    assert commands == [Speak(1, (("prompt", "closed"), ("say", "We open at 8 a.m. on Tuesday.")), "en",
                              interruptible=False)]
    assert session.handle(PlaybackFinished(1), christmas + 3) == [HangUp("closed")]


def test_record_shape(default_config: IvrConfig) -> None:
    session, _ = connect(default_config, "support")
    assert list(session.record().as_dict()) == [
        "uid", "call_id", "sip_call_id", "worker", "trunk", "caller", "dialed", "flow", "started_at", "ended_at",
        "end_reason", "outcome", "path", "inputs", "variables", "fetches", "transfers", "legs", "timings", "node",
        "version"]
    steps = [{"id": "s", "type": "set", "values": {"pin": "1234", "account_pin": "1", "spin": "x"}}, *ends("e")]
    session, _ = connect(make_config(steps))
    assert session.record().as_dict()["variables"] == {"pin": "***", "account_pin": "***", "spin": "x"}


def test_unknown_trunk_gets_defaults_and_bad_target_hangs_up() -> None:
    steps = [{"id": "m", "type": "menu", "prompts": ["m"], "options": {"A": "nowhere"}, "on_exhausted": "m"}]
    session, _ = connect(make_config(steps), info=call(trunk="mystery"))
    assert session.handle(DigitReceived("A", "info"), T0 + 1) == [StopPlayback(1), HangUp("bad_target")]
    assert session.record().as_dict()["path"] == ["m:A"]
