"""One call's flow: a sans-I/O state machine driven by events, a wall-clock `now` and one deadline.

Theory of operation
-------------------
A `FlowSession` is created when the controller accepts a call (`CallInfo`), told `start(now)` (it answers:
`[Answer()]`) and then fed every event of the call with `handle(event, now)`. Each call returns the
commands to carry out, in order. Nothing here reads a clock or does I/O: `now` (epoch seconds) is always
passed in, and time-based behaviour goes through one number, `deadline`. The driver arms a single timer
for it and calls `handle_timer(now)` when it passes; a firing that is early or stale does nothing, so the
driver never has to cancel anything.

The flow runs from its first step once `CallConnected` arrives. Steps are the closed union of
`ivr.config.model.Step`; `steps.enter` dispatches on it with `match`:

* immediate steps (branch, hours, set, goto) decide where to go at once;
* waiting steps (play, menu, gather, fetch, transfer, hangup with prompts) become an `Activity` that
  receives the events and timer firings until it answers `Next` (another step) or `Done` (hang up).

The session owns the moves between steps (`_follow`): it records `step:result` in the path, stops any
playback still running, resolves `next` (default: the following step; past the end: hang up
"flow_end"), and counts moves made without waiting for an event: more than `LOOP_LIMIT` means a
goto/branch cycle and the call is hung up ("loop_detected").

Digits: only 0-9 * # A-D by a DTMF method the trunk allows count. They may come at any time: before
`CallConnected` and during non-interruptible prompts or a fetch they go to the type-ahead buffer (the next
menu or gather takes them without playing its prompts); an interruptible prompt is stopped (barge-in).
A flow hotkey acts only when no typed-ahead digit is waiting (then it is part of the caller's entry).
Every `Play` gets a new, increasing play_id and only the running one's `PlaybackFinished` counts.

Endings: a flow always ends in `HangUp` (after a successful transfer, reason "transferred"); after that
the session only waits for `CallEnded` (no deadline: the worker or its supervisor always reports the end).
`CallEnded` may come at any moment; the session is then `finished` and emits nothing more. The maximum
call duration (`sip.max_call_duration`, counted from `start`) is always part of the deadline, so no state
waits forever. `record()` builds the call's one frozen `CallRecord` (ivr.records.model): the log line, the
database row and the webhook all carry it unchanged. Secrets are masked there, by one rule: a gather marked
`sensitive` (its digits, its variable and any variable `set` from it) and any variable named like a PIN,
password or secret. Digits are recorded per menu/gather step as the step takes them; digits still in the
type-ahead buffer at the end were never used and are recorded masked (they may be a PIN typed ahead).
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr.config.model import IvrConfig, Trunk
from ivr.config.steps import Step
from ivr.flow.commands import Answer, FlowCommand, HangUp
from ivr.flow.context import BUILTINS, Activity, CallContext, CallInfo, Done, Frame, Next, Reply
from ivr.flow.events import (
    BridgeEnded,
    BridgeProgress,
    CallConnected,
    CallEnded,
    DigitReceived,
    FetchCompleted,
    FetchFailed,
    FlowEvent,
    PlaybackFinished,
    RecordingFinished,
    TransferProgress,
)
from ivr.flow.steps import enter
from ivr.flow.targets import QueueCursors
from ivr.records.model import MASK, CallRecord, DigitInput, Outcome, Timings

__all__ = ["CallInfo", "FlowSession", "LOOP_LIMIT"]

MAX_DEPTH = 8
"""Sub-flow calls open at once; one more hangs up "call_depth" (a flow calling itself without end)."""

LOOP_LIMIT = 50
"""Step moves allowed without waiting for an event."""

DIGITS = frozenset("0123456789*#ABCD")
TIMING_SPANS = {
    "answer_ms": ("started", "connected"),
    "to_transfer_ms": ("connected", "first_transfer"),
    "transfer_ms": ("transfer_sent", "transferred"),
    "to_transferred_ms": ("connected", "transferred"),
    "to_hangup_ms": ("connected", "hangup"),
    "duration_ms": ("started", "ended"),
}


def _trunk(config: IvrConfig, name: str) -> Trunk:
    """The call's trunk; an unknown name (the controller should not allow it) gets the defaults."""
    for trunk in config.trunks:
        if trunk.name == name:
            return trunk
    return Trunk.model_construct(name=name, sources=(), dtmf="both", refer=True, registration=None)


