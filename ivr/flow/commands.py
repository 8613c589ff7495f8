"""Commands: what the engine wants done, in the imperative. Returned by `FlowSession` methods.

`Fetch` is carried out by the controller's HTTP client; every other command is sent to the call's
SIP worker (`ivr/sip/wire.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the call (200 OK with SDP)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the INVITE with a final status; `retry_after` adds a Retry-After header (seconds)."""

    code: int
    reason: str = ""
    retry_after: int = 0


@dataclass(frozen=True, slots=True)
class Play:
    """Play prompts (names of WAV files in the prompt directory) one after the other."""

    play_id: int
    prompts: tuple[str, ...]
    interruptible: bool = True
    """A digit stops the playback (barge-in)."""
    loop: bool = False
    """Start again at the end until stopped (hold music, "one moment" filler); no PlaybackFinished."""
    lang: str = ""
    """The caller's language: a prompt is `<prompts>/<lang>/<name>.wav` when that file exists, else the flat one."""
    files: tuple[str, ...] = ()
    """Absolute WAV paths played after the prompts (speech rendered by the controller's TTS cache)."""


@dataclass(frozen=True, slots=True)
class Speak:
    """Speak `parts` in order: ("prompt", name) plays a prompt, ("say", text) text to speech in `lang`'s voice,
    ("say:es", text) in another language's voice.
    The controller renders the speech (cache, budget, fallback) and sends the worker a `Play` with the same id."""

    play_id: int
    parts: tuple[tuple[str, str], ...]
    lang: str
    interruptible: bool = True


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """Stop the playback `play_id` if it is still playing; no PlaybackFinished follows."""

    play_id: int


@dataclass(frozen=True, slots=True)
class Fetch:
    """Make an HTTP request to a configured endpoint inside a latency budget."""

    request_id: int
    endpoint: str
    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    """JSON body, or None for no body."""
    budget_s: float = 2.0
    """One deadline for connect, retries and body."""
    log_path: str | None = None
    """The path as logs may show it: secret variables masked (None: `path` holds none)."""

    @property
    def shown_path(self) -> str:
        """What a log line may carry of the path (never the query)."""
        return (self.log_path if self.log_path is not None else self.path).split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class Transfer:
    """Hand the call to a queue target with a SIP REFER. `uri` is the Refer-To URI: one of the queue's targets, or
    a step's variable target inside the queue's allow-list, with the caller's headers embedded (`?X-...=...`)
    when the queue's header_mode says so; the worker sends it as a name-addr (`<uri>`)."""

    queue: str
    uri: str
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers on the REFER."""


@dataclass(frozen=True, slots=True)
class Bridge:
    """Call the queue's target from the worker and bridge it to this call (trunks that refuse REFER).

    The caller hears ringback until the target answers; `BridgeProgress` events report the outgoing leg's
    INVITE and `BridgeEnded` its end. Either side hanging up ends both legs (the worker does it)."""

    queue: str
    uri: str
    """Request-URI of the outgoing leg: always a configured queue's target."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers on the outgoing INVITE (the queue's caller data)."""
    ring_timeout: float = 20.0
    """Seconds the target may ring before the leg is cancelled and reported as 408 (no answer)."""


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call (BYE, or a final response if it was never answered)."""

    reason: str
    code: int = 200


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record the caller's audio (8 kHz WAV) until StopRecording, `max_s`, or `silence_s` of silence; the worker
    answers with RecordingFinished."""

    recording_id: int
    max_s: float
    silence_s: float


@dataclass(frozen=True, slots=True)
class StopRecording:
    """Stop recording `recording_id` (the finish key was pressed); RecordingFinished follows."""

    recording_id: int


@dataclass(frozen=True, slots=True)
class PlayRecording:
    """Play a recording of this call back to the caller (review); PlaybackFinished(play_id) at its end."""

    play_id: int
    recording_id: int


FlowCommand = (Answer | Reject | Play | Speak | StopPlayback | Fetch | Transfer | Bridge | HangUp
               | StartRecording | StopRecording | PlayRecording)
WorkerCommand = (Answer | Reject | Play | StopPlayback | Transfer | Bridge | HangUp
                 | StartRecording | StopRecording | PlayRecording)
"""Commands a SIP worker executes."""
