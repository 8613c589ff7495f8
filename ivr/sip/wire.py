"""The controller <-> worker protocol: one JSON object per line, `{"t": type, "call": id, ...fields}`.

Messages are the engine's own event and command dataclasses; `call` names the call on that worker
("" for worker-level messages). JSON arrays decode to tuples, so tuple fields round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ivr.flow import commands, events

Message = events.WorkerEvent | commands.WorkerCommand

_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        events.CallOffered,
        events.CallConnected,
        events.DigitReceived,
        events.PlaybackFinished,
        events.TransferProgress,
        events.BridgeProgress,
        events.BridgeEnded,
        events.CallEnded,
        events.WorkerReady,
        events.RecordingFinished,
        commands.Answer,
        commands.Reject,
        commands.Play,
        commands.StopPlayback,
        commands.Transfer,
        commands.Bridge,
        commands.HangUp,
        commands.StartRecording,
        commands.StopRecording,
        commands.PlayRecording,
    )
}


_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _TYPES.values()
}
"""Each message type's field names, looked up once (`dataclasses.fields` per message was a third of encode)."""

_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""One encoder: `json.dumps` with any non-default argument builds a new JSONEncoder per call."""
_DECODER = json.JSONDecoder()
"""Decoding the line's UTF-8 ourselves skips `json.loads`' encoding detection on bytes."""


class WireError(ValueError):
    """A line that is not a valid protocol message."""


def encode(call: str, message: Message) -> bytes:
    obj = {"t": type(message).__name__, "call": call}
    for name in _FIELDS[type(message)]:
        obj[name] = getattr(message, name)
    return (_ENCODER.encode(obj) + "\n").encode()


def _tuples(value: list[Any]) -> tuple[Any, ...]:
    return tuple(_tuples(v) if type(v) is list else v for v in value)


def decode(line: bytes) -> tuple[str, Message]:
    try:
        obj = _DECODER.decode(line.decode())
        cls = _TYPES[obj.pop("t")]
        call = str(obj.pop("call"))
        message: Message = cls(**{k: _tuples(v) if type(v) is list else v for k, v in obj.items()})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WireError(f"bad protocol line {line[:200]!r}: {exc}") from exc
    return call, message
