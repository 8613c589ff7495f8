"""The Kamailio front: render kamailio.cfg and its tables from the IVR config, and run Kamailio as a child.

Files rendered into one directory (referenced by bare names, so the directory can be mounted anywhere):
`kamailio.cfg`, `dispatcher.list` (the workers, set 1), `trunks.address` (permissions address file: one
line per trunk source, tag = trunk name, group 1; a registering trunk's sources again in its own group
100 + i) and, when a trunk registers, `dbtext/uacreg` + `dbtext/version`. The jsonrpcs datagram socket
(`rpc_socket`) is where the controller reads the front's counters and registration state.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import os
import re
import secrets
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from ivr.config.model import IvrConfig, Registration, Trunk
from ivr.errors import IvrError
from ivr.front import cfg_template as t
from ivr.front import tier_template, tls
from ivr.front.probe import options_ping, sip_host

log = structlog.get_logger(__name__)

CFG_NAME = "kamailio.cfg"
DISPATCHER_NAME = "dispatcher.list"
ADDRESS_NAME = "trunks.address"
DBTEXT_DIR = "dbtext"
_PR_SET_PDEATHSIG = 1
FR_TIMER_MS = 1500
RPC_NAME = "kamailio_rpc.sock"
REFUSAL_CODES = ("400", "403", "404", "405", "481", "483", "503", "pike", "scanner", "stranger")
SOURCE_CLASSES = ("trunk", "nontrunk", "worker")
REGISTRATION_GROUP = 100


class FrontError(IvrError):
    """Kamailio could not be started (bad config, port in use, binary missing)."""


@dataclass(frozen=True)
class FrontFiles:
    cfg: Path
    dispatcher: Path
    extra: tuple[Path, ...]


def workers(config: IvrConfig) -> list[tuple[str, str, int]]:
    """(duid, host, port) per worker: worker i is `w{i:03d}` on worker_host:worker_base_port + i."""
    sip = config.sip
    return [(f"w{i:03d}", sip.worker_host, sip.worker_base_port + i) for i in range(sip.workers)]


def render(config: IvrConfig, out_dir: Path, *, base_dir: Path | None = None, instance: str = "",
           rpc_socket: Path | None = None, config_dir: Path | None = None,
           copy_certificates: bool = False, tier: bool = False) -> FrontFiles:
    """Write kamailio.cfg and its tables into out_dir.

    `base_dir`: where Kamailio will see these files (a container mount); default out_dir. `instance`, when
    given, is a random token: an OPTIONS to `sip:<instance>@front` (and only that) is answered with an
    X-IVR-Front header, so a managed start can tell its own Kamailio from another listener on the port,
    while a stranger, who cannot know the token, sees nothing that names the product. `rpc_socket`: the
    jsonrpcs datagram socket (default front.rpc_socket; neither: no RPC, the refusals are still counted).
    `config_dir`: what certificate paths are relative to (the config file's directory; default the current
    directory). `copy_certificates`: copy the TLS certificate, key and CA next to tls.cfg (a front run
    elsewhere). `tier`: render the tier over config.tier's nodes instead of a node's front (ivr/front/tier.py).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    base = (base_dir or out_dir).absolute()
    cfg, dispatcher, address = out_dir / CFG_NAME, out_dir / DISPATCHER_NAME, out_dir / ADDRESS_NAME
    if tier:
        from ivr.front.tier import nodes_list, tier_algorithm

        dispatcher.write_text(nodes_list(config))
        algorithm = tier_algorithm(config)
    else:
        dispatcher.write_text(dispatcher_list(config))
        algorithm = "10"
    address.write_text(address_file(config))
    extra = [address]
    registrations = [(trunk.name, trunk.registration) for trunk in config.trunks if trunk.registration]
    if registrations:
        dbtext = out_dir / DBTEXT_DIR
        dbtext.mkdir(exist_ok=True)
        (dbtext / "version").write_text("id(int,auto) table_name(string) table_version(int) \n0:uacreg:5\n")
        (dbtext / "uacreg").write_text(uacreg_table(registrations))
        os.chmod(dbtext / "uacreg", 0o600)
        extra += [dbtext / "uacreg", dbtext / "version"]
    extra += tls.write_profile(config, out_dir, (config_dir or Path.cwd()).absolute(),
                               base if copy_certificates else None)
    cfg.write_text(cfg_text(config, base_dir=base, instance=instance, rpc_socket=rpc_socket, ds_algorithm=algorithm))
    return FrontFiles(cfg=cfg, dispatcher=dispatcher, extra=tuple(extra))


