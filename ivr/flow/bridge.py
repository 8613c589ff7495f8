"""Bridged transfer: for a trunk that refuses REFER, the worker calls the queue's target and bridges the legs.

The activity sends `Bridge`, waits for the outgoing leg's final answer (`BridgeProgress`), and then stays
until the call ends: the worker ends both legs when either side hangs up. Busy, no answer (the worker's
ring timeout) and any other failure go to the step's `on_fail`, exactly like a refused REFER. Each attempt is
a `TransferAttempt` (result "bridged", "busy", "no_answer", ...) and a `Leg` of the call's record: target, its
SIP Call-ID, answer time (epoch seconds), duration and end reason.
"""

from __future__ import annotations

from dataclasses import replace

from ivr.config.model import Queue
from ivr.config.steps import TransferStep
from ivr.flow.commands import Bridge
from ivr.flow.context import Activity, CallContext, Done, Next, Reply
from ivr.flow.events import BridgeEnded, BridgeProgress
from ivr.flow.template import render_header, render_uri_param, with_uri_params
from ivr.records.model import Leg, Outcome, TransferAttempt

GUARD_S = 10.0
"""Past the ring timeout, how long the step waits for the worker's final answer before failing anyway."""
_BUSY = frozenset({486, 600})
_NO_ANSWER = frozenset({408, 480, 487})


def queue_target(queue: Queue, variables: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The queue's URI with its rendered parameters, and its rendered headers (empty values left out)."""
    # Seam for the multi-target queues: the chosen target's URI replaces `queue.uri` here.
    params = {name: render_uri_param(t, variables) for name, t in queue.uri_params.items()}
    uri = with_uri_params(queue.uri, {name: value for name, value in params.items() if value})
    rendered = ((name, render_header(t, variables)) for name, t in queue.headers.items())
    return uri, tuple((name, value) for name, value in rendered if value)


def failure_result(code: int) -> str:
    """The path/record result of a failed leg: busy, no_answer, or rejected_<code>."""
    if code in _BUSY:
        return "busy"
    if code in _NO_ANSWER:
        return "no_answer"
    return f"rejected_{code}"


class BridgeActivity(Activity):
    """Ring the queue's target from the worker; once answered, stay bridged until the call ends."""

    def __init__(self, step: TransferStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx)
        self.step = step
        self.uri = ""
        self.until: float | None = None
        self.bridged = False
        self.index = -1
        """This attempt's place in ctx.transfers; its leg is ctx.legs[self.leg_index] (entries are replaced)."""
        self.leg_index = -1

    @property
    def deadline(self) -> float | None:
        return self.until

    @property
    def outcome(self) -> Outcome | None:
        return Outcome("transfer", "bridged", self.step.queue, self.uri) if self.bridged else None

    @property
    def entry(self) -> TransferAttempt:
        return self.ctx.transfers[self.index]

    @property
    def leg(self) -> Leg:
        return self.ctx.legs[self.leg_index]

    def start(self, now: float) -> Reply:
        self.index = len(self.ctx.transfers)
        self.ctx.transfers.append(TransferAttempt(self.step.id, self.step.queue, "", "pending"))
        queue = self.ctx.config.queues.get(self.step.queue)
        if queue is None:
            return self._fail("unknown_queue", None)
        self.uri, headers = queue_target(queue, self.ctx.variables)
        self.ctx.transfers[self.index] = replace(self.entry, uri=self.uri, sent_at=now)
        self.leg_index = len(self.ctx.legs)
        self.ctx.legs.append(Leg(self.uri))
        self.until = now + self.step.ring_timeout + GUARD_S
        self.ctx.mark("first_transfer", now)
        self.ctx.marks["transfer_sent"] = now
        bridge = Bridge(self.step.queue, self.uri, headers, self.step.ring_timeout)
        return Reply([*self.ctx.stop_playback(), bridge])

    def on_digit(self, digit: str, now: float) -> Reply:
        return Reply()

    def on_bridge(self, event: BridgeProgress | BridgeEnded, now: float) -> Reply:
        if isinstance(event, BridgeEnded):
            self._close(event.reason, now)
            return Reply()
        self.ctx.transfers[self.index] = replace(self.entry, progress=(*self.entry.progress, event.code))
        if self.bridged or not event.final or event.code < 200:
            return Reply()
        if event.code >= 300:
            result = failure_result(event.code)
            self.ctx.legs[self.leg_index] = replace(self.leg, sip_call_id=event.sip_call_id, end_reason=result)
            return self._fail(result, event.code)
        self.bridged = True
        self.until = None
        self.ctx.transfers[self.index] = replace(self.entry, result="bridged", code=event.code)
        self.ctx.legs[self.leg_index] = replace(self.leg, sip_call_id=event.sip_call_id, answered_at=now)
        self.ctx.mark("transferred", now)
        return Reply()

    def on_timer(self, now: float) -> Reply:
        if self.until is not None and now >= self.until:
            return self._fail("no_answer", None)
        return Reply()

    def abandon(self, now: float, why: str) -> None:
        if self.bridged:
            self._close("caller_hangup" if why == "abandoned" else why, now)
            self.ctx.note(self.step_id, "bridged")
            return
        if self.index >= 0:
            self.ctx.transfers[self.index] = replace(self.entry, result=why)
        if self.leg_index >= 0:
            self.ctx.legs[self.leg_index] = replace(self.leg, end_reason=why)
        super().abandon(now, why)

    def _close(self, reason: str, now: float) -> None:
        leg = self.leg
        if leg.end_reason is not None or leg.answered_at is None:
            return
        duration = round((now - leg.answered_at) * 1000, 1)
        self.ctx.legs[self.leg_index] = replace(leg, end_reason=reason, duration_ms=duration)

    def _fail(self, reason: str, code: int | None) -> Reply:
        self.until = None
        self.ctx.transfers[self.index] = replace(self.entry, result=reason, code=code)
        if self.step.on_fail is None:
            return Reply(then=Done(reason, "transfer_failed"))
        return Reply(then=Next(reason, self.step.on_fail))
