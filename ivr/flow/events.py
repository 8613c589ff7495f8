"""Events: what happened to a call, in the past tense. Fed to `FlowSession.handle(event, now)`.

The call-level events (digits, playback, transfer progress, the end of the call) are also what a SIP
worker sends to the controller; `ivr/sip/wire.py` serialises them with a type tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DtmfMethod = Literal["rfc4733", "info"]


@dataclass(frozen=True, slots=True)
class CallOffered:
    """A new INVITE reached a worker; the controller decides whether and how to answer it."""

    source: str
    """Transport source address of the INVITE, "ip:port" (the front's address behind Kamailio)."""
    caller: str
    """User part of the From URI (the caller's number), as sent by the trunk."""
    dialed: str
    """User part of the Request-URI (the dialed number)."""
    sip_call_id: str
    """The SIP Call-ID header, for correlation with the trunk's records."""
    headers: tuple[tuple[str, str], ...] = ()
    """Selected headers of the INVITE (the front's X-IVR-Trunk among them)."""


@dataclass(frozen=True, slots=True)
class CallConnected:
    """The call reached CONFIRMED (ACK received): media flows."""


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """One DTMF digit from the caller (0-9, *, #, A-D), by RFC 4733 telephone-event or SIP INFO."""

    digit: str
    method: DtmfMethod = "rfc4733"
    received_at: float = 0.0
    """When the worker received it (epoch seconds); 0 when unknown. Observability only (the digit delay
    metric); the engine ignores it."""


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """Every prompt of `Play(play_id)` was played to its end (not sent when stopped)."""

    play_id: int


@dataclass(frozen=True, slots=True)
class FetchCompleted:
    """An HTTP request of a fetch step got a response inside its budget."""

    request_id: int
    status: int
    body: Any
    """The decoded JSON body."""
    elapsed_ms: float = 0.0
    cached: bool = False


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """An HTTP request of a fetch step failed: timeout, refused, 4xx/5xx, invalid JSON, breaker open."""

    request_id: int
    reason: str
    """A short machine-readable reason, e.g. "timeout", "http_503", "invalid_json", "circuit_open"."""
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """The REFER's fate: its own final response when rejected, else each NOTIFY's sipfrag status."""

    code: int
    final: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BridgeProgress:
    """The bridged leg's INVITE: 1xx (ringing), a final 2xx (answered and bridged) or a final failure
    (486 busy, 408 ring timeout, 503 no free slot on the worker, ...)."""

    code: int
    final: bool
    reason: str = ""
    sip_call_id: str = ""
    """The outgoing leg's own SIP Call-ID."""


@dataclass(frozen=True, slots=True)
class BridgeEnded:
    """The answered bridged leg is over; the worker ends the caller's leg too."""

    reason: str
    """"agent_hangup" (the target sent BYE), "caller_hangup", "failed", ..."""
    code: int = 0


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over (caller hung up, BYE after a transfer, worker lost). Nothing more is sent."""

    reason: str
    """Why: "caller_hangup", "worker_lost", "local_hangup", "rejected", ..."""
    code: int = 0
    """The SIP status of the last response when meaningful."""


@dataclass(frozen=True, slots=True)
class WorkerReady:
    """A SIP worker is up and listening (worker -> controller, once per connection)."""

    worker: str
    pid: int
    sip_port: int
    max_calls: int
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    """A recording ended: "stopped" (StopRecording), "silence", "max" (length), "failed" (no file)."""

    recording_id: int
    reason: str
    file: str
    """The WAV's file name in the recordings directory ("" when failed)."""
    duration_s: float = 0.0
    """Length of the file."""
    voiced_s: float = 0.0
    """Length up to the end of the last non-silent frame (0: all silence)."""


FlowEvent = (
    CallConnected | DigitReceived | PlaybackFinished | FetchCompleted | FetchFailed | TransferProgress
    | BridgeProgress | BridgeEnded | CallEnded
    | RecordingFinished
)
"""Events a `FlowSession` handles."""

WorkerEvent = (
    CallOffered | CallConnected | DigitReceived | PlaybackFinished | TransferProgress | BridgeProgress
    | BridgeEnded | CallEnded | WorkerReady
    | RecordingFinished
)
"""Events a SIP worker sends."""
