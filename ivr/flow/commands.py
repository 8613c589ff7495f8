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
class HangUp:
    """End the call (BYE, or a final response if it was never answered)."""

    reason: str
    code: int = 200


FlowCommand = Answer | Reject | Play | Speak | StopPlayback | Fetch | Transfer | HangUp
WorkerCommand = Answer | Reject | Play | StopPlayback | Transfer | HangUp
"""Commands a SIP worker executes."""
