"""Play, menu and gather: barge-in, type-ahead, retries, timers, garbage digits."""

from __future__ import annotations

from typing import Any

from flowkit import T0, call, connect, make_config
from recordkit import hung_up

from ivr.flow.commands import HangUp, Play, StopPlayback, Transfer
from ivr.flow.events import CallConnected, DigitReceived, PlaybackFinished
from ivr.flow.session import FlowSession

END = {"id": "end", "type": "hangup", "reason": "done"}


def menu(**extra: Any) -> dict[str, Any]:
    return {"id": "menu", "type": "menu", "prompts": ["main"], "options": {"1": "one", "2": "two"},
            "timeout": 5, "attempts": 3, "invalid_prompts": ["invalid"], "no_input_prompts": ["no_input"],
            "on_exhausted": "bye", "variable": "choice"} | extra


def gather(**extra: Any) -> dict[str, Any]:
    return {"id": "ask", "type": "gather", "prompts": ["enter"], "variable": "acct", "min_digits": 2,
            "max_digits": 4, "terminator": "#", "first_digit_timeout": 6, "inter_digit_timeout": 3,
            "attempts": 2, "invalid_prompts": ["invalid"], "no_input_prompts": ["no_input"],
            "on_exhausted": "bye"} | extra


MENU_FLOW = [menu(), {"id": "one", "type": "hangup", "reason": "one"}, {"id": "two", "type": "hangup",
             "reason": "two"}, {"id": "bye", "type": "hangup", "prompts": ["goodbye"], "reason": "bye"}]
GATHER_FLOW = [gather(), {"id": "ok", "type": "hangup", "reason": "got"}, {"id": "bye", "type": "hangup",
               "reason": "bye"}]


def digit(d: str, method: str = "rfc4733") -> DigitReceived:
    return DigitReceived(d, method)  # type: ignore[arg-type]


# --- play -------------------------------------------------------------------------------------------------

def test_play_then_next_step_and_flow_end() -> None:
    config = make_config([{"id": "hello", "type": "play", "prompts": ["a", "b"]}])
    session, commands = connect(config)
    assert commands == [Play(1, ("a", "b"), interruptible=True)]
    assert session.handle(PlaybackFinished(1), T0 + 3) == [HangUp("flow_end")]
    assert session.record().as_dict()["path"] == ["hello:played"]
    assert session.record().as_dict()["outcome"] == hung_up("flow_end")


def test_barge_in_stops_prompt_and_digit_reaches_menu() -> None:
    config = make_config([{"id": "hello", "type": "play", "prompts": ["welcome"]}, *MENU_FLOW])
    session, _ = connect(config)
    commands = session.handle(digit("2"), T0 + 1)
    assert commands == [StopPlayback(1), HangUp("two")]
    assert session.record().as_dict()["path"] == ["hello:barged_in", "menu:2", "two:hangup"]
    assert session.record().as_dict()["variables"] == {"choice": "2"}


def test_non_interruptible_prompt_keeps_type_ahead_for_menu() -> None:
    config = make_config([{"id": "hello", "type": "play", "prompts": ["welcome"], "interruptible": False},
                          *MENU_FLOW])
    session, _ = connect(config)
    assert session.handle(digit("1"), T0 + 1) == []
    assert session.handle(PlaybackFinished(1), T0 + 2) == [HangUp("one")]  # menu prompts skipped


def test_digits_before_connected_are_type_ahead() -> None:
    config = make_config([{"id": "hello", "type": "play", "prompts": ["welcome"], "interruptible": False},
                          *GATHER_FLOW])
    session = FlowSession(config, "main", call(), T0)
    session.start(T0)
    for d in "12#":
        assert session.handle(digit(d), T0) == []
    assert session.handle(CallConnected(), T0 + 0.1) == [Play(1, ("welcome",), interruptible=False)]
    assert session.handle(PlaybackFinished(1), T0 + 2) == [HangUp("got")]
    assert session.record().as_dict()["variables"] == {"acct": "12"}
    assert session.record().as_dict()["inputs"] == [{"step": "ask", "digits": "12#", "masked": False}]


