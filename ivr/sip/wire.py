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


class WireError(ValueError):
    """A line that is not a valid protocol message."""


def encode(call: str, message: Message) -> bytes:
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    return json.dumps({"t": type(message).__name__, "call": call, **fields}, separators=(",", ":")).encode() + b"\n"


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def decode(line: bytes) -> tuple[str, Message]:
    try:
        obj = json.loads(line)
        cls = _TYPES[obj.pop("t")]
        call = str(obj.pop("call"))
        message: Message = cls(**{k: _tuples(v) for k, v in obj.items()})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WireError(f"bad protocol line {line[:200]!r}: {exc}") from exc
    return call, message
