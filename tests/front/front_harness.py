"""Test seam for the Kamailio front: configs, SIPp stand-in workers and callers, raw SIP requests.

Ports (127.0.0.x only), as offsets in a block of 200 that this pytest process holds alone (BASE, below):
front +0..+9, SIPp callers +10..+29 (their media +30..+97), stand-in workers +101..+109 (media +110..+149),
stand-in registrar +199 (media +150). Every wait is bounded.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ivr.config.model import IvrConfig

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sipp-scenarios" / "front"
HOST = "127.0.0.1"
BLOCKS = range(10000, 15000, 200)
"""Blocks of fixed ports: below the kernel's ephemeral range (32768+), clear of tests/sip's fixed ports
(15100-15189), the e2e worker spans (16200-19999, tests/e2e/ivrkit.py), the benches (20000+) and the security
suite (21000-29000)."""


def _claim_block() -> tuple[int, int]:
    """The first free block, in random order, held with an exclusive flock for as long as this process lives:
    suites run at once (other checkouts, other engineers) never share a block."""
    for base in random.sample(list(BLOCKS), len(BLOCKS)):
        fd = os.open(f"/tmp/ivr-test-front-ports-{base}.lock", os.O_RDONLY | os.O_CREAT, 0o644)  # held until exit
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return base, fd
    raise RuntimeError(f"all {len(BLOCKS)} port blocks of the front tests are held by other test runs")


BASE, _BLOCK_LOCK = _claim_block()
FRONT_PORT = BASE
WORKER_BASE = BASE + 101
REGISTRAR_PORT = BASE + 199
RETRY_AFTER = 17
KAMAILIO = "/usr/sbin/kamailio"


def need_tools() -> None:
    if shutil.which("sipp") is None or not Path(KAMAILIO).exists():
        pytest.fail("sipp or kamailio not installed: scripts/bootstrap installs them")


def make_config(workers: int = 3, calls_per_worker: int = 2, *, listen_port: int = FRONT_PORT,
                transports: Sequence[str] = ("udp", "tcp"), front: dict[str, Any] | None = None,
                trunks: list[dict[str, Any]] | None = None) -> IvrConfig:
    raw: dict[str, Any] = {
        "sip": {"listen_host": HOST, "listen_port": listen_port, "transports": list(transports),
                "workers": workers, "calls_per_worker": calls_per_worker, "worker_base_port": WORKER_BASE,
                "rtp_ports_per_worker": 8, "retry_after": RETRY_AFTER},
        "front": {"kamailio": KAMAILIO, "probe_interval": 1, **(front or {})},
        "trunks": trunks or [{"name": "demo", "sources": ["127.0.0.1/32"]}],
        "numbers": {"*": "main"},
        "queues": {"default": {"uri": "sip:default@127.0.0.1:5070"}},
        "flows": {"main": {"steps": [{"id": "bye", "type": "hangup"}]}},
    }
    return IvrConfig.model_validate(raw)


class Uas:
    """A SIPp stand-in worker on WORKER_BASE + index; every INVITE it gets is appended to `log`."""

    def __init__(self, index: int, tmp: Path, scenario: str = "uas.xml") -> None:
        self.index, self.port, self.scenario = index, WORKER_BASE + index, scenario
        self.log = tmp / f"w{index:03d}.calls"
        self.err = tmp / f"w{index:03d}.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = ["sipp", "-sf", str(SCENARIOS / self.scenario), "-i", HOST, "-p", str(self.port),
                "-mi", HOST, "-mp", str(BASE + 110 + 4 * self.index), "-key", "log", str(self.log),
                "-nostdin", "-trace_err", "-error_file", str(self.err)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: _udp_bound(self.port), 3.0, f"sipp stand-in worker on {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def calls(self) -> list[tuple[str, str]]:
        """(call-id, X-IVR-Trunk seen) per INVITE received."""
        if not self.log.exists():
            return []
        rows = [line.split(" ", 1) for line in self.log.read_text().splitlines() if line.strip()]
        return [(row[0], row[1] if len(row) > 1 else "") for row in rows]


def _udp_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


_uac_ports = itertools.cycle(range(17))


def uac_argv(scenario: str, *, calls: int = 1, hold_ms: int = 0, source: str = HOST, rate: int = 50,
             trace: Path | None = None, timeout: int = 20) -> list[str]:
    slot = next(_uac_ports)
    port = BASE + 10 + slot
    argv = ["sipp", f"{HOST}:{FRONT_PORT}", "-sf", str(SCENARIOS / scenario), "-s", "100", "-i", source,
            "-p", str(port), "-mi", source, "-mp", str(BASE + 30 + 4 * slot), "-m", str(calls),
            "-l", str(calls), "-r", str(rate), "-rp", "1000", "-d", str(hold_ms), "-nostdin",
            "-timeout", f"{timeout}s", "-timeout_error", "-recv_timeout", "5s"]
    if trace is not None:
        argv += ["-trace_msg", "-message_file", str(trace)]
    return argv


def run_uac(scenario: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a SIPp caller to completion (bounded by its own -timeout and ours)."""
    return subprocess.run(uac_argv(scenario, **kwargs), capture_output=True, text=True, timeout=40,
                          stdin=subprocess.DEVNULL)


def sip_request(method: str = "INVITE", *, source: str = HOST, headers: dict[str, str] | None = None,
                wait: float = 1.0, target: tuple[str, int] = (HOST, FRONT_PORT)) -> str | None:
    """Send one raw SIP request over UDP; the first response within `wait`, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(wait)
        local = sock.getsockname()
        fields = {"Via": f"SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{secrets.token_hex(6)};rport",
                  "From": f"<sip:test@{local[0]}>;tag={secrets.token_hex(4)}",
                  "To": f"<sip:100@{target[0]}:{target[1]}>", "Call-ID": f"{secrets.token_hex(8)}@front-test",
                  "CSeq": f"1 {method}", "Contact": f"<sip:test@{local[0]}:{local[1]}>",
                  "Max-Forwards": "70", "User-Agent": "front-test", **(headers or {}), "Content-Length": "0"}
        text = f"{method} sip:100@{target[0]}:{target[1]} SIP/2.0\r\n"
        text += "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v) + "\r\n"
        sock.sendto(text.encode(), target)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65535).decode("utf-8", "replace")
            except TimeoutError:
                return None
            if not data.startswith("SIP/2.0 100 "):
                return data
        return None
