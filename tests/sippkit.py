"""Runs real SIPp (Debian `sip-tester`) against a server on 127.0.0.1, with every run bounded in time."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "sipp-scenarios"


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_media_port(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port for SIPp's `-mp`: SIPp binds it and the video port 2 above it (RTCP 1 above each); all four must
    be free, or SIPp fails the run with "Unable to bind video RTP socket"."""
    for _ in range(attempts):
        base = free_udp_port(host)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + 4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no four consecutive free UDP ports for SIPp media")


@dataclass
class SippRun:
    returncode: int
    output: str
    log: str
    """The scenario's -trace_logs file (its <log> actions)."""

    def describe(self) -> str:
        return f"sipp exit {self.returncode}\n--- output ---\n{self.output[-3000:]}\n--- log ---\n{self.log[-2000:]}"


def sipp(port: int, scenario: str, *, service: str, tag: str, workdir: Path, variables: dict[str, str] | None = None,
         keys: dict[str, str] | None = None, calls: int = 1, concurrency: int = 1, rate: float = 10.0,
         local_ip: str = "127.0.0.1", duration_ms: int | None = None, timeout: float = 60.0,
         background: bool = False, remote_host: str = "127.0.0.1") -> SippRun | subprocess.Popen[str]:
    """Place `calls` calls with `scenario` at 127.0.0.1:`port`; Call-IDs start with `tag` so the test can find
    the server's log line for each call."""
    binary = shutil.which("sipp")
    assert binary, "sipp is not installed: scripts/bootstrap installs Debian's sip-tester"
    cmd = [binary, f"{remote_host}:{port}", "-sf", str(SCENARIOS / scenario), "-s", service,
           "-i", local_ip, "-p", str(free_udp_port(local_ip)), "-mi", local_ip, "-mp", str(free_media_port(local_ip)),
           "-m", str(calls), "-l", str(concurrency), "-r", str(rate), "-cid_str", f"{tag}-%u-%p@%s",
           "-timeout", f"{int(timeout)}s", "-timeout_error", "-nostdin", "-trace_logs",
           "-log_file", str(workdir / f"{tag}.log"), "-trace_err", "-error_file", str(workdir / f"{tag}.err")]
    for name, value in (variables or {}).items():
        cmd += ["-set", name, value]
    for name, value in (keys or {}).items():
        cmd += ["-key", name, value]
    if duration_ms is not None:
        cmd += ["-d", str(duration_ms)]
    if background:
        return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout + 30)
    return collect(proc.returncode, proc.stdout + proc.stderr, workdir, tag)


def collect(returncode: int, output: str, workdir: Path, tag: str) -> SippRun:
    log = workdir / f"{tag}.log"
    err = workdir / f"{tag}.err"
    text = (log.read_text(errors="replace") if log.exists() else "") + (
        err.read_text(errors="replace") if err.exists() else "")
    return SippRun(returncode, output, text)
