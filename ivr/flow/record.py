"""The record step (voicemail): prompts and a beep, record until the finish key, silence or the maximum
length, then an optional review menu (1 listen, 2 record again, 3 keep; no choice keeps it).

The worker records and detects silence; it answers every StartRecording with one RecordingFinished (also
when the caller hangs up mid-message: reason "hangup", sent before CallEnded, so the message is kept). A
take shorter than `min_length` of voice is empty: the caller is asked again up to `max_takes`, then the
flow goes to `on_empty`. The kept file's name lands in the step's variable (hence in the call's record).
"""

from __future__ import annotations

from typing import Literal

from ivr.config.record_steps import RecordStep
from ivr.flow.commands import FlowCommand, StartRecording, StopRecording
from ivr.flow.context import Activity, CallContext, Next, Reply
from ivr.flow.events import RecordingFinished

Phase = Literal["intro", "recording", "stopping", "review", "choosing", "listening"]
REPORT_GRACE_S = 10.0
"""A recording the worker has not reported this long after its maximum length counts as failed."""


class RecordActivity(Activity):
    """See the module docstring."""

    takes_hotkeys = False

    def __init__(self, step: RecordStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx)
        self.step = step
        self.phase: Phase = "intro"
        self.takes = 0
        self.recording_id = 0
        self.kept: RecordingFinished | None = None
        self.until: float | None = None

    @property
    def deadline(self) -> float | None:
        return self.until

    @property
    def awaiting_digits(self) -> bool:
        return self.phase in ("recording", "choosing")

    def start(self, now: float, prompts: tuple[str, ...] | None = None) -> Reply:
        self.phase, self.until = "intro", None
        chosen = self.step.prompts if prompts is None else prompts
        intro = (*chosen, *((self.step.beep,) if self.step.beep else ()))
        if not intro:
            return self._record(now)
        return Reply([self.ctx.play(intro, interruptible=False)])

    def _record(self, now: float) -> Reply:
        self.takes += 1
        self.recording_id = self.ctx.new_request_id()
        self.phase = "recording"
        self.until = now + self.step.max_length + REPORT_GRACE_S
        return Reply([StartRecording(self.recording_id, self.step.max_length, self.step.silence)])

    def on_playback_finished(self, now: float) -> Reply:
        if self.phase == "intro":
            return self._record(now)
        if self.phase == "review":
            self.phase, self.until = "choosing", now + self.step.review_timeout
            return Reply()
        if self.phase == "listening":
            return self._review()
        return Reply()

    def on_digit(self, digit: str, now: float) -> Reply:
        if self.phase == "recording" and digit == self.step.finish_on:
            self.phase = "stopping"
            return Reply([StopRecording(self.recording_id)])
        if self.phase in ("review", "choosing", "listening"):
            return self._choice(digit, now)
        return Reply()  # tones during the message or its prompts are not type-ahead

    def on_recording(self, event: RecordingFinished, now: float) -> Reply:
        if event.recording_id != self.recording_id or self.phase not in ("recording", "stopping"):
            return Reply()
        self.until = None
        empty = event.reason == "failed" or not event.file or event.voiced_s < max(self.step.min_length, 1e-9)
        if event.reason == "hangup":
            if not empty:
                self._keep(event)
            return Reply()
        self.ctx.note(self.step_id, f"take_{event.reason}" if not empty else "take_empty")
        if empty:
            if self.takes < self.step.max_takes:
                return self.start(now)
            return self._done(now)
        self.kept = event
        return self._review() if self.step.review else self._done(now)

    def on_timer(self, now: float) -> Reply:
        if self.until is None or now < self.until:
            return Reply()
        self.until = None
        if self.phase in ("recording", "stopping"):
            self.ctx.note(self.step_id, "take_lost")
            return self._done(now)
        return self._done(now)  # no review choice: keep it

    def _review(self) -> Reply:
        self.phase, self.until = "review", None
        return Reply([self.ctx.play(self.step.review_prompts, interruptible=True)])

    def _choice(self, digit: str, now: float) -> Reply:
        stop: list[FlowCommand] = self.ctx.stop_playback()
        self.until = None
        if digit == "1" and self.kept is not None:
            self.phase = "listening"
            reply = Reply([self.ctx.play_recording(self.kept.recording_id)])
        elif digit == "2" and self.takes < self.step.max_takes:
            reply = self.start(now, prompts=())
        elif digit in ("2", "3"):
            reply = self._done(now)
        else:
            reply = self._review()
        reply.commands[:0] = stop
        return reply

    def _keep(self, event: RecordingFinished) -> None:
        self.ctx.variables[self.step.variable] = event.file

    def _done(self, now: float) -> Reply:
        if self.kept is None:
            return Reply(then=Next("empty", self.step.on_empty or self.step.next))
        self._keep(self.kept)
        return Reply(then=Next("kept", self.step.next))
