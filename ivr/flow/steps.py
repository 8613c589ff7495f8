"""The step kinds: `enter` dispatches on the closed union; waiting steps are small `Activity` objects.

Immediate steps (branch, hours, set, goto) return where to go at once. Waiting steps (play, menu,
gather, fetch, transfer, hangup with prompts) return an `Activity` that the session feeds events to
until it answers with a `Next` or a `Done`.
"""

from __future__ import annotations

from typing import assert_never

from ivr.config.logic_steps import CallStep, CounterStep, ReturnStep
from ivr.config.record_steps import RecordStep
from ivr.config.speech import SayStep
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
from ivr.flow.bridge import BridgeActivity
from ivr.flow.conditions import all_hold
from ivr.flow.context import Activity, CallContext, Done, Next, PromptActivity, Reply
from ivr.flow.fetch import FetchActivity
from ivr.flow.hours import is_open
from ivr.flow.input import GatherActivity, MenuActivity
from ivr.flow.logic import enter_logic
from ivr.flow.opening import opening_variables
from ivr.flow.record import RecordActivity
from ivr.flow.speech import SayActivity
from ivr.flow.template import references, render
from ivr.flow.transfer import TransferActivity


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
        case CounterStep() | CallStep() | ReturnStep():
            return None, enter_logic(step, ctx)
        case PlayStep():
            activity = PlayActivity(step, ctx)
        case MenuStep():
            activity = MenuActivity(step, ctx)
        case GatherStep():
            activity = GatherActivity(step, ctx)
        case FetchStep():
            activity = FetchActivity(step, ctx)
        case TransferStep() if not ctx.trunk.refer:
            activity = BridgeActivity(step, ctx)
        case TransferStep():
            activity = TransferActivity(step, ctx)
        case HangupStep():
            activity = HangupActivity(step, ctx)
        case RecordStep():
            activity = RecordActivity(step, ctx)
        case SayStep():
            activity = SayActivity(step, ctx)
        case _:
            assert_never(step)
    return activity, activity.start(now)


def _branch(step: BranchStep, ctx: CallContext) -> Next:
    for case in step.cases:
        if all_hold(case.when, ctx.variables, ctx.switches):
            return Next(case.goto, case.goto)
    return Next(step.default, step.default)


def _hours(step: HoursStep, ctx: CallContext, now: float) -> Next:
    schedule = ctx.config.schedules.get(step.schedule)
    if schedule is None:
        return Next("unknown_schedule", step.closed)
    if is_open(schedule, now):
        return Next("open", step.open)
    ctx.variables.update(opening_variables(schedule, now))  # for "We open at {{opens_time|time}} ..."
    return Next("closed", step.closed)


class PlayActivity(PromptActivity):
    """Prompts; an interruptible one is skipped or stopped by a digit, which is kept for the next input."""

    def __init__(self, step: PlayStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx, interruptible=step.interruptible, next_step=step.next, finished="played")
        self.step = step

    def start(self, now: float) -> Reply:
        if self.step.interruptible and self.ctx.type_ahead:
            return Reply(then=Next("skipped", self.step.next))
        return Reply([self.ctx.play(self.step.prompts, interruptible=self.step.interruptible)])


class HangupActivity(Activity):
    """Prompts that cannot be interrupted, then the end of the call."""

    takes_hotkeys = False

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
