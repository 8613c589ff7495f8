"""The call router: admits or refuses offered calls, drives one FlowSession per call, keeps its one timer.

Worker events come in through `on_event`; the session's commands go out to the worker, except `Fetch`,
which the HTTP client answers with an event fed back into the same session. Every call ends with exactly
one canonical `call.ended` log line carrying its `CallRecord` (the same object then goes to `on_record`:
the record store, the webhook). Each session transition runs with call_id, worker and trunk bound as
structlog context, so every line logged for a call (fetch tasks included) can be found by its call_id.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import structlog

from ivr.config.model import IvrConfig, Trunk
from ivr.flow import commands, events
from ivr.flow.session import CallInfo, FlowSession
from ivr.flow.targets import QueueCursors
from ivr.metrics import FINE_BUCKETS_MS, Metrics
from ivr.records.model import CallRecord

log = structlog.get_logger()

TRUNK_HEADER = "X-IVR-Trunk"
SKIPPED_TARGETS = frozenset({"empty", "invalid", "disallowed"})
"""Transfer results of a variable target that was never sent a REFER (ivr/flow/targets.py)."""
HANGUP_CONFIRM_S = 40.0
"""How long after HangUp the worker may take to report CallEnded (a BYE transaction times out after 32 s)."""


def bridge_slots(trunk: Trunk | None) -> int:
    """Worker call slots a call on `trunk` reserves: its own, plus the bridged leg when the trunk refuses REFER."""
    return 2 if trunk is not None and not trunk.refer else 1


class Fetcher(Protocol):
    async def fetch(self, cmd: commands.Fetch) -> events.FetchCompleted | events.FetchFailed: ...


class Speaker(Protocol):
    """Renders a flow's Speak into the worker's Play of files (ivr/tts/speaker.py)."""

    async def play_for(self, speak: commands.Speak) -> commands.Play: ...


Send = Callable[[str, str, commands.WorkerCommand], None]
RecordSink = Callable[[CallRecord, dict[str, object]], None]
"""A finished call's record and its JSON form (`CallRecord.as_dict`, built once per call for the log line)."""


