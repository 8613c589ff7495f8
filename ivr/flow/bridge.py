"""Bridged transfer: for a trunk that refuses REFER, the worker calls the queue's target and bridges the legs.

The activity sends `Bridge`, waits for the outgoing leg's final answer (`BridgeProgress`), and then stays
until the call ends: the worker ends both legs when either side hangs up. Busy, no answer (the worker's
ring timeout) and any other failure go to the step's `on_fail`, exactly like a refused REFER. The transfer
entry of the call's record carries the second leg (`leg`): target, its SIP Call-ID, answer and end times
(epoch seconds), duration and end reason.
"""

from __future__ import annotations

from ivr.config.model import Queue
from ivr.config.steps import TransferStep
from ivr.flow.commands import Bridge
from ivr.flow.context import Activity, CallContext, Done, Next, Reply
from ivr.flow.events import BridgeEnded, BridgeProgress
from ivr.flow.template import render_header, render_uri_param, with_uri_params

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
        self.leg: dict[str, object] = {"target": "", "sip_call_id": "", "answered_at": None, "ended_at": None,
                                       "duration_s": None, "end_reason": None, "code": None}
        self.entry: dict[str, object] = {"step": step.id, "queue": step.queue, "uri": "", "mode": "bridge",
                                         "result": "pending", "code": None, "progress": [], "leg": self.leg}

    @property
    def deadline(self) -> float | None:
        return self.until

    @property
    def outcome(self) -> dict[str, object] | None:
        if not self.bridged:
            return None
        return {"transfer": {"queue": self.step.queue, "uri": self.uri, "mode": "bridge"}}

    def start(self, now: float) -> Reply:
        self.ctx.transfers.append(self.entry)
        queue = self.ctx.config.queues.get(self.step.queue)
        if queue is None:
            return self._fail("unknown_queue", None)
        self.uri, headers = queue_target(queue, self.ctx.variables)
        self.entry["uri"] = self.leg["target"] = self.uri
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
        progress = self.entry["progress"]
        assert isinstance(progress, list)
        progress.append(event.code)
        if self.bridged or not event.final or event.code < 200:
            return Reply()
        if event.code >= 300:
            self.leg.update(code=event.code, sip_call_id=event.sip_call_id, end_reason=failure_result(event.code))
            return self._fail(failure_result(event.code), event.code)
        self.bridged = True
        self.until = None
        self.entry.update(result="bridged", code=event.code)
        self.leg.update(code=event.code, sip_call_id=event.sip_call_id, answered_at=now)
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
        self.entry["result"] = why
        super().abandon(now, why)

    def _close(self, reason: str, now: float) -> None:
        if self.leg["ended_at"] is not None:
            return
        answered = self.leg["answered_at"]
        self.leg.update(ended_at=now, end_reason=reason)
        if isinstance(answered, int | float):
            self.leg["duration_s"] = round(now - answered, 3)

    def _fail(self, reason: str, code: int | None) -> Reply:
        self.until = None
        self.entry.update(result=reason, code=code)
        if self.step.on_fail is None:
            return Reply(then=Done(reason, "transfer_failed"))
        return Reply(then=Next(reason, self.step.on_fail))