def test_interruptible_play_skipped_when_digits_are_waiting() -> None:
    config = make_config([{"id": "hello", "type": "play", "prompts": ["welcome"]}, *MENU_FLOW])
    session = FlowSession(config, "main", call(), T0)
    session.start(T0)
    session.handle(digit("1"), T0)
    assert session.handle(CallConnected(), T0) == [HangUp("one")]
    assert session.record().as_dict()["path"][0] == "hello:skipped"


def test_garbage_and_disallowed_digits_are_ignored() -> None:
    config = make_config(MENU_FLOW, trunks=[{"name": "t1", "sources": ["127.0.0.1"], "dtmf": "rfc4733"}])
    session, _ = connect(config)
    for bad in (digit("x"), digit("12"), digit(""), digit("E"), digit("1", "info")):
        assert session.handle(bad, T0 + 1) == []
    assert session.record().inputs == ()
    assert session.handle(digit("1", "rfc4733"), T0 + 1) == [StopPlayback(1), HangUp("one")]


def test_stale_playback_finished_is_ignored() -> None:
    config = make_config(MENU_FLOW)
    session, _ = connect(config)
    assert session.handle(PlaybackFinished(7), T0 + 1) == []
    assert session.handle(PlaybackFinished(0), T0 + 1) == []
    assert session.deadline == T0 + config.sip.max_call_duration  # still playing the menu


# --- menu -------------------------------------------------------------------------------------------------

def test_menu_option_after_prompts() -> None:
    session, commands = connect(make_config(MENU_FLOW))
    assert commands == [Play(1, ("main",))]
    assert session.handle(PlaybackFinished(1), T0 + 2) == []
    assert session.awaiting_digits and session.deadline == T0 + 7
    assert session.handle(digit("1"), T0 + 3) == [HangUp("one")]


def test_menu_invalid_then_no_input_then_exhausted() -> None:
    session, _ = connect(make_config(MENU_FLOW))
    session.handle(PlaybackFinished(1), T0 + 2)
    assert session.handle(digit("9"), T0 + 3) == [Play(2, ("invalid",))]
    assert session.handle(PlaybackFinished(2), T0 + 4) == [Play(3, ("main",))]
    assert session.handle(PlaybackFinished(3), T0 + 5) == []
    assert session.handle_timer(T0 + 9.9) == []            # early: no-op
    assert session.handle_timer(T0 + 10) == [Play(4, ("no_input",))]
    assert session.handle(PlaybackFinished(4), T0 + 11) == [Play(5, ("main",))]
    # a digit during the prompt is taken at once (barge-in) and is invalid: third failure
    assert session.handle(digit("*"), T0 + 11.5) == [StopPlayback(5), Play(6, ("goodbye",), interruptible=False)]
    assert session.handle(PlaybackFinished(6), T0 + 13) == [HangUp("bye")]
    assert session.record().as_dict()["path"] == ["menu:invalid", "menu:no_input", "menu:invalid", "menu:exhausted",
                                        "bye:hangup"]


def test_digit_during_retry_prompt_starts_next_attempt() -> None:
    session, _ = connect(make_config(MENU_FLOW))
    session.handle(digit("9"), T0 + 1)
    assert session.handle(digit("2"), T0 + 1.5) == [StopPlayback(2), HangUp("two")]


def test_menu_without_retry_prompts_replays_menu() -> None:
    session, _ = connect(make_config([menu(invalid_prompts=[], no_input_prompts=[]), *MENU_FLOW[1:]]))
    session.handle(PlaybackFinished(1), T0 + 2)
    assert session.handle_timer(T0 + 7) == [Play(2, ("main",))]


# --- gather -----------------------------------------------------------------------------------------------

