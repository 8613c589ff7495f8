"""Worker supervision: spawn the SIP worker processes, speak the wire protocol, restart them with back-off.

Each worker is a process running `python -m ivr.sip.worker <argv>`, forked from the workers' zygote
(`ivr/sip/zygote.py`: the worker's code imported once, shared by every worker), holding one end of a
socketpair; the other end is a protocol on the controller's loop (`WorkerLink`) that decodes and dispatches
each line as it arrives. A worker's link dropping (EOF, crash, SIGKILL) is reported through
`on_lost(worker)` so the calls it held are recorded as lost, and the worker is started again.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ivr.config.model import SipConfig, Trunk
from ivr.flow import events
from ivr.sip import wire
from ivr.zygote_link import Zygote, ZygoteChild

log = structlog.get_logger()

EventSink = Callable[[str, str, events.WorkerEvent], None]
"""(worker name, call id, event)."""


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Where one worker listens; the same numbering as the front's dispatcher list."""

    name: str
    sip_host: str
    sip_port: int
    rtp_port: int
    rtp_port_count: int
    accept_from: tuple[str, ...] = ()
    """Behind a front: the only source addresses whose SIP reaches the worker (ivr/sip/sockfilter.py)."""


def worker_specs(sip: SipConfig, single: bool, front_hosts: tuple[str, ...] = ()) -> list[WorkerSpec]:
    """One spec per worker; in single-worker mode the worker takes the public address itself. Behind a front
    a worker accepts SIP only from `front_hosts` (the front's addresses)."""
    specs = []
    for i in range(sip.workers):
        host, port = (sip.listen_host, sip.listen_port) if single else (sip.worker_host, sip.worker_base_port + i)
        specs.append(WorkerSpec(name=f"w{i:03d}", sip_host=host, sip_port=port,
                                rtp_port=sip.rtp_port_start + i * sip.rtp_ports_per_worker,
                                rtp_port_count=sip.rtp_ports_per_worker,
                                accept_from=() if single else front_hosts))
    return specs


def srtp_args(trunks: tuple[Trunk, ...], front_hosts: frozenset[str]) -> tuple[str, ...]:
    """The worker options of per-trunk SRTP: the front addresses whose X-IVR-Srtp header counts and, for a
    worker on the public address (no front), each SRTP trunk's sources."""
    args: list[str] = []
    for host in sorted(front_hosts):
        args += ["--srtp-trusted", host]
    for trunk in trunks:
        if trunk.srtp != "off" and not front_hosts:
            args += [arg for src in trunk.sources for arg in ("--srtp-source", f"{src}={trunk.srtp}")]
    return tuple(args)


MAX_LINE = 1 << 20
"""Bytes without a newline after which a worker's link is cut (a worker's longest real line is a few KB)."""


class WorkerLink(asyncio.Protocol):
    """The controller's end of one worker's socketpair: every complete line goes to `on_line` from the loop's
    read callback. No stream reader: a line costs no task wake-up, future or readline call (bench/README.md,
    bench/link_cost.py). `closed` is resolved when the link drops (EOF, reset, or a runaway line)."""

    def __init__(self, name: str, on_line: Callable[[bytes], None], closed: asyncio.Future[None]) -> None:
        self._name = name
        self._on_line = on_line
        self._closed = closed
        self._partial = b""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._partial:
            data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            self._on_line(line)
        if len(self._partial) > MAX_LINE and self._transport is not None:
            log.error("worker.line_too_long", worker=self._name, bytes=len(self._partial))
            self._partial = b""
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


@dataclass
class Worker:
    spec: WorkerSpec
    process: ZygoteChild | None = None
    writer: asyncio.Transport | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pid: int = 0
    restarts: int = 0


