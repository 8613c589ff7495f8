"""`ivr tier run|render|reload CONFIG`: the Kamailio tier over several IVR nodes (ivr/front/tier.py).

`run` renders into `tier.run_dir`, starts Kamailio as a child (dies with this process), logs `tier.ready`, and
stops it on SIGTERM/SIGINT. With `tier.admin_port`, an admin endpoint (the project's admin app: /healthz,
/metrics) reports the tier's Kamailio and its nodes' dispatcher states (tier_health.py). SIGHUP, or
`ivr tier reload CONFIG` from another shell, re-reads the YAML and reloads the node list (`dispatcher.reload`
over the tier's jsonrpcs socket): nodes join or leave without a restart of the tier. A changed listen address,
algorithm, probe interval or admin address needs a restart (the reload says so).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import structlog
from aiohttp import web

from ivr import logs
from ivr.admin import make_app
from ivr.config.load import load_config
from ivr.config.model import IvrConfig
from ivr.console.auth import admin_token
from ivr.errors import ConfigError, IvrError
from ivr.front.kamailio import DISPATCHER_NAME, KamailioProcess, render
from ivr.front.rpc import KamailioRpc, RpcError, RpcUnavailable
from ivr.front.tier import nodes_list, tier_of, tier_view
from ivr.front.tier_health import TierHealth
from ivr.metrics import Metrics

DEFAULT_CONFIG = "config/ivr.yaml"
SOCKET_NOTE = "rpc_socket"
"""A file in the run dir naming the running tier's jsonrpcs socket (it may live under /tmp: a Unix socket
path must fit in 108 bytes)."""
log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tier_command", required=True, metavar="ACTION")
    run = sub.add_parser("run", help="run the tier's Kamailio in the foreground")
    render_cmd = sub.add_parser("render", help="write the tier's kamailio.cfg and tables (a Kamailio run elsewhere)")
    reload = sub.add_parser("reload", help="re-read the node list of CONFIG into the running tier")
    for cmd in (run, render_cmd, reload):
        cmd.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
    run.add_argument("--run-dir", type=Path, help="default: tier.run_dir of the config")
    reload.add_argument("--run-dir", type=Path, help="the running tier's run dir (default: tier.run_dir)")
    render_cmd.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write into")
    render_cmd.add_argument("--base-dir", type=Path, metavar="DIR",
                            help="where Kamailio will see these files, e.g. a container mount (default: --out)")


def command(args: argparse.Namespace) -> int:
    loaded = load_config(args.config, check_files=False)  # ConfigError: the CLI prints every issue
    config = loaded.config
    tier_of(config)
    logs.configure(config.logging.level, config.logging.format)
    if args.tier_command == "render":
        files = render(tier_view(config), args.out, base_dir=args.base_dir, config_dir=loaded.root,
                       copy_certificates=True, tier=True)
        for path in (files.cfg, files.dispatcher, *files.extra):
            print(path)
        return 0
    run_dir = args.run_dir or Path(tier_of(config).run_dir)
    if args.tier_command == "reload":
        return asyncio.run(_reload_running(config, run_dir))
    try:
        asyncio.run(TierRunner(args.config, config, run_dir, loaded.root).run())
    except (IvrError, OSError) as exc:
        log.error("tier.start_failed", error=str(exc), kind=type(exc).__name__)
        return 1
    return 0


async def reload_nodes(config: IvrConfig, run_dir: Path, rpc: KamailioRpc) -> None:
    """Write the node list next to the running cfg and tell Kamailio to re-read it."""
    (run_dir / DISPATCHER_NAME).write_text(nodes_list(config))
    await rpc.call("dispatcher.reload")
    log.info("tier.reloaded", nodes=[n.name for n in tier_of(config).nodes])


async def _reload_running(config: IvrConfig, run_dir: Path) -> int:
    note = run_dir / SOCKET_NOTE
    if not note.exists():
        print(f"ivr tier reload: no running tier in {run_dir} ({SOCKET_NOTE} missing)")
        return 1
    try:
        await reload_nodes(config, run_dir, KamailioRpc(Path(note.read_text().strip()), timeout=2.0))
    except (RpcUnavailable, RpcError) as exc:
        print(f"ivr tier reload: {exc}")
        return 1
    return 0


class TierRunner:
    """The tier's Kamailio as a child of this process, until SIGTERM/SIGINT or Kamailio's own exit."""

    def __init__(self, path: str, config: IvrConfig, run_dir: Path, root: Path) -> None:
        self._path = path
        self._config = config
        self._run_dir = run_dir
        self._root = root
        self._stop = asyncio.Event()
        self.metrics = Metrics()

    async def run(self) -> None:
        self._run_dir.mkdir(parents=True, exist_ok=True)
        tier = tier_of(self._config)
        token = admin_token(self._config.admin.model_copy(update={"host": tier.admin_host})) \
            if tier.admin_port else None  # before anything starts: an open port off loopback is a start-up error
        front = KamailioProcess(tier_view(self._config), self._run_dir, config_dir=self._root, tier=True)
        await front.start()
        note = self._run_dir / SOCKET_NOTE
        note.write_text(str(front.rpc_socket) + "\n")
        rpc = KamailioRpc(front.rpc_socket, timeout=2.0)
        health = TierHealth(rpc, self.metrics, lambda: front.running)
        admin: web.AppRunner | None = None
        try:
            if tier.admin_port:
                admin = web.AppRunner(make_app(self.metrics, health.health, token=token), access_log=None)
                await admin.setup()
                await web.TCPSite(admin, tier.admin_host, tier.admin_port).start()
            await self._serve(front, rpc, health)
        finally:
            if admin is not None:
                await admin.cleanup()
            note.unlink(missing_ok=True)
            await front.stop()

    async def _serve(self, front: KamailioProcess, rpc: KamailioRpc, health: TierHealth) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._reload(rpc)))
        tier = tier_of(self._config)
        await health.poll()
        admin = f"{tier.admin_host}:{tier.admin_port}" if tier.admin_port else None
        log.info("tier.ready", listen=f"{tier.listen_host}:{tier.listen_port}", nodes=[n.name for n in tier.nodes],
                 algorithm=tier.algorithm, probe_interval=tier.probe_interval, pid=front.pid, admin=admin)
        loop_time = loop.time
        next_poll = loop_time() + tier.probe_interval
        while not self._stop.is_set() and front.running:
            try:
                await asyncio.wait_for(self._stop.wait(), 0.5)
            except TimeoutError:
                pass
            if loop_time() >= next_poll and front.running:
                await health.poll()
                next_poll = loop_time() + tier_of(self._config).probe_interval
        if not front.running:
            log.error("tier.kamailio_exited", returncode=front.returncode, tail=front.stderr_tail())

    async def _reload(self, rpc: KamailioRpc) -> None:
        try:
            loaded = load_config(self._path, check_files=False)
        except ConfigError as exc:
            log.error("tier.reload_rejected", reason="invalid", issues=[str(i) for i in exc.issues])
            return
        old, new = tier_of(self._config), loaded.config.tier
        fixed = ("listen_host", "listen_port", "algorithm", "probe_interval", "admin_host", "admin_port")
        if new is None or any(getattr(new, name) != getattr(old, name) for name in fixed):
            log.error("tier.reload_rejected", reason="restart_needed")
            return
        try:
            await reload_nodes(loaded.config, self._run_dir, rpc)
        except (RpcUnavailable, RpcError) as exc:
            log.error("tier.reload_failed", error=str(exc))
            return
        self._config = loaded.config