def dispatcher_list(config: IvrConfig) -> str:
    """Set 1: one line per worker, `duid` and `maxload` for algorithm 10 (call load)."""
    transport = "" if "udp" in config.sip.transports else ";transport=tcp"
    lines = ["# setid destination flags priority attributes (rendered by ivr.front)",
             "# priority falls with the index so the dispatcher keeps worker order (w000 first at equal load)"]
    rows = workers(config)
    for i, (duid, host, port) in enumerate(rows):
        lines.append(f"1 sip:{sip_host(host)}:{port}{transport} 0 {len(rows) - i} "
                     f"duid={duid};maxload={config.sip.calls_per_worker}")
    return "\n".join(lines) + "\n"


def queue_targets(config: IvrConfig) -> str:
    """Kamailio regex of the `host:port` a worker's own call may go to: each queue target's and allow-list
    pattern's (port 5060 when absent, which `$rp` may show as empty)."""
    alternatives = []
    for queue in config.queues.values():
        uris = [target.uri for target in queue.all_targets] + list(queue.allow)
        for uri in uris:
            host, sep, port = registrar_domain(uri).rpartition(":")
            if not sep or not port.isdigit():
                host, port = registrar_domain(uri), ""
            suffix = f":{port}" if port and port != "5060" else "(:5060|:)?"
            # an allow-list pattern's '*' stands for one or more characters of a host label
            alternatives.append(re.escape(host.lower()).replace(r"\*", "[^:;@]+") + suffix)
    return "^(" + "|".join(sorted(set(alternatives))) + ")$"


def address_file(config: IvrConfig) -> str:
    """Permissions address file: group 1, every trunk source with its mask, any port, tag = trunk name."""
    lines = ["# group address mask port tag (rendered by ivr.front): trunk sources (group 1), and a registering",
             "# trunk's sources again in its own group (100 + i): INVITEs to its Contact come only from there"]
    groups = [(1, trunk) for trunk in config.trunks]
    groups += [(group, trunk) for group, trunk in registration_groups(config)]
    for group, trunk in groups:
        for source in trunk.sources:
            net = ipaddress.ip_network(source, strict=False)
            lines.append(f"{group} {sip_host(str(net.network_address))} {net.prefixlen} 0 {trunk.name}")
    if config.front.tier_source:  # a tier in front of this node: its X-IVR-Trunk is kept (tier_template.py)
        net = ipaddress.ip_network(config.front.tier_source, strict=False)
        lines.append(f"{tier_template.TIER_GROUP} {sip_host(str(net.network_address))} {net.prefixlen} 0 tier")
    return "\n".join(lines) + "\n"


def registration_groups(config: IvrConfig) -> list[tuple[int, Trunk]]:
    """(address group, trunk) of every trunk that registers."""
    regs = [trunk for trunk in config.trunks if trunk.registration]
    return [(REGISTRATION_GROUP + i, trunk) for i, trunk in enumerate(regs, start=1)]


def refusal_stats() -> list[tuple[str, str, str]]:
    """(statistic name, code, source class) of every refusal the front counts."""
    return [(f"refused_{code}_{cls}", code, cls) for code in REFUSAL_CODES for cls in SOURCE_CLASSES]