class WorkerPool:
    """Starts, feeds and restarts the workers. Commands to a worker that is down are dropped (its calls are
    already recorded as lost)."""

    def __init__(self, specs: list[WorkerSpec], *, prompts_dir: str, sip: SipConfig,
                 on_event: EventSink, on_lost: Callable[[str], None], log_level: str = "info",
                 extra_args: tuple[str, ...] = ()) -> None:
        self.workers = {spec.name: Worker(spec) for spec in specs}
        self._extra_args = extra_args
        self._prompts_dir = prompts_dir
        self._sip = sip
        self._on_event = on_event
        self._on_lost = on_lost
        self._log_level = log_level
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._zygote = Zygote()

    async def start(self, timeout: float = 20.0) -> None:
        """Start every worker and wait until each has said WorkerReady."""
        self._tasks = [asyncio.create_task(self._supervise(w), name=f"worker-{n}") for n, w in self.workers.items()]
        waits = [w.ready.wait() for w in self.workers.values()]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            missing = [n for n, w in self.workers.items() if not w.ready.is_set()]
            raise RuntimeError(f"SIP workers not ready after {timeout:.0f}s: {', '.join(missing)}") from None

    def send(self, worker: str, call: str, command: wire.Message) -> None:
        w = self.workers.get(worker)
        if w is None or w.writer is None or w.writer.is_closing():
            log.warning("worker.command_dropped", worker=worker, call_id=call, command=type(command).__name__)
            return
        w.writer.write(wire.encode(call, command))

    def ready_count(self) -> int:
        return sum(1 for w in self.workers.values() if w.ready.is_set())

    async def stop(self, timeout: float = 10.0) -> None:
        """Close every link (a worker hangs up its calls and exits on EOF), then wait; kill after `timeout`."""
        self._stopping = True
        for w in self.workers.values():
            if w.writer is not None:
                w.writer.close()
        procs = [w.process for w in self.workers.values() if w.process and w.process.returncode is None]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(p.wait() for p in procs))
        except TimeoutError:
            for p in procs:
                if p.returncode is None:
                    log.warning("worker.kill", pid=p.pid)
                    p.kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._zygote.close()

    async def _supervise(self, w: Worker) -> None:
        backoff = 0.5
        while not self._stopping:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await self._run_once(w)
            if self._stopping:
                return
            w.restarts += 1
            backoff = 0.5 if loop.time() - started > 60 else min(backoff * 2, 30.0)
            log.warning("worker.restarting", worker=w.spec.name, in_s=backoff, restarts=w.restarts)
            await asyncio.sleep(backoff)

    async def _run_once(self, w: Worker) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            w.process = await self._zygote.spawn(self._command(w.spec, child.fileno()), child.fileno())
        except OSError:
            log.exception("worker.spawn_failed", worker=w.spec.name)
            parent.close()
            return
        finally:
            child.close()
        w.pid = w.process.pid
        log.info("worker.started", worker=w.spec.name, pid=w.pid, sip_port=w.spec.sip_port)
        try:
            await self._serve(w, parent)
        finally:
            was_ready = w.ready.is_set()
            w.ready.clear()
            if w.writer is not None:
                w.writer.close()
                w.writer = None
            code = await self._reap(w.process)
            if not self._stopping or code not in (0, None):
                log.error("worker.exited", worker=w.spec.name, pid=w.pid, code=code, was_ready=was_ready)
            self._on_lost(w.spec.name)

    async def _serve(self, w: Worker, sock: socket.socket) -> None:
        """Speak the wire protocol on `sock` until the worker's end closes."""
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        link = WorkerLink(w.spec.name, functools.partial(self._receive, w), closed)
        w.writer, _ = await loop.create_unix_connection(lambda: link, sock=sock)
        await closed

    def _receive(self, w: Worker, line: bytes) -> None:
        try:
            call, message = wire.decode(line)
        except wire.WireError as exc:
            log.error("worker.bad_line", worker=w.spec.name, error=str(exc))
            return
        if isinstance(message, events.WorkerReady):
            w.ready.set()
            log.info("worker.ready", worker=w.spec.name, pid=message.pid, max_calls=message.max_calls)
            return
        if isinstance(message, events.WorkerEvent):
            self._on_event(w.spec.name, call, message)

    @staticmethod
    async def _reap(process: ZygoteChild) -> int | None:
        try:
            async with asyncio.timeout(5):
                return await process.wait()
        except TimeoutError:
            process.kill()
            return await process.wait()

    def _command(self, spec: WorkerSpec, fd: int) -> list[str]:
        """The worker's argv (after `python -m ivr.sip.worker`): what `ivr.sip.worker.parse_args` reads."""
        cmd = ["--name", spec.name, "--control-fd", str(fd),
               "--sip-host", spec.sip_host, "--sip-port", str(spec.sip_port),
               "--rtp-port", str(spec.rtp_port), "--rtp-port-count", str(spec.rtp_port_count),
               "--media-address", self._sip.media_address, "--prompts", self._prompts_dir,
               "--max-calls", str(self._sip.calls_per_worker), "--log-level", self._log_level,
               "--answer-timeout", str(self._sip.answer_timeout), *self._extra_args]
        if spec.accept_from:
            cmd += ["--accept-from", ",".join(spec.accept_from)]
        return cmd
