"""The controller's composition root: `ivr run` wires config, logs, demo CRM, HTTP client, workers, front, admin.

Start order: demo CRM -> HTTP client -> records (store, spools) -> workers (each says WorkerReady) -> front
-> admin. SIGTERM/SIGINT drains: new INVITEs get 503 + Retry-After, live calls may finish until
`sip.drain_timeout`, the rest are hung up, then everything stops in reverse order (workers release pjsua2
in its documented order; records are flushed last). SIGHUP reloads the config for new calls
(`config/diff.py` says which sections can change without a restart). The event loop is uvloop's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import structlog
import uvloop
from aiohttp import web

from ivr import logs
from ivr.admin import make_app
from ivr.calls import CallRouter
from ivr.config.diff import changed_sections, restart_needed
from ivr.config.load import LoadedConfig, load_config
from ivr.config.model import SipConfig
from ivr.console.auth import admin_token
from ivr.console.views import ConsoleSources
from ivr.crm import HttpClient
from ivr.errors import ConfigError, IvrError
from ivr.front.monitor import FrontMonitor
from ivr.front.registrations import Registrations
from ivr.front.rpc import KamailioRpc
from ivr.metrics import Metrics
from ivr.records.service import Records
from ivr.records.store import RecordStore
from ivr.switches import Switches, add_switch_routes
from ivr.tts.setup import open_speaker, warm_up
from ivr.tts.speaker import Speaker
from ivr.workers import WorkerPool, srtp_args, worker_specs

log = structlog.get_logger()

FrontMode = Literal["managed", "external", "none"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default="config/ivr.yaml", help="config file (default: %(default)s)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override the config")
    parser.add_argument("--run-dir", default="run", help="runtime files: the rendered front (default: %(default)s)")


def command(args: argparse.Namespace) -> int:
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue)
        return 2
    logging_cfg = loaded.config.logging
    logs.configure(args.log_level or logging_cfg.level, logging_cfg.format)
    structlog.contextvars.bind_contextvars(node=loaded.config.node())  # every line names the node (node_name)
    try:
        # uvloop: the worker link's read-decode-dispatch-write costs a third less CPU per event than on the
        # default loop (bench/README.md, issue 14); signals, subprocesses, aiohttp and executors behave the same.
        uvloop.run(Server(loaded, run_dir=Path(args.run_dir), log_level=args.log_level or logging_cfg.level).run())
    except (RuntimeError, IvrError, OSError) as exc:  # start-up: workers not ready, front or a port unavailable
        log.error("ivr.start_failed", error=str(exc), kind=type(exc).__name__)
        return 1
    return 0


def worker_route_args(sip: SipConfig, mode: str) -> tuple[str, ...]:
    """Behind a front, workers' own calls (bridged legs) leave through it: the only address strangers see."""
    return () if mode == "none" else ("--outbound-proxy", f"sip:{sip.listen_host}:{sip.listen_port};lr")


def front_mode(loaded: LoadedConfig) -> FrontMode:
    mode = loaded.config.front.mode
    if mode == "auto":
        return "managed" if loaded.config.sip.workers > 1 else "none"
    if mode == "none" and loaded.config.sip.workers > 1:
        raise RuntimeError("front.mode none allows one worker only: the worker takes the public address")
    return mode


