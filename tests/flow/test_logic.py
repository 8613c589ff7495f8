"""Richer logic: numeric conditions, counters, sub-flows that return, flow hotkeys, run-time switches."""

from __future__ import annotations

from typing import Any

import pytest
from flowkit import T0, call, connect, make_config

from ivr.flow.commands import Fetch, HangUp, Play, StopPlayback, Transfer
from ivr.flow.events import DigitReceived, FetchCompleted, FetchFailed, PlaybackFinished
from ivr.flow.session import MAX_DEPTH, FlowSession


def ends(*names: str) -> list[dict[str, Any]]:
    return [{"id": name, "type": "hangup", "reason": name} for name in names]


@pytest.mark.parametrize(("when", "value", "expected"), [
    ({"gt": 5}, "6", "yes"), ({"gt": 5}, "5", "no"), ({"gt": 5}, "12", "yes"),   # numeric, not "12" < "5"
    ({"ge": 5}, "5", "yes"), ({"lt": 5}, "4.5", "yes"), ({"lt": 5}, "5", "no"),
    ({"le": 0}, "-1", "yes"), ({"eq": 3}, "3.0", "yes"), ({"eq": 3}, " 3 ", "yes"), ({"eq": 3}, "03", "yes"),
    ({"eq": 3}, "4", "no"),
    ({"gt": 5}, "many", "no"), ({"lt": 5}, "", "no"), ({"lt": 5}, "nan", "no"), ({"gt": 5}, "inf", "no"),
])
def test_numeric_conditions(when: dict[str, Any], value: str, expected: str) -> None:
    steps = [{"id": "set", "type": "set", "values": {"n": value}},
             {"id": "b", "type": "branch", "cases": [{"when": {"var": "n", **when}, "goto": "yes"}],
              "default": "no"}, *ends("yes", "no")]
    _, out = connect(make_config(steps))
    assert out[-1] == HangUp(expected)


def test_unset_variable_is_no_number() -> None:
    steps = [{"id": "b", "type": "branch", "cases": [{"when": {"var": "n", "lt": 100}, "goto": "yes"}],
              "default": "no"}, *ends("yes", "no")]
    assert connect(make_config(steps))[1][-1] == HangUp("no")


def order_flow() -> list[dict[str, Any]]:
    """The Bird seed: many orders go to the gold queue (on a number the CRM sends as JSON 12, not "12")."""
    return [{"id": "lookup", "type": "fetch", "endpoint": "crm", "path": "/orders?phone={{caller}}",
             "map": {"orders": "data[0].order_count"}, "on_error": "std"},
            {"id": "route", "type": "branch", "cases": [{"when": {"var": "orders", "gt": 10}, "goto": "vip"}],
             "default": "std"},
            {"id": "vip", "type": "transfer", "queue": "gold"},
            {"id": "std", "type": "transfer", "queue": "default"}]


@pytest.mark.parametrize(("count", "queue"), [(12, "gold"), (9, "default"), (10, "default"), (100, "gold")])
def test_order_count_routes_on_gt(count: int, queue: str) -> None:
    session, out = connect(make_config(order_flow()))
    assert isinstance(out[-1], Fetch)
    out = session.handle(FetchCompleted(1, 200, {"data": [{"order_count": count}]}), T0 + 0.1)
    assert isinstance(out[-1], Transfer) and out[-1].queue == queue
    assert session.path[-1] == ("route:vip" if queue == "gold" else "route:std")


def account_flow() -> list[dict[str, Any]]:
    """Ask for the account up to 3 times while the CRM does not know it, then the default queue."""
    return [{"id": "ask", "type": "gather", "prompts": ["enter_account"], "variable": "account",
             "on_exhausted": "to_default"},
            {"id": "lookup", "type": "fetch", "endpoint": "crm", "path": "/accounts/{{account}}",
             "map": {"name": "name"}, "next": "known", "on_error": "unknown"},
            {"id": "unknown", "type": "counter", "var": "misses", "limit": 2, "on_limit": "to_default",
             "next": "ask"},
            {"id": "to_default", "type": "transfer", "queue": "default"},
            {"id": "known", "type": "transfer", "queue": "gold"}]


def enter_account(session: FlowSession, digits: str, now: float) -> list[Any]:
    out: list[Any] = []
    for d in digits + "#":
        out = session.handle(DigitReceived(d), now)
    return out