def test_gather_terminator() -> None:
    session, commands = connect(make_config(GATHER_FLOW))
    assert commands == [Play(1, ("enter",))]
    assert session.handle(digit("4"), T0 + 1) == [StopPlayback(1)]   # first digit stops the prompt
    assert session.deadline == T0 + 4
    assert session.handle(digit("2"), T0 + 2) == []
    assert session.handle(digit("#"), T0 + 3) == [HangUp("got")]
    assert session.record().as_dict()["variables"] == {"acct": "42"}
    assert session.record().as_dict()["path"] == ["ask:ok", "ok:hangup"]


def test_gather_max_digits_leaves_rest_in_type_ahead() -> None:
    flow = [gather(next="again"), {"id": "again", "type": "gather", "prompts": ["p"], "variable": "more",
            "on_exhausted": "bye", "min_digits": 1}, *GATHER_FLOW[1:]]
    session, _ = connect(make_config(flow))
    session.handle(PlaybackFinished(1), T0 + 2)
    for d in "12345":
        session.handle(digit(d), T0 + 3)
    assert session.record().as_dict()["variables"] == {"acct": "1234"}
    assert session.current_step == "again" and session.awaiting_digits   # '5' was taken, no prompts
    assert session.handle_timer(T0 + 6) == [HangUp("got")]
    assert session.record().as_dict()["variables"] == {"acct": "1234", "more": "5"}


def test_gather_inter_digit_timeout_ends_input() -> None:
    session, _ = connect(make_config(GATHER_FLOW))
    session.handle(PlaybackFinished(1), T0 + 2)
    assert session.deadline == T0 + 8                    # first_digit_timeout
    session.handle(digit("7"), T0 + 3)
    session.handle(digit("7"), T0 + 4)
    assert session.deadline == T0 + 7
    assert session.handle_timer(T0 + 7) == [HangUp("got")]


def test_gather_min_digits_and_pattern_invalid() -> None:
    session, _ = connect(make_config([gather(pattern="9[0-9]+"), *GATHER_FLOW[1:]]))
    session.handle(digit("1"), T0 + 1)
    assert session.handle(digit("#"), T0 + 2) == [Play(2, ("invalid",))]    # too short
    session.handle(PlaybackFinished(2), T0 + 3)
    session.handle(PlaybackFinished(3), T0 + 4)
    for d in "123#":
        commands = session.handle(digit(d), T0 + 5)
    assert commands == [HangUp("bye")]                                        # pattern fails, exhausted
    assert session.record().as_dict()["path"] == ["ask:invalid", "ask:invalid", "ask:exhausted", "bye:hangup"]
    assert "acct" not in session.record().as_dict()["variables"]  # type: ignore[operator]


def test_gather_pattern_fullmatch_ok() -> None:
    session, _ = connect(make_config([gather(pattern="9[0-9]+"), *GATHER_FLOW[1:]]))
    for d in "987#":
        commands = session.handle(digit(d), T0 + 1)
    assert commands == [HangUp("got")]


def test_gather_no_input_retries() -> None:
    session, _ = connect(make_config(GATHER_FLOW))
    session.handle(PlaybackFinished(1), T0 + 2)
    assert session.handle_timer(T0 + 8) == [Play(2, ("no_input",))]
    session.handle(PlaybackFinished(2), T0 + 9)
    session.handle(PlaybackFinished(3), T0 + 10)
    assert session.handle_timer(T0 + 16) == [HangUp("bye")]
    assert session.record().as_dict()["path"] == ["ask:no_input", "ask:no_input", "ask:exhausted", "bye:hangup"]


def test_menu_to_transfer_stops_nothing_when_nothing_plays() -> None:
    flow = [menu(options={"1": "xfer"}), {"id": "xfer", "type": "transfer", "queue": "default"},
            {"id": "bye", "type": "hangup"}]
    session, _ = connect(make_config(flow))
    assert session.handle(digit("1"), T0 + 1) == [StopPlayback(1), Transfer("default", "sip:default@pbx.test")]