class Server:
    """One controller process and everything it supervises."""

    def __init__(self, loaded: LoadedConfig, *, run_dir: Path, log_level: str = "info") -> None:
        self.loaded = loaded
        self.run_dir = run_dir
        self.metrics = Metrics()
        self._log_level = log_level
        self._stop = asyncio.Event()
        self._speaker: Speaker | None = None
        self._warming: asyncio.Task[None] | None = None
        self.front_monitor: FrontMonitor | None = None
        self.switches = Switches(loaded.config.switches, run_dir / "switches.json", self.metrics)
        self.recordings_dir = (run_dir / "recordings").resolve()
        """Where workers write the record step's WAVs (a call's record names its file)."""

    async def run(self) -> None:
        cfg = self.loaded.config
        mode = front_mode(self.loaded)
        token = admin_token(cfg.admin) if cfg.admin.enabled else None  # before anything starts: fail fast
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._demo_crm())
            http = await stack.enter_async_context(HttpClient(cfg.http))
            trusted = frozenset((cfg.sip.listen_host, *cfg.front.trusted_hosts)) if mode != "none" else frozenset()
            pool: WorkerPool
            speaker = await stack.enter_async_context(open_speaker(cfg, self.run_dir / "tts", self.loaded.prompts_dir))
            self._speaker = speaker
            router = CallRouter(cfg, lambda w, c, m: pool.send(w, c, m), http, self.metrics, front_hosts=trusted,
                                speaker=speaker)
            records = await stack.enter_async_context(self._records(router))
            router.on_record = records.on_record
            router.on_start = records.journal.opened
            router.switches = self.switches.view
            specs = worker_specs(cfg.sip, single=mode == "none", front_hosts=tuple(sorted(trusted)))
            pool = WorkerPool(specs, prompts_dir=str(self.loaded.prompts_dir),
                              sip=cfg.sip, on_event=router.on_event,
                              on_lost=router.on_worker_lost, log_level=self._log_level,
                              extra_args=(*srtp_args(cfg.trunks, trusted), *worker_route_args(cfg.sip, mode),
                                          "--recordings", str(self.recordings_dir)))
            stack.push_async_callback(pool.stop)
            await pool.start()
            if mode == "managed":
                await stack.enter_async_context(self._front())
            elif mode == "external" and cfg.front.rpc_socket:
                await stack.enter_async_context(self._polled(Path(cfg.front.rpc_socket)))
            await stack.enter_async_context(self._admin(router, pool, http, records.store, token))
            self._install_signals(router)
            log.info("ivr.ready", listen=f"{cfg.sip.listen_host}:{cfg.sip.listen_port}", workers=cfg.sip.workers,
                     calls_per_worker=cfg.sip.calls_per_worker, front=mode, config=str(self.loaded.path),
                     event_loop=type(asyncio.get_running_loop()).__module__)
            await self._stop.wait()
            await self._drain(router)

    def _install_signals(self, router: CallRouter) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload, router)

    def _reload(self, router: CallRouter) -> None:
        """SIGHUP: re-read the config file; apply it to new calls only if it is valid and changes nothing
        that needs a restart. All or nothing: a rejected reload leaves the running config untouched."""
        try:
            loaded = load_config(self.loaded.path)
        except ConfigError as exc:
            log.error("config.reload_rejected", reason="invalid", issues=[str(i) for i in exc.issues])
            return
        old = self.loaded.config
        blocked = restart_needed(old, loaded.config)
        if blocked:
            log.error("config.reload_rejected", reason="restart_needed", sections=blocked)
            return
        router.reconfigure(loaded.config)
        self.switches.reconfigure(loaded.config.switches)
        self.loaded = loaded
        if self._speaker is not None:  # new static say texts: rendered before a caller reaches them
            self._warming = asyncio.get_running_loop().create_task(warm_up(self._speaker, loaded.config))
        log.info("config.reloaded", changed=changed_sections(old, loaded.config), live_calls=len(router.calls))

    async def _drain(self, router: CallRouter) -> None:
        router.draining = True
        if self.front_monitor is not None:  # a tier's probe sees 503 and sends new calls to other nodes
            await self.front_monitor.drain()
        timeout = self.loaded.config.sip.drain_timeout
        log.info("ivr.draining", live_calls=len(router.calls), timeout_s=timeout)
        if not await self._calls_gone(router, timeout):
            log.warning("ivr.drain_timeout", hanging_up=len(router.calls))
            router.hang_up_all("shutdown")
            await self._calls_gone(router, 5.0)
        log.info("ivr.stopping", live_calls=len(router.calls))

    @staticmethod
    async def _calls_gone(router: CallRouter, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while router.calls and loop.time() < end:
            await asyncio.sleep(0.1)
        return not router.calls

    @contextlib.asynccontextmanager
    async def _demo_crm(self) -> AsyncIterator[None]:
        demo = self.loaded.config.demo_crm
        if not demo.enabled:
            yield
            return
        from ivr import democrm

        runner = await democrm.start(demo, self.loaded.root)
        try:
            yield
        finally:
            await runner.cleanup()

    @contextlib.asynccontextmanager
    async def _records(self, router: CallRouter) -> AsyncIterator[Records]:
        """Records are spooled from before the first call until after the workers stopped (LIFO stack)."""
        records = Records(self.loaded.config, self.run_dir, self.metrics, lambda: router.config)
        await records.start()
        try:
            yield records
        finally:
            await records.stop()

    @contextlib.asynccontextmanager
    async def _front(self) -> AsyncIterator[None]:
        from ivr.front.kamailio import KamailioProcess

        front = KamailioProcess(self.loaded.config, self.run_dir / "front", config_dir=self.loaded.root)
        await front.start()
        try:
            async with self._polled(front.rpc_socket):
                yield
        finally:
            await front.stop()

    @contextlib.asynccontextmanager
    async def _polled(self, rpc_socket: Path) -> AsyncIterator[None]:
        self.front_monitor = self._monitor(rpc_socket)
        monitor = asyncio.create_task(self.front_monitor.run(), name="front-monitor")
        try:
            yield
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor

    def _monitor(self, rpc_socket: Path) -> FrontMonitor:
        front = self.loaded.config.front
        names = tuple(trunk.name for trunk in self.loaded.config.trunks if trunk.registration)
        registrations = Registrations(self.metrics, names, front.registration_retry,
                                      front.registration_retry_max) if names else None
        return FrontMonitor(KamailioRpc(rpc_socket), self.metrics, interval=front.poll_interval,
                            registrations=registrations)

    @contextlib.asynccontextmanager
    async def _admin(self, router: CallRouter, pool: WorkerPool, http: HttpClient,
                     store: RecordStore | None, token: str | None) -> AsyncIterator[None]:
        admin = self.loaded.config.admin
        if not admin.enabled:
            yield
            return

        def health() -> dict[str, object]:
            ready = pool.ready_count()
            front = self.front_monitor.state() if self.front_monitor else {}
            return {"ok": ready > 0 and not router.draining and front.get("up") is not False, "workers_ready": ready,
                    "workers": len(pool.workers), "draining": router.draining, "live_calls": len(router.calls),
                    **({"front": front} if front else {})}

        def status() -> dict[str, object]:
            workers = [{"name": name, "pid": w.pid, "ready": w.ready.is_set(), "restarts": w.restarts}
                       for name, w in pool.workers.items()]
            return {"health": health(), "workers": workers, "http": http.stats(), "node": self.loaded.config.node()}

        console = ConsoleSources(config=lambda: self.loaded.config, live=router.snapshot, status=status, store=store)
        app = make_app(self.metrics, health, router.snapshot, http.stats, console=console, token=token)
        add_switch_routes(app, self.switches, token)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, admin.host, admin.port).start()
        try:
            yield
        finally:
            await runner.cleanup()