class FlowSession:
    """Runs one call through its flow. See the module docstring for how it is driven."""

    def __init__(self, config: IvrConfig, flow: str, call: CallInfo, now: float,
                 cursors: QueueCursors | None = None, switches: Mapping[str, bool] | None = None) -> None:
        """`cursors`: the controller's per-queue target counters (round robin spans calls); default: this
        call's own, starting at zero. `switches`: the controller's read-only view of the run-time switches
        (a flip shows in the next condition that reads it); default: the config's start states."""
        if flow not in config.flows:
            raise KeyError(f"unknown flow {flow!r}")
        variables = dict(zip(BUILTINS, (call.caller, call.dialed, call.trunk, call.call_id), strict=True))
        self._ctx = CallContext(config, call, _trunk(config, call.trunk), flow, flow, variables,
                                cursors=cursors if cursors is not None else QueueCursors(),
                                switches=switches if switches is not None else dict(config.switches))
        self._config = config
        self._activity: Activity | None = None
        self._step_id: str | None = None
        self._index = 0
        self._connected = False
        self._hung_up = False
        self._finished = False
        self._outcome: Outcome | None = None
        self._end_reason: str | None = None
        self._max_at = now + config.sip.max_call_duration
        self._ctx.mark("started", now)

    # --- the driver's interface -------------------------------------------------------------------

    def start(self, now: float) -> list[FlowCommand]:
        """Answer the call; the first step runs on `CallConnected`."""
        self._ctx.marks["started"] = now
        self._max_at = now + self._config.sip.max_call_duration
        return [Answer()]

    def handle(self, event: FlowEvent, now: float) -> list[FlowCommand]:
        if self._finished:
            return []
        if isinstance(event, CallEnded):
            self._ended(event, now)
            return []
        if self._hung_up:
            return []
        match event:
            case CallConnected():
                return self._connect(now)
            case DigitReceived():
                return self._digit(event, now)
        activity = self._activity
        if activity is None:
            return []
        match event:
            case PlaybackFinished(play_id=play_id):
                if play_id != self._ctx.playing:
                    return []
                self._ctx.playing = None
                return self._follow(activity.on_playback_finished(now), now)
            case FetchCompleted() | FetchFailed():
                return self._follow(activity.on_fetch(event, now), now)
            case TransferProgress():
                return self._follow(activity.on_transfer(event, now), now)
            case RecordingFinished():
                return self._follow(activity.on_recording(event, now), now)
            case BridgeProgress() | BridgeEnded():
                return self._follow(activity.on_bridge(event, now), now)
        return []

    def handle_timer(self, now: float) -> list[FlowCommand]:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        if now >= self._max_at:
            if self._activity is not None:
                self._outcome = self._outcome or self._activity.outcome
                self._activity.abandon(now, "max_duration")
            return self._hang_up("max_duration", now)
        if self._activity is None:
            return []
        return self._follow(self._activity.on_timer(now), now)

    @property
    def deadline(self) -> float | None:
        if self._finished or self._hung_up:
            return None
        step_deadline = self._activity.deadline if self._activity is not None else None
        return self._max_at if step_deadline is None else min(step_deadline, self._max_at)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def awaiting_digits(self) -> bool:
        """True while a menu or gather has played its prompts and waits for a key (for `ivr simulate`)."""
        return not self._hung_up and self._activity is not None and self._activity.awaiting_digits

    @property
    def collecting_secret(self) -> bool:
        """True while a sensitive gather takes digits: a driver must not show them (`ivr simulate`)."""
        return self._activity is not None and self._activity.sensitive

    @property
    def current_step(self) -> str | None:
        """The id of the step the call is in (None before CallConnected)."""
        return self._step_id

    @property
    def current_flow(self) -> str:
        """The flow the current step belongs to (another than the call's after a goto to a flow)."""
        return self._ctx.flow

    @property
    def variables(self) -> dict[str, str]:
        """A copy of the call's variables, built-ins included."""
        return dict(self._ctx.variables)

    @property
    def path(self) -> tuple[str, ...]:
        """`step:result` of each step left so far."""
        return tuple(self._ctx.path)

    def abort(self, reason: str, now: float) -> None:
        """The driver ends the call outside the flow (internal error, hang-up never confirmed)."""
        self._activity = None
        self._hung_up = self._finished = True
        self._end_reason = reason
        if self._outcome is None:
            self._outcome = Outcome("hangup", reason)
        self._ctx.mark("ended", now)

    def record(self) -> CallRecord:
        """The call's record so far (complete once `finished`), secrets masked."""
        ctx, call = self._ctx, self._ctx.call
        variables = tuple((name, value) for name, value in ctx.masked_variables().items() if name not in BUILTINS)
        inputs = [DigitInput(i.step, MASK, True) if i.masked else i for i in ctx.inputs]
        if ctx.type_ahead:
            inputs.append(DigitInput("", MASK, True))
        return CallRecord(
            uid=call.uid or call.call_id, call_id=call.call_id, sip_call_id=call.sip_call_id, worker=call.worker,
            trunk=call.trunk, caller=call.caller, dialed=call.dialed, flow=ctx.call_flow,
            started_at=ctx.marks["started"],
            ended_at=ctx.marks.get("ended"), end_reason=self._end_reason,
            outcome=self._outcome or Outcome("none", ""), path=tuple(ctx.path), inputs=tuple(inputs),
            variables=variables, fetches=tuple(ctx.fetches), transfers=tuple(ctx.transfers),
            legs=tuple(ctx.legs),
            timings=self._timings(), node=call.node)

    # --- moving between steps ---------------------------------------------------------------------

    def _connect(self, now: float) -> list[FlowCommand]:
        if self._connected:
            return []
        self._connected = True
        self._ctx.mark("connected", now)
        step: Step = self._config.flows[self._ctx.flow].steps[0]
        self._step_id, self._index = step.id, 0
        activity, reply = enter(step, self._ctx, now)
        self._activity = activity if reply.then is None else None
        return self._follow(reply, now)

    def _follow(self, reply: Reply, now: float) -> list[FlowCommand]:
        """Emit a step's commands and follow its Next/Done, through any number of immediate steps."""
        commands = list(reply.commands)
        then = reply.then
        moves = 0
        while then is not None:
            self._activity = None
            if self._step_id is not None:
                self._ctx.note(self._step_id, then.result)
            if isinstance(then, Done):
                if then.transfer is not None:
                    queue, uri = then.transfer
                    self._outcome = Outcome("transfer", then.reason, queue, uri)
                return commands + self._hang_up(then.reason, now)
            moves += 1
            if moves > LOOP_LIMIT:
                self._ctx.note(self._step_id or "", "loop_detected")
                return commands + self._hang_up("loop_detected", now)
            commands += self._ctx.stop_playback()
            index = self._resolve(then)
            if isinstance(index, str):
                return commands + self._hang_up(index, now)
            step = self._config.flows[self._ctx.flow].steps[index]
            self._step_id, self._index = step.id, index
            activity, reply = enter(step, self._ctx, now)
            self._activity = activity if reply.then is None else None
            commands += reply.commands
            then = reply.then
        return commands

    def _resolve(self, then: Next) -> int | str:
        """The index of the next step (switching flow for a goto, call or return), or why the call ends."""
        ctx = self._ctx
        if then.back:
            return self._return()
        if then.flow is not None:
            if then.flow not in self._config.flows:
                return "bad_target"
            if then.call:
                if len(ctx.frames) >= MAX_DEPTH:
                    return "call_depth"
                ctx.frames.append(Frame(ctx.flow, self._index, then.target))
            ctx.flow = then.flow
            return 0
        steps = self._config.flows[ctx.flow].steps
        if then.target is None:
            if self._index + 1 < len(steps):
                return self._index + 1
            return self._return() if ctx.frames else "flow_end"
        for index, step in enumerate(steps):
            if step.id == then.target:
                return index
        return "bad_target"

    def _return(self) -> int | str:
        """Back from a sub-flow to the calling step's `next`; outside any sub-flow the flow ends."""
        ctx = self._ctx
        if not ctx.frames:
            return "flow_end"
        frame = ctx.frames.pop()
        ctx.flow, self._index = frame.flow, frame.index
        return self._resolve(Next("returned", frame.target))

    # --- events -----------------------------------------------------------------------------------

    def _digit(self, event: DigitReceived, now: float) -> list[FlowCommand]:
        dtmf = self._ctx.trunk.dtmf
        if event.digit not in DIGITS or len(event.digit) != 1 or dtmf not in ("both", event.method):
            return []
        if self._activity is None:
            self._ctx.buffer_digit(event.digit)
            return []
        hotkey = self._hotkey(self._activity, event.digit)
        if hotkey is not None:
            return self._follow(Reply(self._ctx.stop_playback(), Next(f"hotkey_{event.digit}", hotkey)), now)
        return self._follow(self._activity.on_digit(event.digit, now), now)

    def _hotkey(self, activity: Activity, digit: str) -> str | None:
        """The step a flow hotkey sends `digit` to, when the current step lets hotkeys act.

        A hotkey acts only as the first key of the caller's input: while digits typed ahead wait in the
        buffer the caller is mid-entry, and a hotkey digit is part of that entry (an account number with a 0,
        typed through a CRM wait, is not "0 for a person")."""
        if not activity.takes_hotkeys or activity.claims(digit) or self._ctx.type_ahead:
            return None
        return self._config.flows[self._ctx.flow].hotkeys.get(digit)

    def _hang_up(self, reason: str, now: float) -> list[FlowCommand]:
        self._hung_up = True
        self._activity = None
        if self._outcome is None:
            self._outcome = Outcome("hangup", reason)
        self._ctx.mark("hangup", now)
        return [*self._ctx.stop_playback(), HangUp(reason)]

    def _ended(self, event: CallEnded, now: float) -> None:
        if self._activity is not None and not self._hung_up:
            self._outcome = self._outcome or self._activity.outcome
            self._activity.abandon(now, "abandoned")
        self._activity = None
        self._finished = True
        self._end_reason = event.reason
        if self._outcome is None:
            self._outcome = Outcome("abandoned", event.reason)
        self._ctx.mark("ended", now)

    def _timings(self) -> Timings:
        marks = self._ctx.marks
        return Timings(**{name: round((marks[end] - marks[begin]) * 1000, 1)
                          for name, (begin, end) in TIMING_SPANS.items() if begin in marks and end in marks})
