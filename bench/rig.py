"""The bench's server side: a bench copy of config/ivr.yaml, the real `ivr run` as a child, /proc accounting.

Everything binds 127.0.0.1. CPU is utime+stime of the server's whole process tree (controller, SIP workers,
Kamailio and its children) from /proc/<pid>/stat; memory is the tree's RSS and PSS (smaps_rollup; PSS splits
shared pages, so it does not count the pjsua2 library once per worker). UDP loss on loopback can only be a
full receive buffer: the kernel's counters (/proc/net/snmp) and per-socket drops (/proc/net/udp) say so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")
HOLD_NUMBER = "901"
FULL_NUMBER = "100"
PEER_NUMBER = "700"
PEER_CONFIG = Path(__file__).resolve().parent / "peer" / "peer.yaml"
"""The peer kit's call (bench_ivr on 700, its CRM stub endpoint and queues q_*), merged into every bench config."""

HOLD_FLOW = {
    "description": "BENCH ONLY (bench/capacity.py), not part of the product config: plays prompts in a loop "
                   "until the caller hangs up, so a long call has audio flowing the whole time.",
    "steps": [{"id": "hold", "type": "play", "prompts": ["hold_music", "welcome"], "interruptible": False,
               "next": "hold"}],
}


@dataclass(frozen=True)
class Ports:
    """Where the bench server listens (defaults clear of the test suites' ranges and of 5060/5100+)."""

    sip: int = 25060
    worker_base: int = 25100
    rtp_start: int = 20000
    admin: int = 25080
    crm: int = 25081
    stub: int = 25082
    """The peer kit's CRM stub (bench/peer/crm_stub.py), started by the ladder phase."""