def test_three_unknown_accounts_end_in_the_default_queue() -> None:
    session, out = connect(make_config(account_flow()))
    request = 0
    for attempt in range(3):
        now = T0 + 10 * attempt
        assert isinstance(out[-1], Play)
        out = enter_account(session, f"12{attempt}", now)
        request += 1
        assert isinstance(out[-1], Fetch) and out[-1].path == f"/accounts/12{attempt}"
        out = session.handle(FetchFailed(request, "http_404"), now + 1)
    assert isinstance(out[-1], Transfer) and out[-1].queue == "default"
    assert session.variables["misses"] == "3"
    assert [p for p in session.path if p.startswith("unknown:")] == ["unknown:1", "unknown:2", "unknown:limit"]


def test_a_known_account_on_the_second_try() -> None:
    session, out = connect(make_config(account_flow()))
    enter_account(session, "999", T0)
    out = session.handle(FetchFailed(1, "http_404"), T0 + 1)
    enter_account(session, "123", T0 + 2)
    out = session.handle(FetchCompleted(2, 200, {"name": "Ann"}), T0 + 3)
    assert isinstance(out[-1], Transfer) and out[-1].queue == "gold"


@pytest.mark.parametrize(("start", "step", "expected"), [
    ("2", {"add": 1}, "3"), ("x", {"add": 1}, "1"), ("2.5", {"add": 1}, "1"), ("5", {"add": -2}, "3"),
    ("7", {"add": 1, "reset": True}, "1"),
])
def test_counter_arithmetic(start: str, step: dict[str, Any], expected: str) -> None:
    steps = [{"id": "set", "type": "set", "values": {"n": start}},
             {"id": "c", "type": "counter", "var": "n", **step}, *ends("end")]
    session, _ = connect(make_config(steps))
    assert session.variables["n"] == expected


def sub_flows(sub_steps: list[dict[str, Any]], **main_extra: Any) -> dict[str, Any]:
    return {"main": {"steps": [{"id": "greet", "type": "set", "values": {"x": "main"}},
                               {"id": "verify", "type": "call", "flow": "verify", **main_extra},
                               *ends("after", "elsewhere")]},
            "verify": {"steps": sub_steps}}


def test_call_returns_to_the_next_step_with_shared_variables() -> None:
    flows = sub_flows([{"id": "mark", "type": "set", "values": {"verified": "{{x}}-yes"}},
                       {"id": "back", "type": "return"}, *ends("never")])
    session, out = connect(make_config(flows=flows))
    assert out[-1] == HangUp("after")
    assert session.variables["verified"] == "main-yes"
    assert session.path == ("greet:set", "verify:called", "verify/mark:set", "verify/back:returned", "after:hangup")


def test_return_goes_to_the_call_steps_next_and_end_of_sub_flow_returns() -> None:
    flows = sub_flows([{"id": "mark", "type": "set", "values": {"v": "1"}}], next="elsewhere")
    assert connect(make_config(flows=flows))[1][-1] == HangUp("elsewhere")


def test_sub_flow_waits_for_the_caller_then_returns() -> None:
    flows = sub_flows([{"id": "ask", "type": "menu", "prompts": ["menu"], "options": {"1": "ok"},
                        "on_exhausted": "ok"}, {"id": "ok", "type": "return"}])
    session, out = connect(make_config(flows=flows))
    assert isinstance(out[-1], Play)
    session.handle(PlaybackFinished(out[-1].play_id), T0 + 1)
    assert session.handle(DigitReceived("1"), T0 + 2)[-1] == HangUp("after")


def test_return_outside_a_sub_flow_ends_the_call() -> None:
    out = connect(make_config([{"id": "r", "type": "return"}, *ends("never")]))[1]
    assert out[-1] == HangUp("flow_end")


def test_endless_recursion_hangs_up_call_depth() -> None:
    flows = {"main": {"steps": [{"id": "again", "type": "call", "flow": "main"}, *ends("never")]}}
    session, out = connect(make_config(flows=flows))
    assert out[-1] == HangUp("call_depth")
    assert session.path.count("again:called") == MAX_DEPTH + 1


def hotkey_flow(first: dict[str, Any]) -> dict[str, Any]:
    return {"main": {"hotkeys": {"0": "agent"},
                     "steps": [first, *ends("next_step", "agent")]}}


def test_hotkey_stops_a_prompt_and_jumps() -> None:
    session, out = connect(make_config(flows=hotkey_flow(
        {"id": "info", "type": "play", "prompts": ["welcome"], "next": "next_step"})))
    play = out[-1]
    assert isinstance(play, Play)
    assert session.handle(DigitReceived("0"), T0 + 1) == [StopPlayback(play.play_id), HangUp("agent")]
    assert session.path == ("info:hotkey_0", "agent:hangup")


