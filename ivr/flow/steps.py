"""The step kinds: `enter` dispatches on the closed union; waiting steps are small `Activity` objects.

Immediate steps (branch, hours, set, goto) return where to go at once. Waiting steps (play, menu,
gather, fetch, transfer, hangup with prompts) return an `Activity` that the session feeds events to
until it answers with a `Next` or a `Done`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import assert_never

from ivr.config.steps import (
    BranchStep,
    FetchStep,
    GatherStep,
    GotoStep,
    HangupStep,
    HoursStep,
    MenuStep,
    PlayStep,
    SetStep,
    Step,
    TransferStep,
)
from ivr.flow.commands import Transfer
from ivr.flow.conditions import all_hold
from ivr.flow.context import Activity, CallContext, Done, Next, Reply
from ivr.flow.events import TransferProgress
from ivr.flow.fetch import FetchActivity
from ivr.flow.hours import is_open
from ivr.flow.input import GatherActivity, MenuActivity
from ivr.flow.template import references, render, render_header, render_uri_param, with_uri_params
from ivr.records.model import TransferAttempt


def enter(step: Step, ctx: CallContext, now: float) -> tuple[Activity | None, Reply]:
    """Start a step: an activity that waits (with what to emit now), or None and where to go next."""
    activity: Activity
    match step:
        case BranchStep():
            return None, Reply(then=_branch(step, ctx))
        case HoursStep():
            return None, Reply(then=_hours(step, ctx, now))
        case SetStep():
            for name, template in step.values.items():
                ctx.variables[name] = render(template, ctx.variables)
                if references(template) & ctx.secrets:
                    ctx.secrets.add(name)
            return None, Reply(then=Next("set", step.next))
        case GotoStep():
            return None, Reply(then=Next("goto", step.step, step.flow))
        case PlayStep():
            activity = PlayActivity(step, ctx)
        case MenuStep():
            activity = MenuActivity(step, ctx)
        case GatherStep():
            activity = GatherActivity(step, ctx)
        case FetchStep():
            activity = FetchActivity(step, ctx)
        case TransferStep():
            activity = TransferActivity(step, ctx)
        case HangupStep():
            activity = HangupActivity(step, ctx)
        case _:
            assert_never(step)
    return activity, activity.start(now)


def _branch(step: BranchStep, ctx: CallContext) -> Next:
    for case in step.cases:
        if all_hold(case.when, ctx.variables):
            return Next(case.goto, case.goto)
    return Next(step.default, step.default)


def _hours(step: HoursStep, ctx: CallContext, now: float) -> Next:
    schedule = ctx.config.schedules.get(step.schedule)
    if schedule is None:
        return Next("unknown_schedule", step.closed)
    return Next("open", step.open) if is_open(schedule, now) else Next("closed", step.closed)


class PlayActivity(Activity):
    """Prompts; an interruptible one is skipped or stopped by a digit, which is kept for the next input."""

    def __init__(self, step: PlayStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx)
        self.step = step

    def start(self, now: float) -> Reply:
        if self.step.interruptible and self.ctx.type_ahead:
            return Reply(then=Next("skipped", self.step.next))
        return Reply([self.ctx.play(self.step.prompts, interruptible=self.step.interruptible)])

    def on_digit(self, digit: str, now: float) -> Reply:
        self.ctx.buffer_digit(digit)
        if not self.step.interruptible:
            return Reply()
        return Reply(self.ctx.stop_playback(), Next("barged_in", self.step.next))

    def on_playback_finished(self, now: float) -> Reply:
        return Reply(then=Next("played", self.step.next))


class HangupActivity(Activity):
    """Prompts that cannot be interrupted, then the end of the call."""

    def __init__(self, step: HangupStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx)
        self.step = step

    def start(self, now: float) -> Reply:
        if not self.step.prompts:
            return Reply(then=Done("hangup", self.step.reason))
        return Reply([self.ctx.play(self.step.prompts, interruptible=False)])

    def on_digit(self, digit: str, now: float) -> Reply:
        return Reply()

    def on_playback_finished(self, now: float) -> Reply:
        return Reply(then=Done("hangup", self.step.reason))


class TransferActivity(Activity):
    """REFER to a configured queue and wait for the final NOTIFY (or the REFER's rejection)."""

    def __init__(self, step: TransferStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx)
        self.step = step
        self.uri = ""
        self.until: float | None = None
        self.index = -1
        """This attempt's place in ctx.transfers (an entry is replaced, never mutated)."""

    @property
    def deadline(self) -> float | None:
        return self.until

    @property
    def entry(self) -> TransferAttempt:
        return self.ctx.transfers[self.index]

    def _update(self, **changes: object) -> None:
        self.ctx.transfers[self.index] = replace(self.entry, **changes)  # type: ignore[arg-type]

    def start(self, now: float) -> Reply:
        self.index = len(self.ctx.transfers)
        self.ctx.transfers.append(TransferAttempt(self.step.id, self.step.queue, "", "pending"))
        queue = self.ctx.config.queues.get(self.step.queue)
        if queue is None:
            return self._fail("unknown_queue", None)
        if not self.ctx.trunk.refer:
            return self._fail("refer_not_supported", None)
        params = {name: render_uri_param(t, self.ctx.variables) for name, t in queue.uri_params.items()}
        self.uri = with_uri_params(queue.uri, {name: value for name, value in params.items() if value})
        rendered = ((name, render_header(t, self.ctx.variables)) for name, t in queue.headers.items())
        headers = tuple((name, value) for name, value in rendered if value)
        self._update(uri=self.uri, sent_at=now)
        self.until = now + self.step.notify_timeout
        self.ctx.mark("first_transfer", now)
        self.ctx.marks["transfer_sent"] = now
        return Reply([*self.ctx.stop_playback(), Transfer(self.step.queue, self.uri, headers)])

    def on_digit(self, digit: str, now: float) -> Reply:
        return Reply()

    def on_transfer(self, event: TransferProgress, now: float) -> Reply:
        self._update(progress=(*self.entry.progress, event.code))
        if not event.final or event.code < 200:
            return Reply()
        if event.code < 300:
            self.until = None
            self._update(result="ok", code=event.code)
            self.ctx.mark("transferred", now)
            return Reply(then=Done("ok", "transferred", (self.step.queue, self.uri)))
        return self._fail(f"rejected_{event.code}", event.code)

    def on_timer(self, now: float) -> Reply:
        if self.until is not None and now >= self.until:
            return self._fail("no_notify", None)
        return Reply()

    def _fail(self, reason: str, code: int | None) -> Reply:
        self.until = None
        self._update(result=reason, code=code)
        if self.step.on_fail is None:
            return Reply(then=Done(reason, "transfer_failed"))
        return Reply(then=Next(reason, self.step.on_fail))

    def abandon(self, now: float, why: str) -> None:
        self._update(result=why)
        super().abandon(now, why)