def bench_config(workers: int, ports: Ports, *, front_children: int = 1, strict_pike: bool = False) -> dict[str, Any]:
    """config/ivr.yaml with N workers, bench ports, absolute paths, and the labelled bench-only hold flow.

    The shipped flows are untouched; the full-flow calls use `vip_routing` as shipped. `strict_pike` keeps the
    product's pike default (60 requests / 2 s per source IP), which a single load generator exceeds at a few
    calls per second: by default the bench raises it, and says so in its report."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    sip = data["sip"]
    sip.update(listen_host=HOST, listen_port=ports.sip, media_address=HOST, workers=workers,
               worker_base_port=ports.worker_base, rtp_port_start=ports.rtp_start, drain_timeout="2s")
    front = data.setdefault("front", {})
    front["mode"] = "managed" if workers > 1 else "none"
    front["children"] = front_children
    if not strict_pike:
        front["pike"] = {"sampling_time": 2, "reqs_density": 100000, "remove_latency": 60}
    data["http"]["crm"]["base_url"] = f"http://{HOST}:{ports.crm}"
    data["demo_crm"].update(enabled=True, host=HOST, port=ports.crm, customers=str(ROOT / "config" / "customers.yaml"))
    data["admin"] = {"enabled": True, "host": HOST, "port": ports.admin}
    data["logging"] = {"level": "info", "format": "json"}
    data["prompts_dir"] = str(ROOT / "prompts")
    data["numbers"][HOLD_NUMBER] = "bench_hold"
    data["flows"]["bench_hold"] = HOLD_FLOW
    peer: dict[str, Any] = yaml.safe_load(PEER_CONFIG.read_text())
    peer["http"]["stub"]["base_url"] = f"http://{HOST}:{ports.stub}"
    for section in ("http", "queues", "numbers", "flows"):
        data.setdefault(section, {}).update(peer[section])
    return data


# --- /proc -------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, cpu ticks, comm) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), comm


def tree(root: int) -> list[int]:
    """root and all its descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            children.setdefault(st[0], []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _role(pid: int, root: int, comm: str) -> str:
    if pid == root:
        return "controller"
    if comm.startswith("kamailio"):
        return "kamailio"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "other"
    # the zygote (the workers' shared imports; each worker's title names ivr.sip.worker) counts as workers
    return "workers" if b"ivr.sip.worker" in cmdline or b"ivr.sip.zygote" in cmdline else "other"


def cpu_by_role(pids: Iterable[int], root: int) -> dict[str, float]:
    """CPU seconds so far per role (controller, workers, kamailio, other) and in total."""
    out = {"controller": 0.0, "workers": 0.0, "kamailio": 0.0, "other": 0.0}
    for pid in pids:
        st = _stat(pid)
        if st is not None:
            out[_role(pid, root, st[2])] += st[1] / TICK
    out["total"] = sum(out.values())
    return out


def worker_threads(pids: Iterable[int], root: int) -> dict[str, float]:
    """CPU seconds so far of the workers' threads, summed by kind: `main` (the loop: Python + pjsip's poll),
    `control-reader`, and pjlib's own threads by name; `process` is the workers' process total, which also
    holds threads that have exited (pjmedia's clock thread comes and goes with the sound port)."""
    out: dict[str, float] = {"process": 0.0}
    for pid in pids:
        st = _stat(pid)
        if st is None or _role(pid, root, st[2]) != "workers":
            continue
        out["process"] += st[1] / TICK
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            comm = text[text.index("(") + 1:text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            kind = "main" if int(tid) == pid else ("python-thread" if comm == "python" else comm)
            out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
            if kind == "main":
                out["main-user"] = out.get("main-user", 0.0) + int(fields[11]) / TICK
        out["main_wakeups"] = out.get("main_wakeups", 0.0) + _voluntary_switches(pid)
    return out


def _voluntary_switches(pid: int) -> int:
    """How often the main thread blocked (= woke up again): one pass of the worker's loop each."""
    try:
        for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def thread_delta(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """Cores per thread kind over a window (`exited-or-new`: process time not found in threads alive at both
    ends), the main threads' wake-ups per second, and main-thread CPU per wake-up (us)."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    wakeups = delta.pop("main_wakeups", 0.0)
    user = delta.pop("main-user", 0.0)
    delta["exited-or-new"] = delta["process"] - sum(v for k, v in delta.items() if k != "process")
    delta["main-user"] = user
    out = {k: round(v / wall, 4) for k, v in sorted(delta.items())}
    out["main_wakeups_per_s"] = round(wakeups / wall)
    out["main_us_per_wakeup"] = round(1e6 * delta.get("main", 0.0) / max(1.0, wakeups), 1)
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    return sum(st[1] for pid in pids if (st := _stat(pid)) is not None) / TICK


def memory_kb(pids: Iterable[int]) -> dict[str, int]:
    """Summed RSS and PSS (kB) of the processes."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return {"rss_kb": rss, "pss_kb": pss}


def role_of(pid: int, root: int) -> str | None:
    st = _stat(pid)
    return None if st is None else _role(pid, root, st[2])


def memory_by_role(pids: Iterable[int], root: int) -> dict[str, dict[str, int]]:
    """RSS and PSS (kB) summed per role, and `total`."""
    out: dict[str, dict[str, int]] = {}
    for pid in pids:
        role = role_of(pid, root)
        if role is None:
            continue
        mem = memory_kb([pid])
        for key in ("total", role):
            acc = out.setdefault(key, {"rss_kb": 0, "pss_kb": 0, "processes": 0})
            acc["rss_kb"] += mem["rss_kb"]
            acc["pss_kb"] += mem["pss_kb"]
            acc["processes"] += 1
    return out


def fds_per_process(pids: Iterable[int]) -> dict[int, int]:
    """Open file descriptors (/proc/<pid>/fd) of each live process."""
    out: dict[int, int] = {}
    for pid in pids:
        try:
            out[pid] = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return out


def fds_by_role(per_process: dict[int, int], root: int) -> dict[str, dict[str, int]]:
    """Open file descriptors summed per role and `total`, with the largest single process."""
    out: dict[str, dict[str, int]] = {}
    for pid, n in per_process.items():
        role = role_of(pid, root)
        for key in ("total", role or "other"):
            acc = out.setdefault(key, {"fds": 0, "max_per_process": 0})
            acc["fds"] += n
            acc["max_per_process"] = max(acc["max_per_process"], n)
    return out


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (system-wide: other users of the machine show up here too)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=True)}


def udp_drops(ranges: dict[str, tuple[int, int]]) -> dict[str, dict[int, int]]:
    """Per-socket receive drops (inode -> drops) of the sockets bound to 127.0.0.1 ports in each range."""
    out: dict[str, dict[int, int]] = {name: {} for name in ranges}
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        port = int(parts[1].split(":")[1], 16)
        for name, (lo, hi) in ranges.items():
            if lo <= port <= hi:
                out[name][int(parts[9])] = int(parts[12])
    return out


class DropWatch:
    """Samples per-socket UDP drops every `period` s; a socket closed meanwhile keeps its last count."""

    def __init__(self, ranges: dict[str, tuple[int, int]], period: float = 1.0) -> None:
        self.ranges = ranges
        self.period = period
        self._first = udp_drops(ranges)
        self._last = {k: dict(v) for k, v in self._first.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._snmp = udp_counters()

    def __enter__(self) -> DropWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def _sample(self) -> None:
        for name, socks in udp_drops(self.ranges).items():
            self._last[name].update(socks)

    def result(self) -> dict[str, int]:
        out = {f"{name}_socket_drops": sum(d - self._first[name].get(inode, 0) for inode, d in socks.items())
               for name, socks in self._last.items()}
        now = udp_counters()
        for key in ("RcvbufErrors", "InErrors", "SndbufErrors", "NoPorts"):
            out[f"kernel_udp_{key}"] = now.get(key, 0) - self._snmp.get(key, 0)
        return out


# --- the server ----------------------------------------------------------------------------------------


@dataclass
class Server:
    """`ivr run` on a bench config; `log` collects its JSON lines (stdout and stderr, workers' included)."""

    workers: int
    workdir: Path
    ports: Ports = field(default_factory=Ports)
    front_children: int = 1
    strict_pike: bool = False
    variant: str = ""
    tweak: Callable[[dict[str, Any]], None] | None = None
    """Changes the bench config before it is written (bench/vip_latency.py: cache off, CRM slow or down)."""
    proc: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0
    pids: list[int] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def start(self, timeout: float = 120.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "ivr-bench.yaml"
        data = bench_config(self.workers, self.ports, front_children=self.front_children, strict_pike=self.strict_pike)
        if self.tweak is not None:
            self.tweak(data)
        cfg.write_text("# Written by bench/: config/ivr.yaml with bench ports and worker count,\n"
                       "# plus the bench-only flow bench_hold (number 901).\n" + yaml.safe_dump(data, sort_keys=False))
        t0 = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "python"), "-m", "ivr", "run", str(cfg), "--run-dir",
                 str(self.workdir / "run")], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self._env())
        while b'"ivr.ready"' not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                tail = self.log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"server did not become ready ({self.workers} workers):\n{tail}")
            time.sleep(0.1)
        self.started_s = time.monotonic() - t0
        time.sleep(1.0)
        self.pids = tree(self.proc.pid)
        return self

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.variant:  # bench-only A/B hooks, see bench/variant/sitecustomize.py
            env["IVR_BENCH_VARIANT"] = self.variant
            env["PYTHONPATH"] = str(Path(__file__).resolve().parent / "variant")
        return env

    def refresh(self) -> list[int]:
        """The tree now (a restarted worker has a new pid)."""
        assert self.proc is not None
        self.pids = tree(self.proc.pid)
        return self.pids

    def cpu(self) -> dict[str, float]:
        assert self.proc is not None
        return cpu_by_role(self.refresh(), self.proc.pid)

    def threads(self) -> dict[str, float]:
        assert self.proc is not None
        return worker_threads(self.refresh(), self.proc.pid)

    def memory(self) -> dict[str, int]:
        return memory_kb(self.refresh())

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def _ours(self, pid: int) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if any(str(self.workdir).encode() in arg for arg in argv):
            return True  # Kamailio: its -f names our run directory
        words = b" ".join(argv).split()  # a zygote-forked worker's title is one space-separated string
        if b"ivr.sip.worker" in words and b"--sip-port" in words:
            port = int(words[words.index(b"--sip-port") + 1])
            return self.ports.worker_base <= port < self.ports.worker_base + self.workers
        return False

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (the server drains and stops its workers and Kamailio); then SIGKILL any leftover of the
        tree, by pid (workers and Kamailio run in their own sessions)."""
        if self.proc is None:
            return
        pids = tree(self.proc.pid) if self.proc.poll() is None else list(self.pids)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.5)
        for pid in pids:
            if pid != self.proc.pid and _stat(pid) is not None and self._ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