def _dbtext(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\t", "\\t"))


def registrar_domain(uri: str) -> str:
    """`sip:user@host:port;params` -> `host:port`."""
    rest = uri.split(":", 1)[1].split(";", 1)[0].split("?", 1)[0]
    return rest.rsplit("@", 1)[-1]


def uacreg_table(registrations: list[tuple[str, Registration]]) -> str:
    """db_text table of the uac module: one outbound registration per trunk, l_uuid `reg-<trunk>`."""
    header = ("id(int,auto) l_uuid(string) l_username(string) l_domain(string) r_username(string) "
              "r_domain(string) realm(string) auth_username(string) auth_password(string) auth_ha1(string,null) "
              "auth_proxy(string) expires(int) flags(int) reg_delay(int) contact_addr(string,null) "
              "socket(string,null) ")
    rows = [header]
    for i, (name, reg) in enumerate(registrations, start=1):
        domain = registrar_domain(reg.registrar)
        realm = domain.split(":", 1)[0]
        fields = [str(i), f"reg-{name}", reg.user, domain, reg.user, domain, realm, reg.user, reg.password, "",
                  reg.registrar, str(int(reg.expiry)), "0", "0", reg.contact or "", ""]
        rows.append(":".join(_dbtext(f) for f in fields))
    return "\n".join(rows) + "\n"


def ua_pattern(agents: tuple[str, ...]) -> str:
    """One lower-case POSIX regex of substrings; characters outside a safe set become `.`."""
    safe = [re.sub(r"[^a-z0-9 _/-]", ".", agent.lower()) for agent in agents if agent]
    return "|".join(safe)


def _listen(config: IvrConfig) -> str:
    sip = config.sip
    lines = [f"listen={proto}:{sip_host(sip.listen_host)}:{sip.listen_port}" for proto in sip.transports]
    return "\n".join(lines) + tls.listen_line(config)


def _registration_parts(config: IvrConfig, dbtext_dir: str) -> dict[str, str]:
    groups = registration_groups(config)
    if not groups:
        return {"uac_load": "", "uac_params": "", "registered": ""}
    contact = f"{sip_host(config.sip.listen_host)}:{config.sip.listen_port}"
    retry = int(config.front.registration_retry)
    return {
        "uac_load": t.UAC_LOAD,
        "uac_params": t.UAC_PARAMS.substitute(dbtext_dir=dbtext_dir, contact_addr=contact, retry_interval=retry,
                                              timer_interval=max(1, min(10, retry // 4))),
        "registered": "".join(t.REGISTERED.substitute(uuid=f"reg-{trunk.name}", group=group, trunk=trunk.name)
                              for group, trunk in groups),
    }


def _rpc_parts(socket_path: Path | str | None) -> dict[str, str]:
    if socket_path is None:
        return {"rpc_load": "", "rpc_params": ""}
    return {"rpc_load": t.RPC_LOAD, "rpc_params": t.RPC_PARAMS.substitute(rpc_socket=str(socket_path))}


def cfg_text(config: IvrConfig, *, base_dir: Path, instance: str = "", rpc_socket: Path | None = None,
             ds_algorithm: str = "10") -> str:
    """The kamailio.cfg text; its tables are read from base_dir. `ds_algorithm`: 10 (call load) over a node's
    workers; a tier's over nodes (ivr/front/tier.py)."""
    sip, front = config.sip, config.front
    pattern = ua_pattern(front.blocked_user_agents)
    values = {
        "source": "the IVR YAML config",
        "debug": "2" if config.logging.level == "debug" else "0",
        "children": str(front.children),
        "tcp": "" if "tcp" in sip.transports or front.tls.enabled else "disable_tcp=yes",
        "listen": _listen(config),
        "listen_host": sip_host(sip.listen_host),
        "fr_timer": str(FR_TIMER_MS),
        "fr_inv_timer": str(int((sip.answer_timeout + 10) * 1000)),
        "pike_sampling": str(front.pike.sampling_time),
        "pike_density": str(front.pike.reqs_density),
        "pike_latency": str(front.pike.remove_latency),
        "address_file": str(base_dir / ADDRESS_NAME),
        "dispatcher_file": str(base_dir / DISPATCHER_NAME),
        "hash_expire": str(int(sip.max_call_duration) + 60),
        "hash_initexpire": str(int(sip.answer_timeout) + 60),
        "probe_interval": str(front.probe_interval),
        "retry_after": str(sip.retry_after),
        "mask_key": secrets.token_hex(16),
        "mask_ip": _mask_ip(config),
        "stranger_invite": t.STRANGER_403 if front.stranger_invite_reply == "403" else "",
        "probe": t.PROBE.substitute(instance=instance) if instance else "",
        "dialog_timeout": str(int(sip.max_call_duration) + 60),
        "ua_check": t.UA_CHECK.substitute(pattern=pattern) if pattern else "",
        "queue_targets": queue_targets(config),
        "from_worker": worker_test(config, ds_algorithm, "$si", "$sp", ""),
        "to_worker": worker_test(config, ds_algorithm, "$sndto(ip)", "$sndto(port)",
                                 ', "sip:$sndto(ip):$sndto(port)"'),
        **tier_template.parts(ds_algorithm, sip.retry_after),
        **tier_template.tier_trust_parts([trunk.name for trunk in config.trunks], front.tier_source),
        **_rpc_parts(rpc_socket or config.front.rpc_socket),
        "stat_params": "".join(t.STAT_PARAM.substitute(name=name) for name, _, _ in refusal_stats()),
        **_registration_parts(config, str(base_dir / DBTEXT_DIR)),
        **tls.cfg_parts(config, base_dir),
    }
    return t.MAIN.substitute(values)


def worker_test(config: IvrConfig, ds_algorithm: str, ip: str, port: str, ds_uri: str) -> str:
    """The script condition "this address (pseudo-variables `ip`, `port`) is one of dispatcher set 1".

    A node's front runs it for every message it receives and sends (request_route, topoh's outgoing event
    route). Its set 1 is the workers, worker_host:worker_base_port + i, and never changes while Kamailio runs
    (algorithm 10 refuses `dispatcher.reload`), so an address and a port range stand in for
    `ds_is_from_list`, which scans all N destinations and, for an outgoing message, prints and parses a URI
    first (bench/README.md, "Kamailio, session 17"). A tier's set (nodes, reloadable) and an IPv6 or
    non-literal worker_host keep `ds_is_from_list("1", "2"[, uri])` (mode 2: address and port, any protocol).
    """
    try:
        host = ipaddress.ip_address(config.sip.worker_host)
    except ValueError:
        host = None
    if ds_algorithm != "10" or host is None or host.version != 4:
        return f'ds_is_from_list("1", "2"{ds_uri})'
    first = config.sip.worker_base_port
    last = first + config.sip.workers - 1
    return f'{ip} == "{host}" && {port} >= {first} && {port} <= {last}'


def _mask_ip(config: IvrConfig) -> str:
    """The address topoh puts where a worker's would be: the front's own (its public one on a wildcard)."""
    host = config.sip.listen_host
    return config.sip.media_address if host in ("0.0.0.0", "::") else host


def memory_flags(config: IvrConfig) -> list[str]:
    """-m (shared MB, front.shared_memory_mb: transactions per second drive it), -M (per-process MB) and -x
    (the allocator, shared and private). Debian's Kamailio defaults to q_malloc built with its debugging
    (DBG_SR_MEMORY): `perf` put 23% of the front's CPU in qm_malloc on the full-flow bench; TLSF allocates
    in constant time (bench/README.md, 2026-12-01 "front" section)."""
    return ["-m", str(config.front.shared_memory_mb), "-M", "8", "-x", "tlsf"]


# --- the managed process ----------------------------------------------------------------------------


def _probe_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1" if host == "0.0.0.0" else "::1"
    return host


class KamailioProcess:
    """Kamailio as a child process (managed mode): render into run_dir, start, stop."""

    def __init__(self, config: IvrConfig, run_dir: Path, *, start_timeout: float = 10.0,
                 stop_timeout: float = 5.0, config_dir: Path | None = None, tier: bool = False) -> None:
        self._config = config
        self._tier = tier
        self._config_dir = config_dir
        self._run_dir = run_dir.resolve()  # kamailio runs with its cwd there: relative paths would double
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self.log_path = run_dir / "kamailio.log"
        self.rpc_socket = self._run_dir / RPC_NAME
        self._private_dir: Path | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def start(self) -> None:
        """Render, start `kamailio -DD -E`, wait until it answers OPTIONS on the public address."""
        if self.running:
            raise FrontError("the front is already running")
        instance = secrets.token_hex(8)
        self.rpc_socket = self._rpc_socket_path()
        files = render(self._config, self._run_dir, instance=instance, rpc_socket=self.rpc_socket,
                       config_dir=self._config_dir, tier=self._tier)
        args = [self._config.front.kamailio, "-DD", "-E", *memory_flags(self._config), "-f", str(files.cfg)]
        with self.log_path.open("wb") as out:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, cwd=self._run_dir,
                    start_new_session=True, preexec_fn=_die_with(os.getpid()))
            except OSError as exc:
                raise FrontError(f"cannot start {args[0]}: {exc}") from exc
        log.info("front.starting", pid=self._proc.pid, cfg=str(files.cfg))
        try:
            await self._wait_ready(instance)
        except BaseException:
            await self.stop()
            raise
        sip = self._config.sip
        log.info("front.started", pid=self._proc.pid, listen=f"{sip.listen_host}:{sip.listen_port}",
                 workers=sip.workers)

    def _rpc_socket_path(self) -> Path:
        """run_dir/kamailio_rpc.sock, or a private 0700 directory under /tmp when that path does not fit in a
        Unix socket address (108 bytes, e.g. a deep test directory)."""
        path = self._run_dir / RPC_NAME
        if len(os.fsencode(path)) < 100:
            return path
        self._private_dir = Path(tempfile.mkdtemp(prefix="ivr-front-"))
        return self._private_dir / RPC_NAME

    async def _wait_ready(self, instance: str) -> None:
        sip = self._config.sip
        host, transport = _probe_host(sip.listen_host), "udp" if "udp" in sip.transports else "tcp"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            if not self.running:
                raise FrontError(f"kamailio exited with status {self.returncode}:\n{self.stderr_tail()}")
            answer = await options_ping(host, sip.listen_port, transport=transport, timeout=0.25,
                                        user=instance)
            if answer is not None and f"X-IVR-Front: {instance}" in answer:
                return
        raise FrontError(f"kamailio did not answer OPTIONS on {host}:{sip.listen_port} within "
                         f"{self._start_timeout:g} s:\n{self.stderr_tail()}")

    def stderr_tail(self, lines: int = 20) -> str:
        """The last lines Kamailio wrote (its log goes to run_dir/kamailio.log)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    async def stop(self) -> None:
        """SIGTERM to the main process, wait up to stop_timeout, then SIGKILL its process group."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self._stop_timeout)
            except TimeoutError:
                log.warning("front.kill", pid=proc.pid)
                _killpg(proc.pid)
                await proc.wait()
        _killpg(proc.pid)  # children that outlived the main process (they share its new session)
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None
        log.info("front.stopped", pid=proc.pid, returncode=proc.returncode)


def _die_with(parent: int) -> Callable[[], None]:
    """Pre-exec hook: Kamailio gets SIGTERM when the controller dies, even by SIGKILL (Linux PDEATHSIG), so a
    crashed `ivr run` never leaves a front holding the public port for the next start."""

    def hook() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the controller died between fork and prctl
            os._exit(1)

    return hook


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
