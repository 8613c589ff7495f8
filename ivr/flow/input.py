"""Menu and gather: prompts with barge-in, an input timer, retries with invalid/no-input prompts."""

from __future__ import annotations

import re
from typing import Literal

from ivr.config.speech import Prompt
from ivr.config.steps import GatherStep, MenuStep
from ivr.flow.context import Activity, CallContext, Next, Reply
from ivr.records.model import MASK, is_secret_name

Phase = Literal["prompts", "waiting", "retry"]


class _Input(Activity):
    """What menu and gather share: one attempt = prompts, then wait; a failure retries or exhausts.

    Digits already in the type-ahead buffer when an attempt starts are taken at once (no prompts).
    Retry prompts are interruptible too: a digit stops them and starts the next attempt with it.
    """

    def __init__(self, step: MenuStep | GatherStep, ctx: CallContext, first_wait: float) -> None:
        super().__init__(step.id, ctx)
        self.base = step
        self.first_wait = first_wait
        self.phase: Phase = "prompts"
        self.failures = 0
        self.until: float | None = None

    @property
    def deadline(self) -> float | None:
        return self.until

    @property
    def awaiting_digits(self) -> bool:
        return self.phase == "waiting"

    def start(self, now: float) -> Reply:
        return self._attempt(now)

    def _attempt(self, now: float) -> Reply:
        self.until = None
        self._reset()
        if self.ctx.type_ahead:
            self.phase = "waiting"
            return self._take_buffer(now)
        self.phase = "prompts"
        return Reply([self.ctx.play(self.base.prompts, interruptible=True)])

    def on_playback_finished(self, now: float) -> Reply:
        if self.phase == "retry":
            return self._attempt(now)
        self.phase = "waiting"
        self.until = now + self.first_wait
        return Reply()

    def on_digit(self, digit: str, now: float) -> Reply:
        if self.phase == "waiting":
            return self._digit(digit, now)
        stop = self.ctx.stop_playback()
        if self.phase == "retry":
            self.ctx.buffer_digit(digit)
            reply = self._attempt(now)
        else:
            self.phase = "waiting"
            reply = self._digit(digit, now)
        reply.commands[:0] = stop
        return reply

    def on_timer(self, now: float) -> Reply:
        if self.phase != "waiting" or self.until is None or now < self.until:
            return Reply()
        self.until = None
        return self._timeout(now)

    def _retry(self, result: str, prompts: tuple[Prompt, ...], now: float) -> Reply:
        self.failures += 1
        self.until = None
        self.ctx.note(self.step_id, result)
        if self.failures >= self.base.attempts:
            return Reply(then=Next("exhausted", self.base.on_exhausted))
        if prompts:
            self.phase = "retry"
            return Reply([self.ctx.play(prompts, interruptible=True)])
        return self._attempt(now)

    def _reset(self) -> None:
        """Clear per-attempt input."""

    def _take_buffer(self, now: float) -> Reply:
        raise NotImplementedError

    def _digit(self, digit: str, now: float) -> Reply:
        raise NotImplementedError

    def _timeout(self, now: float) -> Reply:
        raise NotImplementedError


class MenuActivity(_Input):
    """One digit picks an option; anything else is invalid."""

    def __init__(self, step: MenuStep, ctx: CallContext) -> None:
        super().__init__(step, ctx, step.timeout)
        self.step = step

    def _take_buffer(self, now: float) -> Reply:
        return self._digit(self.ctx.type_ahead.pop(0), now)

    def _digit(self, digit: str, now: float) -> Reply:
        variable = self.step.variable
        secret = variable is not None and is_secret_name(variable)
        self.ctx.took(self.step_id, digit, secret)
        target = self.step.options.get(digit)
        if target is None:
            return self._retry("invalid", self.step.invalid_prompts, now)
        if self.step.variable is not None:
            self.ctx.variables[self.step.variable] = digit
        self.until = None
        return Reply(then=Next(MASK if secret else digit, target))

    def _timeout(self, now: float) -> Reply:
        return self._retry("no_input", self.step.no_input_prompts, now)


class GatherActivity(_Input):
    """Digits until max_digits, the terminator or the inter-digit timeout; then min_digits and pattern."""

    def __init__(self, step: GatherStep, ctx: CallContext) -> None:
        super().__init__(step, ctx, step.first_digit_timeout)
        self.step = step
        self.collected = ""
        self.sensitive = step.sensitive or is_secret_name(step.variable)
        if self.sensitive:
            ctx.secrets.add(step.variable)

    def _reset(self) -> None:
        self.collected = ""

    def _take_buffer(self, now: float) -> Reply:
        reply = Reply()
        while self.ctx.type_ahead and self.phase == "waiting" and reply.then is None:
            reply = self._digit(self.ctx.type_ahead.pop(0), now)
        return reply

    def _digit(self, digit: str, now: float) -> Reply:
        self.ctx.took(self.step_id, digit, self.sensitive)
        if digit == self.step.terminator:
            return self._finish(now)
        self.collected += digit
        if len(self.collected) >= self.step.max_digits:
            return self._finish(now)
        self.until = now + self.step.inter_digit_timeout
        return Reply()

    def _timeout(self, now: float) -> Reply:
        if not self.collected:
            return self._retry("no_input", self.step.no_input_prompts, now)
        return self._finish(now)

    def _finish(self, now: float) -> Reply:
        value = self.collected
        valid = len(value) >= self.step.min_digits and (
            self.step.pattern is None or re.fullmatch(self.step.pattern, value) is not None)
        if not valid:
            return self._retry("invalid", self.step.invalid_prompts, now)
        self.until = None
        self.ctx.variables[self.step.variable] = value
        return Reply(then=Next("ok", self.step.next))
