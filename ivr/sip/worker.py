"""SIP worker process main: one pjsua2 endpoint, <= 4 calls, driven by the controller over a socket.

Theory of operation. The main thread owns pjsua2 and blocks in `libHandleEvents(timeout)` (GIL
released). Commands arrive on a plain reader thread (`control.ControlLink`) that queues them and wakes
the poll with a keep-alive datagram to our own SIP port; player end-of-file and RFC 4733 digits (pjmedia's
media thread, which receives all RTP: ivr/sip/stack.py) come the same way. After each poll the loop
drains the queue, then fires its own deadlines (answer timeout, maximum call duration, player release).
Teardown: on control-socket EOF or SIGTERM.

    python -m ivr.sip.worker --name w000 --control-fd N --sip-host 127.0.0.1 --sip-port 5100 \
        --rtp-port 20000 --rtp-port-count 40 --media-address 127.0.0.1 --prompts DIR --max-calls 4
"""

from __future__ import annotations

import argparse
import gc
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pjsua2 as pj
import structlog

from ivr import logs
from ivr.flow import commands, events
from ivr.prompts import WavLengths
from ivr.sip import control, sockfilter
from ivr.sip.bridge import Bridges
from ivr.sip.call import IvrCall
from ivr.sip.deadlines import Deadlines, Due
from ivr.sip.recorder import POLL_S
from ivr.sip.sipmsg import call_offered
from ivr.sip.srtp import SrtpPolicy
from ivr.sip.stack import Stack, StackConfig

log = structlog.get_logger()

PLAYER_GRACE_S = 1.2
"""A stopped player is kept this long before release (destroying one near its EOF segfaults)."""
MAX_BLOCK_MS = 1000
"""Longest single wait in pjsip's poll when no deadline of ours is nearer."""
TEARDOWN_WAIT_S = 3.0
RETRY_AFTER_S = 5


def boot_id(epoch_ns: int) -> str:
    """This process's start, epoch milliseconds in base 36 ("mi6x0k3z"): with the worker name and a counter
    it makes call ids unique across restarts (a worker restarted by the supervisor starts its counter at 1
    again, but never within the same millisecond as its predecessor: restarts are backed off)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    value, out = epoch_ns // 1_000_000, ""
    while value:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
    return out or "0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The worker's command line (the controller builds exactly this)."""
    p = argparse.ArgumentParser(prog="python -m ivr.sip.worker", description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="worker name, prefix of its call ids (w000)")
    p.add_argument("--control-fd", type=int, required=True, help="inherited stream socket to the controller")
    p.add_argument("--sip-host", default="127.0.0.1", help="address the SIP transports bind")
    p.add_argument("--sip-port", type=int, required=True, help="SIP port (UDP and TCP)")
    p.add_argument("--rtp-port", type=int, required=True, help="first RTP port")
    p.add_argument("--rtp-port-count", type=int, default=40, help="number of RTP ports from --rtp-port")
    p.add_argument("--media-address", default="127.0.0.1", help="RTP address (bound and put in SDP)")
    p.add_argument("--prompts", type=Path, required=True, help="directory of <name>.wav prompts")
    p.add_argument("--recordings", type=Path, default=Path("recordings"),
                   help="directory for the record step's WAVs (<call id>-<recording id>.wav)")
    p.add_argument("--max-calls", type=int, default=4, help="concurrent calls (the wheel allows 4)")
    p.add_argument("--accept-from", default="",
                   help="comma-separated IPv4 addresses of the front: SIP from any other source is dropped "
                   "in the kernel (empty: no filter, single-worker mode); 0.0.0.0 = our own route source")
    p.add_argument("--public-host", default="", help="SIP address to advertise (Via/Contact)")
    p.add_argument("--outbound-proxy", default="", help="route of the worker's own calls (bridged legs): the "
                   "front, e.g. 'sip:127.0.0.1:5060;lr'; empty: straight to the target")
    p.add_argument("--srtp-trusted", action="append", default=[], metavar="HOST",
                   help="front address whose X-IVR-Srtp header picks the call's SRTP mode (repeat)")
    p.add_argument("--srtp-source", action="append", default=[], metavar="CIDR=MODE",
                   help="SRTP mode (off/optional/mandatory) of INVITEs from a trunk's source (repeat)")
    p.add_argument("--log-level", default="info", type=str.lower,
                   choices=["debug", "info", "warning", "error", "critical"])
    p.add_argument("--answer-timeout", type=float, default=5.0,
                   help="seconds to wait for Answer/Reject before replying 503 + Retry-After")
    p.add_argument("--max-call-duration", type=float, default=4 * 3600.0,
                   help="seconds after which a call is hung up whatever the controller says")
    return p.parse_args(argv)