@dataclass
class LiveCall:
    worker: str
    call_id: str
    session: FlowSession
    info: CallInfo
    offered_at: float
    timer: asyncio.TimerHandle | None = None
    armed_for: float | None = None
    awaiting_end: bool = False
    """The session hung up; the timer now bounds the wait for the worker's CallEnded."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    speaking: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    """Speak commands being rendered, by play_id: a StopPlayback or HangUp before they are sent cancels them."""
    slots: int = 1
    """pjsua call slots this call may hold on its worker: 2 on a trunk without REFER (a bridged leg)."""


class CallRouter:
    """Owns every live call of this controller."""

    def __init__(self, config: IvrConfig, send: Send, fetcher: Fetcher, metrics: Metrics, *,
                 front_hosts: frozenset[str] = frozenset(), clock: Callable[[], float] = time.time,
                 seed: int | None = None, speaker: Speaker | None = None) -> None:
        """`speaker`: text to speech of say steps; without it a Speak plays nothing (PlaybackFinished at once)."""
        self.draining = False
        self.speaker = speaker
        self.calls: dict[tuple[str, str], LiveCall] = {}
        self._send = send
        self._fetcher = fetcher
        self._metrics = metrics
        self._front_hosts = front_hosts
        self._clock = clock
        self.cursors = QueueCursors(seed=seed if seed is not None else random.SystemRandom().getrandbits(32))
        """Per-queue transfer counters shared by every call (round robin spans calls), for the server's life."""
        self.switches: Mapping[str, bool] = MappingProxyType(dict(config.switches))
        """Read-only view of the run-time switches passed to every session (the app sets the live one)."""
        self.on_record: RecordSink | None = None
        self.on_start: Callable[[CallInfo, str, float], None] | None = None
        """A call was admitted (info, flow, time): the records' live-call journal."""
        """Called with each finished call's record and its JSON form (after its log line); must not block."""
        self.reconfigure(config)

    def reconfigure(self, config: IvrConfig) -> None:
        """New calls use `config`; live calls keep the config their session started with."""
        self.config = config
        self._networks = [(ipaddress.ip_network(src, strict=False), t) for t in config.trunks for src in t.sources]

    # --- events from workers ---------------------------------------------------------------------

    def on_event(self, worker: str, call_id: str, event: events.WorkerEvent) -> None:
        if isinstance(event, events.CallOffered):
            self._offer(worker, call_id, event)
            return
        if isinstance(event, events.WorkerReady):
            return
        call = self.calls.get((worker, call_id))
        if call is None:
            if not isinstance(event, events.CallEnded):
                log.debug("call.event_for_unknown_call", worker=worker, call_id=call_id, type=type(event).__name__)
            return
        if isinstance(event, events.DigitReceived) and event.received_at:  # worker's receipt -> the engine
            self._metrics.observe("ivr_digit_delay_ms", (self._clock() - event.received_at) * 1000,
                                  FINE_BUCKETS_MS, method=event.method)
        self._feed(call, event)

    def on_worker_lost(self, worker: str) -> None:
        """The worker's link dropped: its calls are over, recorded as lost."""
        lost = [c for (w, _), c in self.calls.items() if w == worker]
        self._metrics.inc("ivr_worker_exits_total", worker=worker)
        for call in lost:
            self._feed(call, events.CallEnded(reason="worker_lost"))
        if lost:
            log.error("worker.calls_lost", worker=worker, calls=[c.call_id for c in lost])

    def hang_up_all(self, reason: str) -> None:
        for call in list(self.calls.values()):
            self._send(call.worker, call.call_id, commands.HangUp(reason=reason))

    # --- admission -------------------------------------------------------------------------------

    def _offer(self, worker: str, call_id: str, offer: events.CallOffered) -> None:
        self._metrics.inc("ivr_calls_offered_total")
        trunk = self._trunk_for(offer)
        flow = self.config.flow_for(offer.dialed)
        slots = bridge_slots(trunk)
        refusal = self._refusal(trunk, flow) or self._full(worker, slots)
        if refusal is not None:
            code, reason = refusal
            retry = self.config.sip.retry_after if code == 503 else 0
            self._send(worker, call_id, commands.Reject(code=code, reason=reason, retry_after=retry))
            self._metrics.inc("ivr_calls_rejected_total", code=str(code))
            log.warning("call.rejected", worker=worker, call_id=call_id, code=code, reason=reason,
                        source=offer.source, caller=offer.caller, dialed=offer.dialed,
                        trunk=trunk.name if trunk else None, sip_call_id=offer.sip_call_id)
            return
        assert trunk is not None and flow is not None  # _refusal says why not otherwise
        now = self._clock()
        info = CallInfo(call_id=call_id, caller=offer.caller, dialed=offer.dialed, trunk=trunk.name,
                        sip_call_id=offer.sip_call_id, worker=worker, uid=uuid.uuid4().hex,
                        node=self.config.node())
        session = FlowSession(self.config, flow, info, now, self.cursors, self.switches)
        call = LiveCall(worker=worker, call_id=call_id, session=session, info=info, offered_at=now, slots=slots)
        self.calls[(worker, call_id)] = call
        self._metrics.set("ivr_calls_active", len(self.calls))
        if self.on_start is not None:
            self.on_start(info, flow, now)
        self._run(call, lambda: call.session.start(now))

    def _refusal(self, trunk: Trunk | None, flow: str | None) -> tuple[int, str] | None:
        if self.draining:
            return 503, "Service Unavailable"
        if trunk is None:
            return 403, "Forbidden"
        if flow is None:
            return 404, "Not Found"
        return None

    def _full(self, worker: str, slots: int) -> tuple[int, str] | None:
        """503 when the worker cannot hold this call's worst case: a call on a trunk without REFER may bridge
        a second leg, so it reserves two of the worker's slots (the front then fails over to another worker)."""
        held = sum(c.slots for (w, _), c in self.calls.items() if w == worker)
        if held + slots > self.config.sip.calls_per_worker:
            return 503, "Service Unavailable"
        return None

    def _trunk_for(self, offer: events.CallOffered) -> Trunk | None:
        """The front names the trunk in a header; a direct INVITE is identified by its source address.
        The header is trusted only when the INVITE came from the front itself."""
        host = offer.source.rsplit(":", 1)[0].strip("[]")
        if host in self._front_hosts:
            named = next((v for k, v in offer.headers if k.lower() == TRUNK_HEADER.lower()), None)
            if named is not None:
                return next((t for t in self.config.trunks if t.name == named), None)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        return next((t for net, t in self._networks if address in net), None)

    # --- driving a session -------------------------------------------------------------------------

    def _feed(self, call: LiveCall, event: events.FlowEvent) -> None:
        if isinstance(event, events.CallConnected):
            self._metrics.observe("ivr_answer_latency_ms", (self._clock() - call.offered_at) * 1000)
        self._run(call, lambda: call.session.handle(event, self._clock()))

    def _run(self, call: LiveCall, step: Callable[[], list[commands.FlowCommand]]) -> None:
        """Run one session transition and carry out its commands. A bug in the engine ends this call (hung
        up, recorded) instead of escaping into the worker's reader and taking its other calls with it."""
        # bind + reset by token: bound_contextvars would also copy the whole context to save the old values
        # (~8 us against ~2.5 us per transition; bench/README.md "controller, session 17")
        tokens = structlog.contextvars.bind_contextvars(call_id=call.call_id, worker=call.worker,
                                                        trunk=call.info.trunk)
        try:
            try:
                cmds = step()
            except Exception:
                log.exception("call.internal_error")
                self._metrics.inc("ivr_internal_errors_total")
                self._send(call.worker, call.call_id, commands.HangUp(reason="internal_error"))
                self._finish(call, end_reason="internal_error")
                return
            self._execute(call, cmds)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    def _execute(self, call: LiveCall, cmds: list[commands.FlowCommand]) -> None:
        for cmd in cmds:
            if isinstance(cmd, commands.Fetch):
                task = asyncio.get_running_loop().create_task(self._fetch(call, cmd))
                call.tasks.add(task)
                task.add_done_callback(call.tasks.discard)
            elif isinstance(cmd, commands.Speak):
                self._speak(call, cmd)
            else:
                if isinstance(cmd, commands.StopPlayback | commands.HangUp):
                    self._silence(call, cmd)
                self._send(call.worker, call.call_id, cmd)
        if call.session.finished:
            self._finish(call)
        else:
            self._arm(call)

    async def _fetch(self, call: LiveCall, cmd: commands.Fetch) -> None:
        result = await self._fetcher.fetch(cmd)
        outcome = "ok" if isinstance(result, events.FetchCompleted) else result.reason
        self._metrics.observe("ivr_fetch_latency_ms", result.elapsed_ms, endpoint=cmd.endpoint)
        self._metrics.inc("ivr_fetch_total", endpoint=cmd.endpoint, outcome=outcome)
        if not call.session.finished:
            self._feed(call, result)

    def _speak(self, call: LiveCall, cmd: commands.Speak) -> None:
        """Render the speech off the event loop's critical path; the worker gets a Play of files when ready."""
        if self.speaker is None:
            log.error("tts.not_configured", call_id=call.call_id)
            self._send(call.worker, call.call_id, commands.Play(cmd.play_id, (), interruptible=cmd.interruptible))
            return
        task = asyncio.get_running_loop().create_task(self._render(call, cmd, self.speaker))
        call.speaking[cmd.play_id] = task
        call.tasks.add(task)
        task.add_done_callback(call.tasks.discard)

    async def _render(self, call: LiveCall, cmd: commands.Speak, speaker: Speaker) -> None:
        try:
            play = await speaker.play_for(cmd)
        finally:
            call.speaking.pop(cmd.play_id, None)
        if not call.session.finished:
            self._send(call.worker, call.call_id, play)

    def _silence(self, call: LiveCall, cmd: commands.StopPlayback | commands.HangUp) -> None:
        """A playback stopped (or the call hung up) before its speech was rendered: it is never sent."""
        ids = [cmd.play_id] if isinstance(cmd, commands.StopPlayback) else list(call.speaking)
        for play_id in ids:
            task = call.speaking.pop(play_id, None)
            if task is not None:
                task.cancel()

    def _arm(self, call: LiveCall) -> None:
        """One timer per call, for the session's deadline. A session without one has hung up and waits for the
        worker's CallEnded: that wait is bounded too, so a wedged worker cannot keep a call (or lose its record)."""
        deadline = call.session.deadline
        if deadline is None:
            if call.awaiting_end:
                return
            call.awaiting_end = True
            deadline = self._clock() + HANGUP_CONFIRM_S
        elif deadline == call.armed_for:
            return
        if call.timer is not None:
            call.timer.cancel()
        call.armed_for = deadline
        call.timer = asyncio.get_running_loop().call_later(max(0.0, deadline - self._clock()), self._on_timer, call)

    def _on_timer(self, call: LiveCall) -> None:
        call.timer = None
        call.armed_for = None
        if call.session.finished:
            return
        if call.session.deadline is None:
            log.error("call.hangup_unconfirmed", worker=call.worker, call_id=call.call_id, waited_s=HANGUP_CONFIRM_S)
            self._finish(call, end_reason="hangup_unconfirmed")
            return
        self._run(call, lambda: call.session.handle_timer(self._clock()))

    def _finish(self, call: LiveCall, end_reason: str | None = None) -> None:
        if self.calls.pop((call.worker, call.call_id), None) is None:
            return
        if call.timer is not None:
            call.timer.cancel()
        for task in call.tasks:
            task.cancel()
        if end_reason is not None:
            call.session.abort(end_reason, self._clock())
        self._metrics.set("ivr_calls_active", len(self.calls))
        try:
            record = call.session.record()
        except Exception:  # a bug: the call is over all the same; never let it escape into the worker's reader
            log.exception("call.record_failed", worker=call.worker, call_id=call.call_id)
            self._metrics.inc("ivr_internal_errors_total")
            return
        self._metrics.inc("ivr_calls_total", outcome=record.outcome.kind, end_reason=str(record.end_reason))
        self._transfer_attempts(call, record)
        data = record.as_dict()
        log.info("call.ended", **data)
        if self.on_record is not None:
            self.on_record(record, data)

    def _transfer_attempts(self, call: LiveCall, record: CallRecord) -> None:
        """Log the transfer targets that were never tried (a variable target that was empty, not a SIP URI, or
        outside the queue's allow-list); ivr/records/stats.py counts every attempt in /metrics."""
        for attempt in record.transfers:
            if attempt.result in SKIPPED_TARGETS:
                log.warning("transfer.target_skipped", worker=call.worker, call_id=call.call_id, queue=attempt.queue,
                            step=attempt.step, uri=attempt.uri, reason=attempt.result)

    def snapshot(self) -> list[dict[str, object]]:
        """The live calls, for /calls (the path only: digits and variables stay in the record, masked)."""
        now = self._clock()
        return [{"worker": c.worker, "call_id": c.call_id, "trunk": c.info.trunk, "caller": c.info.caller,
                 "dialed": c.info.dialed, "age_s": round(now - c.offered_at, 1), "flow": c.session.current_flow,
                 "step": c.session.current_step,
                 "path": list(c.session.path)} for c in self.calls.values()]