def test_a_menu_option_wins_over_the_hotkey_and_other_digits_hit_it() -> None:
    menu = {"id": "m", "type": "menu", "prompts": ["menu"], "options": {"0": "next_step"}, "on_exhausted": "agent"}
    session, _ = connect(make_config(flows=hotkey_flow(menu)))
    assert session.handle(DigitReceived("0"), T0 + 1)[-1] == HangUp("next_step")
    menu["options"] = {"1": "next_step"}
    session, _ = connect(make_config(flows=hotkey_flow(menu)))
    assert session.handle(DigitReceived("0"), T0 + 1)[-1] == HangUp("agent")


def test_gather_keeps_its_digits() -> None:
    gather = {"id": "g", "type": "gather", "prompts": ["p"], "variable": "acct", "next": "next_step",
              "on_exhausted": "agent"}
    session, _ = connect(make_config(flows=hotkey_flow(gather)))
    out = enter_account(session, "105", T0 + 1)
    assert out[-1] == HangUp("next_step") and session.variables["acct"] == "105"


def test_a_hotkey_digit_typed_ahead_is_part_of_the_entry() -> None:
    # The caller types an account number through a prompt that keeps type-ahead: its "0" is a digit of the
    # account, not "0 for a person" (seen at load: a slow CRM wait took the second digit as the hotkey).
    gather = {"id": "g", "type": "gather", "prompts": ["p"], "variable": "acct", "next": "next_step",
              "on_exhausted": "agent"}
    flows = hotkey_flow({"id": "info", "type": "play", "prompts": ["welcome"], "interruptible": False})
    flows["main"]["steps"].insert(1, gather)
    session, _ = connect(make_config(flows=flows))
    for d in "10":
        assert session.handle(DigitReceived(d), T0 + 1) == []
    assert session.handle(PlaybackFinished(1), T0 + 2) == []  # the gather takes "10" and waits for more
    out = enter_account(session, "5", T0 + 3)
    assert out[-1] == HangUp("next_step") and session.variables["acct"] == "105"
    session, _ = connect(make_config(flows=flows))  # with nothing typed ahead, 0 is the hotkey
    assert session.handle(DigitReceived("0"), T0 + 1) == [StopPlayback(1), HangUp("agent")]


def test_hotkeys_are_per_flow() -> None:
    flows = {"main": {"hotkeys": {"0": "agent"},
                      "steps": [{"id": "c", "type": "call", "flow": "sub"}, *ends("next_step", "agent")]},
             "sub": {"hotkeys": {"9": "bye"},
                     "steps": [{"id": "p", "type": "play", "prompts": ["welcome"]}, *ends("bye")]}}
    session, _ = connect(make_config(flows=flows))
    session.handle(DigitReceived("0"), T0 + 1)  # not a hotkey in sub: barge-in, then falls to bye
    assert session.path[-2:] == ("sub/p:barged_in", "sub/bye:hangup")
    session, _ = connect(make_config(flows=flows))
    assert session.handle(DigitReceived("9"), T0 + 1)[-1] == HangUp("bye")


def outage_flow() -> dict[str, Any]:
    return {"main": {"steps": [
        {"id": "check", "type": "branch", "cases": [{"when": {"switch": "outage"}, "goto": "sorry"}],
         "default": "normal"}, *ends("sorry", "normal")]}}


def test_switch_is_read_from_the_controllers_view_per_call() -> None:
    config = make_config(flows=outage_flow(), switches={"outage": False})
    live = {"outage": False}
    first = FlowSession(config, "main", call(), T0, switches=live)
    live["outage"] = True      # the operator flips it: the next branch sees it
    second = FlowSession(config, "main", call(), T0, switches=live)
    for session in (first, second):
        session.start(T0)
    from ivr.flow.events import CallConnected
    assert first.handle(CallConnected(), T0)[-1] == HangUp("sorry")
    live["outage"] = False
    assert second.handle(CallConnected(), T0)[-1] == HangUp("normal")


def test_switch_defaults_and_off_condition() -> None:
    flows = outage_flow()
    assert connect(make_config(flows=flows, switches={"outage": True}))[1][-1] == HangUp("sorry")
    flows["main"]["steps"][0]["cases"][0]["when"] = {"switch": "outage", "on": False}
    assert connect(make_config(flows=flows, switches={"outage": True}))[1][-1] == HangUp("normal")


@pytest.mark.parametrize("when", [{"switch": "outage", "var": "x"}, {"switch": "outage", "equals": "1"},
                                  {"gt": 1}, {"var": "x", "gt": 1, "lt": 3}])
def test_malformed_conditions_are_refused(when: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="condition"):
        make_config(flows={"main": {"steps": [
            {"id": "b", "type": "branch", "cases": [{"when": when, "goto": "x"}], "default": "x"}, *ends("x")]}})