class Worker:
    """The loop thread's state: the stack, the calls (only strong references), deadlines, players."""

    def __init__(self, args: argparse.Namespace, link: control.ControlLink) -> None:
        self.args = args
        self.prompts: Path = args.prompts
        self.recordings: Path = args.recordings
        self.recordings.mkdir(parents=True, exist_ok=True)
        self.wav_lengths = WavLengths()
        self.link = link
        self.loop_thread = threading.get_ident()  # built on the thread that runs `run`
        self.calls: dict[str, IvrCall] = {}
        self._deadlines = Deadlines()
        self._retired: deque[tuple[float, Any]] = deque()
        self._counter = 0
        self._boot = boot_id(time.time_ns())
        self.stopping = False
        self.bridges = Bridges(self)
        self.stack = Stack(
            StackConfig(
                name=args.name, sip_host=args.sip_host, sip_port=args.sip_port, rtp_port=args.rtp_port,
                rtp_port_count=args.rtp_port_count, media_address=args.media_address,
                max_calls=args.max_calls, public_host=args.public_host, outbound_proxy=args.outbound_proxy,
                srtp=SrtpPolicy.from_args(args.srtp_trusted, args.srtp_source),
            ),
            self._on_incoming,
        )
        if args.accept_from:
            fronts = tuple(h for h in args.accept_from.split(",") if h)
            sockfilter.restrict_port(args.sip_port, sockfilter.allowed_sources(fronts, args.sip_host, args.sip_port))

    # --- CallHost ------------------------------------------------------------------------------------

    def emit(self, call_id: str, event: events.WorkerEvent) -> None:
        self.link.send(call_id, event)

    def post_eof(self, call_id: str, token: int) -> None:
        self.link.post(control.PlayerEof(call_id, token))

    def post_digit(self, call_id: str, event: events.DigitReceived) -> None:
        self.link.post(control.Digit(call_id, event))

    def watch_play(self, call_id: str, token: int, seconds: float) -> None:
        self._deadlines.arm(call_id, "play", time.monotonic() + seconds, token)

    def retire(self, player: Any) -> None:
        self._retired.append((time.monotonic() + PLAYER_GRACE_S, player))

    def watch_recording(self, call_id: str) -> None:
        self._deadlines.arm(call_id, "record", time.monotonic() + POLL_S)

    def free_slots(self) -> int:
        """pjsua call slots left: incoming calls and bridged legs each hold one."""
        return self.stack.max_calls - len(self.calls) - len(self.bridges)

    def account(self) -> Any:
        return self.stack.accounts["off"]  # a bridged leg offers plain RTP (the agents' side is the PBX's LAN)

    def ended(self, call_id: str) -> None:
        self.bridges.caller_gone(call_id)
        self.calls.pop(call_id, None)
        self._deadlines.cancel_call(call_id)

    # --- incoming calls ------------------------------------------------------------------------------

    def _on_incoming(self, account: Any, prm: Any) -> None:
        self._counter += 1
        call_id = f"{self.args.name}-{self._boot}-{self._counter}"
        call = IvrCall(account, prm.callId, call_id, self)
        self.calls[call_id] = call
        now = time.monotonic()
        self._deadlines.arm(call_id, "answer", now + self.args.answer_timeout)
        self._deadlines.arm(call_id, "end", now + self.args.max_call_duration)
        try:
            offer = call_offered(str(prm.rdata.srcAddress), str(prm.rdata.wholeMsg))
        except Exception:
            log.exception("sip.call.parse_failed", call=call_id)
            offer = events.CallOffered(source="", caller="", dialed="", sip_call_id="")
        if self.stopping:
            call.reject(503, retry_after=RETRY_AFTER_S, why="worker_stopping")
            return
        log.debug("sip.call.offered", call=call_id, source=offer.source, caller=offer.caller,
                 dialed=offer.dialed, sip_call_id=offer.sip_call_id, srtp=account.srtp)
        self.emit(call_id, offer)

    # --- commands ------------------------------------------------------------------------------------

    def handle(self, work: control.Work) -> None:
        match work:
            case control.ControlClosed():
                log.info("sip.worker.controller_gone")
                self.stopping = True
            case control.PlayerEof(call_id, token):
                if (call := self.calls.get(call_id)) is not None:
                    call.player_eof(token)
            case control.Digit(call_id, event):
                if (call := self.calls.get(call_id)) is not None:
                    call.digit(event)
            case control.Command(call_id, command):
                call = self.calls.get(call_id)
                if call is None:
                    log.debug("sip.command.unknown_call", call=call_id, type=type(command).__name__)
                    return
                try:
                    self._execute(call, command)
                except pj.Error as exc:
                    log.warning("sip.command.failed", call=call_id, type=type(command).__name__,
                                error=exc.info())

    def _execute(self, call: IvrCall, command: commands.WorkerCommand) -> None:
        log.debug("sip.command", call=call.call_id, type=type(command).__name__)
        match command:
            case commands.Answer():
                self._deadlines.cancel(call.call_id, "answer")
                call.answer_call()
            case commands.Reject(code, reason, retry_after):
                self._deadlines.cancel(call.call_id, "answer")
                call.reject(code, reason, retry_after)
            case commands.Play():
                call.play(command)
            case commands.StopPlayback(play_id):
                call.stop_playback(play_id)
            case commands.Transfer(queue, uri, headers):
                # Not the URI: its parameters may carry a caller's secret (the record shows it masked).
                log.debug("sip.call.transfer", call=call.call_id, queue=queue)
                call.transfer(uri, headers)
            case commands.Bridge():
                self.bridges.start(call, command, time.monotonic())
            case commands.HangUp(reason, code):
                log.debug("sip.call.hangup", call=call.call_id, reason=reason, code=code)
                self._deadlines.cancel(call.call_id, "answer")
                call.hang_up(code)
            case commands.StartRecording():
                call.start_recording(command)
            case commands.StopRecording(recording_id):
                call.stop_recording(recording_id)
            case commands.PlayRecording():
                call.play_recording(command)

    # --- the loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        self.emit("", events.WorkerReady(worker=self.args.name, pid=os.getpid(), sip_port=self.args.sip_port,
                                         max_calls=self.stack.max_calls))
        log.info("sip.worker.ready", worker=self.args.name, sip_port=self.args.sip_port)
        while not self.stopping:
            self.stack.pump(self._block_ms())
            self._drain()
            self._fire_deadlines(time.monotonic())

    def _block_ms(self) -> int:
        first = self._deadlines.next_at()
        if self._retired and (first is None or self._retired[0][0] < first):
            first = self._retired[0][0]
        if self.bridges:
            first = min([t for t in (first, *self.bridges.deadlines()) if t is not None], default=None)
        if first is None:
            return MAX_BLOCK_MS
        return int(min(MAX_BLOCK_MS, max(0.0, first - time.monotonic()) * 1000) + 1)

    def _drain(self) -> None:
        while True:
            try:
                work = self.link.work.get_nowait()
            except queue.Empty:
                return
            self.handle(work)

    def _fire_deadlines(self, now: float) -> None:
        for due in self._deadlines.due(now):
            if (call := self.calls.get(due.call)) is not None:
                try:
                    self._fire(call, due, now)
                except pj.Error as exc:
                    log.warning("sip.call.action_failed", call=due.call, kind=due.kind, error=exc.info())
        if self.bridges:
            self.bridges.fire(now)
        while self._retired and self._retired[0][0] <= now:
            self._retired.popleft()

    def _fire(self, call: IvrCall, due: Due, now: float) -> None:
        match due.kind:
            case "answer":
                log.warning("sip.call.answer_timeout", call=due.call)
                call.reject(503, "Service Unavailable", RETRY_AFTER_S, "answer_timeout")
            case "end":
                log.warning("sip.call.max_duration", call=due.call)
                call.hang_up(480)
            case "play":
                call.play_overdue(due.token)
            case "record":
                if call.poll_recording(now):
                    self._deadlines.arm(due.call, "record", now + POLL_S)

    # --- teardown ------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Hang up every call, wait for DISCONNECTED (bounded), then release players, calls, account, lib."""
        self.stopping = True
        self._hang_up_all()
        self._pump_until(lambda: not self.calls and not len(self.bridges), TEARDOWN_WAIT_S)
        self._drain()
        last = max((at for at, _ in self._retired), default=0.0)
        self._pump_until(lambda: time.monotonic() >= last, PLAYER_GRACE_S + 0.5)
        self._retired.clear()
        if self.calls:
            log.warning("sip.worker.calls_left", calls=list(self.calls))
        self.calls.clear()
        self._deadlines.clear()
        gc.collect()
        self.stack.close()
        log.info("sip.worker.stopped")

    def _hang_up_all(self) -> None:
        # A helper, not a loop in shutdown(): a loop variable would keep the last Call alive past
        # libDestroy, and its destructor then aborts the process.
        if not self.calls:
            return
        log.info("sip.worker.hangup_all", calls=len(self.calls))
        for call in self.calls.values():
            call.end_reason = call.end_reason or "worker_stopping"
        self.stack.hangup_all()

    def _pump_until(self, done: Callable[[], bool], limit_s: float) -> None:
        end = time.monotonic() + limit_s
        while not done() and time.monotonic() < end:
            self.stack.pump(50)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure(args.log_level)
    structlog.contextvars.bind_contextvars(worker=args.name)
    waker = control.Waker(args.sip_host, args.sip_port)
    link = control.ControlLink(args.control_fd, waker)
    try:
        worker = Worker(args, link)
    except pj.Error as exc:
        log.error("sip.worker.start_failed", error=exc.info())
        return 1
    except RuntimeError as exc:
        log.error("sip.worker.start_failed", error=str(exc))
        return 1

    def stop(signum: int, frame: Any) -> None:
        log.info("sip.worker.signal", signal=signum)
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.set_wakeup_fd(waker.fileno(), warn_on_full_buffer=False)
    link.start()
    try:
        worker.run()
    finally:
        worker.shutdown()
        signal.set_wakeup_fd(-1)
        link.close()
        waker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
