"""The transfer step: REFER to each target of a queue in its strategy's order until one takes the call.

A variable target (the step's `target`, e.g. the caller's account manager from the CRM) comes first when it
renders to a URI inside the queue's allow-list; then the queue's fixed targets (`plan_targets`). Every
attempt is one entry of the call's `transfers` list (queue, uri, result, code); a refused or failed target
(REFER rejected, final NOTIFY >= 300, no final NOTIFY by `notify_timeout`) moves on to the next one, and
only when none is left does the step take `on_fail`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ivr.config.model import Queue
from ivr.config.steps import TransferStep
from ivr.flow.commands import Transfer
from ivr.flow.context import Activity, CallContext, Done, Next, Reply
from ivr.flow.events import TransferProgress
from ivr.flow.targets import plan_targets, variable_target, with_uri_headers
from ivr.flow.template import render_header, render_uri_param, with_uri_params
from ivr.records.model import TransferAttempt


class TransferActivity(Activity):
    """REFER to the queue's targets in turn, each waiting for its final NOTIFY (or the REFER's rejection)."""

    def __init__(self, step: TransferStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx)
        self.step = step
        self.uri = ""
        self.shown_uri = ""
        """The URI as records show it: a URI parameter rendered from a secret variable is masked."""
        self.until: float | None = None
        self.pending: list[str] = []
        self.index: int | None = None
        """The current attempt's place in ctx.transfers (an entry is replaced, never mutated)."""
        self.last_failure = "no_target"
        self.last_code: int | None = None
        self.headers: tuple[tuple[str, str], ...] = ()

    @property
    def deadline(self) -> float | None:
        return self.until

    def start(self, now: float) -> Reply:
        queue = self.ctx.config.queues.get(self.step.queue)
        if queue is None:
            return self._skip("unknown_queue")
        if not self.ctx.trunk.refer:
            return self._skip("refer_not_supported")
        rendered = ((name, render_header(t, self.ctx.variables)) for name, t in queue.headers.items())
        self.headers = tuple((name, value) for name, value in rendered if value)
        self.pending = self._candidates(queue)
        return self._next_target(queue, now)

    def _candidates(self, queue: Queue) -> list[str]:
        found: list[str] = []
        if self.step.target is not None:
            chosen = variable_target(self.step.target, self.ctx.variables, queue)
            if chosen.uri is None:
                shown = variable_target(self.step.target, self.ctx.masked_variables(), queue).rendered
                self._entry(shown, chosen.reason, None)
                self.last_failure = f"target_{chosen.reason}"
            else:
                found.append(chosen.uri)
        if queue.all_targets:
            ticket = self.ctx.cursors.take(self.step.queue)
            planned = plan_targets(self.step.queue, queue, ticket, self.ctx.cursors.seed)
            found += [uri for uri in planned if uri not in found]
        return found

    def _next_target(self, queue: Queue, now: float) -> Reply:
        if not self.pending:
            return self._give_up()
        target = self.pending.pop(0)
        self.uri = _with_params(target, queue, self.ctx.variables)
        self.shown_uri = _with_params(target, queue, self.ctx.masked_variables())
        on_refer = self.headers if queue.header_mode in ("refer", "both") else ()
        in_uri = self.headers if queue.header_mode in ("refer_to", "both") else ()
        self.index = self._entry(self.shown_uri, "pending", None, now)
        self.until = now + self.step.notify_timeout
        self.ctx.mark("first_transfer", now)
        self.ctx.marks["transfer_sent"] = now
        return Reply([*self.ctx.stop_playback(), Transfer(self.step.queue, with_uri_headers(self.uri, in_uri),
                                                          on_refer)])

    def _entry(self, uri: str, result: str, code: int | None, sent_at: float | None = None) -> int:
        self.ctx.transfers.append(TransferAttempt(self.step.id, self.step.queue, uri, result, code, (), sent_at))
        return len(self.ctx.transfers) - 1

    def _update(self, **changes: object) -> None:
        assert self.index is not None
        self.ctx.transfers[self.index] = replace(self.ctx.transfers[self.index], **changes)  # type: ignore[arg-type]

    def on_digit(self, digit: str, now: float) -> Reply:
        return Reply()

    def on_transfer(self, event: TransferProgress, now: float) -> Reply:
        if self.index is None:
            return Reply()
        self._update(progress=(*self.ctx.transfers[self.index].progress, event.code))
        if not event.final or event.code < 200:
            return Reply()
        if event.code < 300:
            self.until = None
            self._update(result="ok", code=event.code)
            self.ctx.mark("transferred", now)
            return Reply(then=Done("ok", "transferred", (self.step.queue, self.shown_uri)))
        return self._failed(f"rejected_{event.code}", event.code, now)

    def on_timer(self, now: float) -> Reply:
        if self.until is not None and now >= self.until:
            return self._failed("no_notify", None, now)
        return Reply()

    def _failed(self, reason: str, code: int | None, now: float) -> Reply:
        """The current target failed: the next one, or the step's fallback."""
        self.until = None
        self._update(result=reason, code=code)
        self.index = None
        self.last_failure, self.last_code = reason, code
        queue = self.ctx.config.queues[self.step.queue]
        return self._next_target(queue, now)

    def _skip(self, reason: str) -> Reply:
        self._entry("", reason, None)
        self.last_failure = reason
        return self._give_up()

    def _give_up(self) -> Reply:
        self.until = None
        reason = self.last_failure
        if self.step.on_fail is None:
            return Reply(then=Done(reason, "transfer_failed"))
        return Reply(then=Next(reason, self.step.on_fail))

    def abandon(self, now: float, why: str) -> None:
        if self.index is not None:
            self._update(result=why)
        super().abandon(now, why)


def _with_params(target: str, queue: Queue, variables: Mapping[str, str]) -> str:
    """The target with the queue's URI parameters rendered from `variables` (empty ones left out)."""
    params = {name: render_uri_param(t, variables) for name, t in queue.uri_params.items()}
    return with_uri_params(target, {name: value for name, value in params.items() if value})
