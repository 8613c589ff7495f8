"""Secrets in the record: a sensitive gather, secret variable names, variables set from a secret, type-ahead."""

from __future__ import annotations

import json
from typing import Any

from flowkit import T0, call, connect, make_config

from ivr.flow.commands import Transfer
from ivr.flow.events import CallConnected, DigitReceived, PlaybackFinished, TransferProgress
from ivr.flow.session import FlowSession
from ivr.records.model import MASK, DigitInput, record_from_dict

PIN = "4711"


def gather(**extra: Any) -> dict[str, Any]:
    return {"id": "ask_pin", "type": "gather", "prompts": ["enter"], "variable": "code", "min_digits": 4,
            "max_digits": 4, "on_exhausted": "bye", "sensitive": True} | extra


FLOW = [
    {"id": "menu", "type": "menu", "prompts": ["main"], "options": {"1": "ask_pin"}, "on_exhausted": "bye",
     "variable": "choice"},
    gather(),
    {"id": "copy", "type": "set", "values": {"echo": "you typed {{code}}", "plain": "{{choice}}"}},
    {"id": "bye", "type": "hangup", "reason": "done"},
]


def digits(session: FlowSession, keys: str, now: float) -> None:
    for key in keys:
        session.handle(DigitReceived(key, "info"), now)


def test_sensitive_gather_is_masked_everywhere_in_the_record() -> None:
    session, _ = connect(make_config(FLOW))
    digits(session, "1" + PIN, T0 + 1)
    record = session.record()
    assert record.inputs == (DigitInput("menu", "1"), DigitInput("ask_pin", MASK, True))
    assert dict(record.variables) == {"choice": "1", "code": MASK, "echo": MASK, "plain": "1"}
    assert session.variables["code"] == PIN  # the flow itself still has the value
    assert PIN not in json.dumps(record.as_dict())


def test_secret_names_mask_without_the_flag() -> None:
    flow = [gather(sensitive=False, variable="account_pin"), FLOW[-1]]
    session, _ = connect(make_config(flow))
    digits(session, PIN, T0 + 1)
    assert PIN not in json.dumps(session.record().as_dict())
    assert session.record().inputs == (DigitInput("ask_pin", MASK, True),)


def test_plain_gather_keeps_its_digits() -> None:
    session, _ = connect(make_config([gather(sensitive=False), FLOW[-1]]))
    digits(session, PIN, T0 + 1)
    assert session.record().inputs == (DigitInput("ask_pin", PIN),)


def test_unused_type_ahead_is_masked() -> None:
    flow = [{"id": "hello", "type": "play", "prompts": ["welcome"], "interruptible": False}, *FLOW]
    session = FlowSession(make_config(flow), "main", call(), T0)
    session.start(T0)
    session.handle(CallConnected(), T0)
    digits(session, PIN, T0 + 0.5)  # typed during a prompt that cannot be interrupted, then the caller leaves
    assert session.record().inputs == (DigitInput("", MASK, True),)
    session.handle(PlaybackFinished(1), T0 + 2)  # "4" is not a menu option: the rest stays unused
    assert PIN not in json.dumps(session.record().as_dict())


def test_record_round_trips_through_json() -> None:
    session, _ = connect(make_config(FLOW))
    digits(session, "1" + PIN, T0 + 1)
    record = session.record()
    assert record_from_dict(json.loads(json.dumps(record.as_dict()))) == record


def test_a_record_from_a_newer_version_reads_back() -> None:
    session, _ = connect(make_config(FLOW))
    data = session.record().as_dict()
    newer = {**data, "console_hint": 1, "outcome": {**data["outcome"], "target": "agent-7"}}  # type: ignore[dict-item]
    assert record_from_dict(newer) == session.record()


def test_a_menu_into_a_secret_variable_keeps_the_digit_out_of_the_path() -> None:
    flow = [{"id": "m", "type": "menu", "prompts": ["main"], "options": {"7": "bye"}, "on_exhausted": "bye",
             "variable": "pin_digit"}, FLOW[-1]]
    session, _ = connect(make_config(flow))
    digits(session, "7", T0 + 1)
    assert session.path == ("m:***", "bye:hangup")
    assert "7" not in json.dumps(session.record().as_dict()["inputs"])


def test_a_secret_in_a_transfer_uri_reaches_the_worker_but_not_the_record() -> None:
    queues = {"bank": {"uri": "sip:bank@pbx.test", "uri_params": {"code": "{{code}}", "who": "{{caller}}"}}}
    flow = [gather(), {"id": "xfer", "type": "transfer", "queue": "bank"}]
    session, _ = connect(make_config(flow, queues=queues))
    digits(session, PIN[:-1], T0 + 1)
    [*_, command] = session.handle(DigitReceived(PIN[-1], "info"), T0 + 1)
    assert isinstance(command, Transfer) and f"code={PIN}" in command.uri
    session.handle(TransferProgress(200, True), T0 + 2)
    data = json.dumps(session.record().as_dict())
    assert PIN not in data and "code=%2A%2A%2A" in data
