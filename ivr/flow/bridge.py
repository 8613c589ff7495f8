"""Bridged transfer: for a trunk that refuses REFER, the worker calls the queue's target and bridges the legs.

The activity is the transfer step's sibling: the same targets in the same order (a variable target inside the
allow-list first, then the queue's strategy), but each attempt is a `Bridge` (the worker places a call with the
queue's headers on its INVITE) instead of a REFER. It waits for the leg's final answer (`BridgeProgress`);
busy, no answer (the worker's ring timeout) or any other failure moves on to the next target, and when none is
left the step takes `on_fail`, like a refused REFER. An answered leg stays bridged until the call ends (the
worker ends both legs when either side hangs up). Each attempt is a `TransferAttempt` (result "bridged",
"busy", "no_answer", ...) and a `Leg` of the call's record: target, its SIP Call-ID, answer time (epoch
seconds), duration and end reason.
"""

from __future__ import annotations

from dataclasses import replace

from ivr.config.model import Queue
from ivr.config.steps import TransferStep
from ivr.flow.commands import Bridge
from ivr.flow.context import CallContext, Reply
from ivr.flow.events import BridgeEnded, BridgeProgress
from ivr.flow.template import render_header, render_uri_param, with_uri_params
from ivr.flow.transfer import TransferActivity
from ivr.records.model import Leg, Outcome

GUARD_S = 10.0
"""Past the ring timeout, how long the step waits for the worker's final answer before failing anyway."""
_BUSY = frozenset({486, 600})
_NO_ANSWER = frozenset({408, 480, 487})


def failure_result(code: int) -> str:
    """The path/record result of a failed leg: busy, no_answer, or rejected_<code>."""
    if code in _BUSY:
        return "busy"
    if code in _NO_ANSWER:
        return "no_answer"
    return f"rejected_{code}"


class BridgeActivity(TransferActivity):
    """Ring the queue's targets in turn from the worker; once one answers, stay bridged until the call ends."""

    def __init__(self, step: TransferStep, ctx: CallContext) -> None:
        super().__init__(step, ctx)
        self.bridged = False
        self.leg_index = -1
        """The current attempt's place in ctx.legs (entries are replaced, never mutated)."""

    @property
    def outcome(self) -> Outcome | None:
        return Outcome("transfer", "bridged", self.step.queue, self.uri) if self.bridged else None

    @property
    def leg(self) -> Leg:
        return self.ctx.legs[self.leg_index]

    def _set_leg(self, **changes: object) -> None:
        self.ctx.legs[self.leg_index] = replace(self.leg, **changes)  # type: ignore[arg-type]

    def start(self, now: float) -> Reply:
        queue = self.ctx.config.queues.get(self.step.queue)
        if queue is None:
            return self._skip("unknown_queue")
        rendered = ((name, render_header(t, self.ctx.variables)) for name, t in queue.headers.items())
        self.headers = tuple((name, value) for name, value in rendered if value)
        self.pending = self._candidates(queue)
        return self._next_target(queue, now)

    def _next_target(self, queue: Queue, now: float) -> Reply:
        if not self.pending:
            return self._give_up()
        params = {name: render_uri_param(t, self.ctx.variables) for name, t in queue.uri_params.items()}
        self.uri = with_uri_params(self.pending.pop(0), {name: value for name, value in params.items() if value})
        self.index = self._entry(self.uri, "pending", None, now)
        self.leg_index = len(self.ctx.legs)
        self.ctx.legs.append(Leg(self.uri))
        self.until = now + self.step.ring_timeout + GUARD_S
        self.ctx.mark("first_transfer", now)
        self.ctx.marks["transfer_sent"] = now
        bridge = Bridge(self.step.queue, self.uri, self.headers, self.step.ring_timeout)
        return Reply([*self.ctx.stop_playback(), bridge])

    def on_bridge(self, event: BridgeProgress | BridgeEnded, now: float) -> Reply:
        if self.index is None:
            return Reply()
        if isinstance(event, BridgeEnded):
            self._close(event.reason, now)
            return Reply()
        self._update(progress=(*self.ctx.transfers[self.index].progress, event.code))
        if self.bridged or not event.final or event.code < 200:
            return Reply()
        if event.code >= 300:
            result = failure_result(event.code)
            self._set_leg(sip_call_id=event.sip_call_id, end_reason=result)
            return self._failed(result, event.code, now)
        self.bridged = True
        self.until = None
        self._update(result="bridged", code=event.code)
        self._set_leg(sip_call_id=event.sip_call_id, answered_at=now)
        self.ctx.mark("transferred", now)
        return Reply()

    def on_timer(self, now: float) -> Reply:
        if self.until is not None and now >= self.until and self.index is not None:
            self._set_leg(end_reason="no_answer")
            return self._failed("no_answer", None, now)
        return Reply()

    def abandon(self, now: float, why: str) -> None:
        if self.bridged:
            self._close("caller_hangup" if why == "abandoned" else why, now)
            self.ctx.note(self.step_id, "bridged")
            return
        if self.index is not None and self.leg_index >= 0:
            self._set_leg(end_reason=why)
        super().abandon(now, why)

    def _close(self, reason: str, now: float) -> None:
        leg = self.leg
        if leg.end_reason is not None or leg.answered_at is None:
            return
        self._set_leg(end_reason=reason, duration_ms=round((now - leg.answered_at) * 1000, 1))
