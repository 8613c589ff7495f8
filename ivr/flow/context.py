"""What every step of one call shares: variables, the type-ahead buffer, id counters, the call's record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ivr.config.model import IvrConfig, Trunk
from ivr.config.speech import Prompt
from ivr.flow.commands import FlowCommand, Play, PlayRecording, Speak, StopPlayback
from ivr.flow.events import (
    BridgeEnded,
    BridgeProgress,
    FetchCompleted,
    FetchFailed,
    RecordingFinished,
    TransferProgress,
)
from ivr.flow.spoken import render_speech, text_for
from ivr.flow.targets import QueueCursors
from ivr.records.model import MASK, DigitInput, FetchEntry, Leg, Outcome, TransferAttempt, is_secret_name

BUILTINS = ("caller", "dialed", "trunk", "call_id")
"""Variables every call starts with."""

TYPE_AHEAD_MAX = 32
"""Digits kept for the next menu or gather; older ones are dropped beyond this."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """The call a session runs for (from `CallOffered` and the controller's trunk match)."""

    call_id: str
    caller: str
    dialed: str
    trunk: str
    sip_call_id: str = ""
    worker: str = ""
    uid: str = ""
    """Unique id of the call's record (the controller draws it)."""
    node: str = ""
    """The server (host name) running the call, for records shared by several nodes."""


@dataclass(frozen=True, slots=True)
class Next:
    """Leave the current step for `target` (None: the following step), or enter `flow` at its first step."""

    result: str
    """Short result for the call's path, e.g. "ok", "invalid", "rejected_603"."""
    target: str | None = None
    flow: str | None = None
    call: bool = False
    """Enter `flow` as a sub-flow: its `return` comes back to `target` (None: the step after the call)."""
    back: bool = False
    """Return from the current sub-flow (`target` and `flow` unused)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A `call` step waiting for its sub-flow: where to go on when it returns."""

    flow: str
    index: int
    """The call step's index in `flow`."""
    target: str | None
    """The call step's `next` (None: the following step)."""


@dataclass(frozen=True, slots=True)
class Done:
    """The flow is over: hang up with `reason` (after a successful transfer, reason "transferred")."""

    result: str
    reason: str
    transfer: tuple[str, str] | None = None
    """(queue, uri) when the call was handed to a queue."""


@dataclass(slots=True)
class Reply:
    """What a step did with an event: commands to emit, and where to go (None: stay in the step)."""

    commands: list[FlowCommand] = field(default_factory=list)
    then: Next | Done | None = None


@dataclass(slots=True)
class CallContext:
    """Mutable per-call state shared by the steps; only the session and its current step touch it."""

    config: IvrConfig
    call: CallInfo
    trunk: Trunk
    flow: str
    """The flow the current step belongs to."""
    call_flow: str
    """The flow the call started in."""
    variables: dict[str, str]
    type_ahead: list[str] = field(default_factory=list)
    playing: int | None = None
    """play_id of the playback that is still running (not finished, not stopped)."""
    path: list[str] = field(default_factory=list)
    inputs: list[DigitInput] = field(default_factory=list)
    """Digits per menu/gather step, as the steps took them; secrets are masked when the record is built."""
    secrets: set[str] = field(default_factory=set)
    """Variables holding a secret (a sensitive gather's, or set from one); masked with the secret names."""
    fetches: list[FetchEntry] = field(default_factory=list)
    transfers: list[TransferAttempt] = field(default_factory=list)
    legs: list[Leg] = field(default_factory=list)
    """Calls the server placed itself (bridged transfers), one per attempt."""
    marks: dict[str, float] = field(default_factory=dict)
    """Instants for the timings: started, connected, first_transfer, transferred, hangup, ended."""
    cursors: QueueCursors = field(default_factory=QueueCursors)
    said: list[str] = field(default_factory=list)
    """Texts spoken by say steps, in order (for `ivr simulate`)."""
    """Per-queue transfer counters and the random seed, owned by the controller and shared by its calls."""
    switches: Mapping[str, bool] = field(default_factory=dict)
    """Run-time switches (outage, ...): the controller's live read-only view, passed in; never read globally."""
    frames: list[Frame] = field(default_factory=list)
    """Open sub-flow calls, innermost last."""
    _last_play_id: int = 0
    _last_request_id: int = 0

    def play(self, prompts: tuple[Prompt, ...], *, interruptible: bool, loop: bool = False) -> Play | Speak:
        """Play prompt files; with a `{say: ...}` among them, a Speak of the files and the rendered texts."""
        if not all(isinstance(p, str) for p in prompts):
            return self.speak(self._parts(prompts), interruptible=interruptible)
        names = tuple(p for p in prompts if isinstance(p, str))
        self._last_play_id += 1
        self.playing = self._last_play_id
        chosen = self.variables.get("lang", "")  # unset: the flat (default) prompt set
        lang = chosen if chosen in self.config.tts.voices else ""
        return Play(self._last_play_id, names, interruptible=interruptible, loop=loop, lang=lang)

    def _parts(self, prompts: tuple[Prompt, ...]) -> tuple[tuple[str, str], ...]:
        parts: list[tuple[str, str]] = []
        for prompt in prompts:
            if isinstance(prompt, str):
                parts.append(("prompt", prompt))
                continue
            lang = prompt.lang or self.lang
            text = render_speech(text_for(prompt.say, lang, self.config.tts.default_lang), self.variables, lang)
            if text:
                parts.append(("say" if prompt.lang is None else f"say:{lang}", text))
                self.said.append(text)
        return tuple(parts)

    @property
    def lang(self) -> str:
        """The call's language: the `lang` variable when a voice exists for it, else the TTS default."""
        lang = self.variables.get("lang", "")
        return lang if lang in self.config.tts.voices else self.config.tts.default_lang

    def speak(self, parts: tuple[tuple[str, str], ...], *, interruptible: bool) -> Speak:
        self._last_play_id += 1
        self.playing = self._last_play_id
        return Speak(self._last_play_id, parts, self.lang, interruptible=interruptible)

    def play_recording(self, recording_id: int) -> PlayRecording:
        """Play one of this call's recordings back; it counts as the running playback like a Play."""
        self._last_play_id += 1
        self.playing = self._last_play_id
        return PlayRecording(self._last_play_id, recording_id)

    def stop_playback(self) -> list[FlowCommand]:
        """StopPlayback for the running playback, if any."""
        if self.playing is None:
            return []
        play_id, self.playing = self.playing, None
        return [StopPlayback(play_id)]

    def new_request_id(self) -> int:
        self._last_request_id += 1
        return self._last_request_id

    def note(self, step_id: str, result: str) -> None:
        """Append `step:result` to the path (steps of a flow entered by goto are prefixed `flow/`)."""
        prefix = "" if self.flow == self.call_flow else f"{self.flow}/"
        self.path.append(f"{prefix}{step_id}:{result}")

    def mark(self, name: str, now: float) -> None:
        self.marks.setdefault(name, now)

    def masked_variables(self) -> dict[str, str]:
        """The variables with every secret replaced by MASK: what records and logs may show."""
        return {name: MASK if name in self.secrets or is_secret_name(name) else value
                for name, value in self.variables.items()}

    def took(self, step_id: str, digit: str, sensitive: bool) -> None:
        """A menu or gather took `digit`: append it to that step's input (a new entry when the step changed)."""
        last = self.inputs[-1] if self.inputs else None
        if last is not None and last.step == step_id and last.masked == sensitive:
            self.inputs[-1] = DigitInput(step_id, last.digits + digit, sensitive)
        else:
            self.inputs.append(DigitInput(step_id, digit, sensitive))

    def buffer_digit(self, digit: str) -> None:
        self.type_ahead.append(digit)
        del self.type_ahead[:-TYPE_AHEAD_MAX]


class Activity:
    """A step waiting for events. By default digits go to the type-ahead buffer and the rest is ignored."""

    takes_hotkeys: ClassVar[bool] = True
    """A flow's hotkeys act during this step (not in a gather, a record or a transfer: digits are theirs)."""
    sensitive = False
    """True for a step whose digits are a secret (a sensitive gather)."""

    def __init__(self, step_id: str, ctx: CallContext) -> None:
        self.step_id = step_id
        self.ctx = ctx

    def claims(self, digit: str) -> bool:
        """The step has its own use for `digit` (a menu option), which wins over a flow hotkey."""
        return False

    def start(self, now: float) -> Reply:
        """Begin the step: what to emit now, and possibly where to go at once."""
        return Reply()

    @property
    def deadline(self) -> float | None:
        """When `on_timer` is due (None: only an event moves this step on)."""
        return None

    @property
    def awaiting_digits(self) -> bool:
        """True while the caller is expected to press a key (prompts done, input timer running)."""
        return False

    def on_digit(self, digit: str, now: float) -> Reply:
        self.ctx.buffer_digit(digit)
        return Reply()

    def on_playback_finished(self, now: float) -> Reply:
        """The step's own playback (ctx.playing) finished."""
        return Reply()

    def on_fetch(self, event: FetchCompleted | FetchFailed, now: float) -> Reply:
        return Reply()

    def on_transfer(self, event: TransferProgress, now: float) -> Reply:
        return Reply()

    def on_bridge(self, event: BridgeProgress | BridgeEnded, now: float) -> Reply:
        """The bridged leg's progress or end (bridged transfers only)."""
        return Reply()

    @property
    def outcome(self) -> Outcome | None:
        """The call's outcome if it ends while in this step (a bridged call: its transfer)."""
        return None

    def on_timer(self, now: float) -> Reply:
        return Reply()

    def on_recording(self, event: RecordingFinished, now: float) -> Reply:
        return Reply()

    def abandon(self, now: float, why: str) -> None:
        """The call ended ("abandoned") or hit its maximum duration ("max_duration") in this step."""
        self.ctx.note(self.step_id, why)


class PromptActivity(Activity):
    """Audio played to its end (a play or say step): an interruptible one is left at the first digit, which is kept
    as type-ahead for the next menu or gather; a non-interruptible one keeps the digit and plays on."""

    def __init__(self, step_id: str, ctx: CallContext, *, interruptible: bool, next_step: str | None,
                 finished: str) -> None:
        super().__init__(step_id, ctx)
        self.interruptible = interruptible
        self.next_step = next_step
        self.finished = finished
        """The path result when the audio ends ("played", "said")."""

    def on_digit(self, digit: str, now: float) -> Reply:
        self.ctx.buffer_digit(digit)
        if not self.interruptible:
            return Reply()
        return Reply(self.ctx.stop_playback(), Next("barged_in", self.next_step))

    def on_playback_finished(self, now: float) -> Reply:
        return Reply(then=Next(self.finished, self.next_step))
