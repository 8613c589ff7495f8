"""The controller <-> worker wire: every message type round-trips exactly; a bad line is a WireError."""

from __future__ import annotations

import json

import pytest

from ivr.flow import commands, events
from ivr.sip import wire

MESSAGES: list[wire.Message] = [
    events.CallOffered(source="127.0.0.1:5060", caller="+15553000005", dialed="100", sip_call_id="a@b",
                       headers=(("X-IVR-Trunk", "demo"), ("X-Other", "é ✓"))),
    events.CallConnected(),
    events.DigitReceived(digit="7", method="info", received_at=1764590000.25),
    events.PlaybackFinished(play_id=3),
    events.TransferProgress(code=486, final=True, reason="Busy Here"),
    events.CallEnded(reason="caller_hangup", code=200),
    events.WorkerReady(worker="w000", pid=1234, sip_port=25100, max_calls=4, extra={"media": "thread"}),
    commands.Answer(),
    commands.Reject(code=503, reason="Service Unavailable", retry_after=7),
    commands.Play(play_id=2, prompts=("welcome", "menu"), interruptible=False, lang="de"),
    commands.Transfer(queue="gold", uri="sip:gold@127.0.0.1:5070", headers=(("X-Account", "42"),)),
    commands.HangUp(reason="done"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_exactly(message: wire.Message) -> None:
    line = wire.encode("w000-1", message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["t"] == type(message).__name__
    assert wire.decode(line) == ("w000-1", message)


@pytest.mark.parametrize("line", [b"not json\n", b'{"t":"Nope","call":"x"}\n', b'{"call":"x"}\n',
                                  b'{"t":"PlaybackFinished","call":"x","bogus":1}\n', b'\xff\xfe{}\n', b"[]\n"])
def test_a_bad_line_is_a_wire_error(line: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(line)
