"""The call record: one frozen object per call, built by `FlowSession`, rendered unchanged everywhere.

The log line `call.ended`, the database row, the webhook body and the console all carry `CallRecord.as_dict()`
(JSON-ready, keys in a fixed order). Secrets are masked when the record is built (`MASK`), so no renderer has
to know what is secret. Pure data: no I/O, no clock (the flow engine builds it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Literal, TypeVar

T = TypeVar("T")

MASK = "***"
"""What a secret value is replaced by (fixed length: not even the number of digits leaves the process)."""

SECRET_NAME = re.compile(r"(^|_)(pin|password|passcode|passwd|secret|token|cvv)(_|$)", re.IGNORECASE)
"""A variable whose name says it holds a secret is always masked."""

SCHEMA_VERSION = 1
"""Bumped when a field is renamed or removed (adding a field with a default does not bump it)."""


def is_secret_name(name: str) -> bool:
    return SECRET_NAME.search(name) is not None


@dataclass(frozen=True, slots=True)
class DigitInput:
    """Digits one menu or gather step took (in order, terminator included); `MASK` for a sensitive gather."""

    step: str
    digits: str
    masked: bool = False


@dataclass(frozen=True, slots=True)
class FetchEntry:
    """One HTTP lookup of the call."""

    step: str
    endpoint: str
    outcome: str
    """"ok", or the failure reason (timeout, http_404, breaker_open, ...), or "abandoned"."""
    reason: str | None
    status: int | None
    elapsed_ms: float
    cached: bool


@dataclass(frozen=True, slots=True)
class TransferAttempt:
    """One transfer step: the REFER sent to a queue and how it ended."""

    step: str
    queue: str
    uri: str
    result: str
    """"pending", "ok", rejected_<code>, no_notify, unknown_queue, refer_not_supported, abandoned, ..."""
    code: int | None = None
    progress: tuple[int, ...] = ()
    """Status codes of the NOTIFY sipfrags, in order."""
    sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class Leg:
    """A second call leg the server placed itself (bridged transfers). Empty for REFER transfers."""

    target: str
    sip_call_id: str = ""
    answered_at: float | None = None
    duration_ms: float | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the flow ended: handed to a queue, hung up by the flow (reason), or by the caller while in the IVR
    ("abandoned", reason: the end reason). "none": the call has not ended yet."""

    kind: Literal["transfer", "hangup", "abandoned", "none"]
    reason: str
    queue: str | None = None
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class Timings:
    """Spans of the call in milliseconds; None when the call never got there."""

    answer_ms: float | None = None
    to_transfer_ms: float | None = None
    transfer_ms: float | None = None
    to_transferred_ms: float | None = None
    to_hangup_ms: float | None = None
    duration_ms: float | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything that happened to one call. Built once, at its end; never patched."""

    uid: str
    """Unique across restarts and nodes (the store's key); `call_id` is the worker's, reused after a restart."""
    call_id: str
    sip_call_id: str
    worker: str
    trunk: str
    caller: str
    dialed: str
    flow: str
    started_at: float
    """Epoch seconds when the call was offered to the flow."""
    ended_at: float | None
    end_reason: str | None
    outcome: Outcome
    path: tuple[str, ...] = ()
    inputs: tuple[DigitInput, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    """Flow variables (built-ins excluded), secrets masked, in the order they were first set."""
    fetches: tuple[FetchEntry, ...] = ()
    transfers: tuple[TransferAttempt, ...] = ()
    legs: tuple[Leg, ...] = ()
    timings: Timings = field(default_factory=Timings)
    node: str = ""
    """Which server wrote it (several nodes may share a PostgreSQL store)."""
    version: int = SCHEMA_VERSION

    @property
    def queue(self) -> str | None:
        """The queue the call was handed to, else the last queue tried."""
        if self.outcome.queue is not None:
            return self.outcome.queue
        return self.transfers[-1].queue if self.transfers else None

    def as_dict(self) -> dict[str, object]:
        """The JSON form: what the log line, the database row and the webhook carry. Built field by field
        (`dataclasses.asdict` deep-copies every value: 0.2 ms a record, twice per call in the controller)."""
        data = _plain(self)
        assert isinstance(data, dict)
        data["variables"] = dict(self.variables)
        return data


_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain(value: object) -> object:
    """Dataclasses become dicts and tuples lists, recursively: the dict equals its own JSON round trip."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        names = _FIELDS.get(kind)
        if names is None:
            names = _FIELDS[kind] = tuple(f.name for f in fields(value))
        return {name: _plain(getattr(value, name)) for name in names}
    return value


def _build(kind: type[T], data: object) -> T:
    """`kind` from a dict, ignoring keys it does not know (a record written by a newer version)."""
    assert isinstance(data, dict)
    known = {f.name for f in fields(kind)}  # type: ignore[arg-type]
    return kind(**{key: value for key, value in data.items() if key in known})


def record_from_dict(data: dict[str, object]) -> CallRecord:
    """The inverse of `as_dict` (reading a stored row or a spool line back); unknown keys are ignored."""
    def many(key: str, kind: type[T]) -> tuple[T, ...]:
        items = data.get(key) or []
        assert isinstance(items, list)
        return tuple(_build(kind, item) for item in items)

    transfers = tuple(replace(t, progress=tuple(t.progress)) for t in many("transfers", TransferAttempt))
    variables = data.get("variables") or {}
    assert isinstance(variables, dict)
    return _build(CallRecord, {
        **data,
        "outcome": _build(Outcome, data["outcome"]),
        "path": tuple(data.get("path") or ()),  # type: ignore[arg-type]
        "inputs": many("inputs", DigitInput),
        "variables": tuple(variables.items()),
        "fetches": many("fetches", FetchEntry),
        "transfers": transfers,
        "legs": many("legs", Leg),
        "timings": _build(Timings, data.get("timings") or {}),
    })
