"""SIPp agents' phones (sipp-scenarios/agent.xml) on free loopback ports, for queue targets in end-to-end tests."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from sippkit import SCENARIOS, free_udp_port

_CALL = re.compile(r"AGENT (\S+) customer (\S*) tier (\S*) ruri (\S+) call (\S+)")


@dataclass(frozen=True, slots=True)
class AgentCall:
    agent: str
    customer: str
    tier: str
    ruri: str
    call_id: str


@dataclass
class Agent:
    """One SIPp UAS answering `answer` (200, 486, 603) on 127.0.0.1:port; stopped by `stop()`."""

    name: str
    workdir: Path
    answer: str = "200"
    port: int = field(default_factory=free_udp_port)
    proc: subprocess.Popen[str] | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"agent-{self.name}-{self.port}.log"

    def start(self, calls: int = 100) -> Agent:
        binary = shutil.which("sipp")
        assert binary, "sipp is not installed: scripts/bootstrap installs Debian's sip-tester"
        cmd = [binary, "-sf", str(SCENARIOS / "agent.xml"), "-i", "127.0.0.1", "-p", str(self.port),
               "-mi", "127.0.0.1", "-mp", str(free_udp_port()), "-m", str(calls), "-nostdin", "-trace_logs",
               "-log_file", str(self.log), "-trace_err", "-error_file", str(self.workdir / f"agent-{self.name}.err"),
               "-timeout", "300s", "-set", "agent", self.name, "-set", "answer", self.answer]
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._wait_bound()
        return self

    def _wait_bound(self, timeout: float = 10.0) -> None:
        """Until SIPp holds its port (binding it ourselves fails), so no INVITE is sent into the void."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            assert self.proc.poll() is None, self.proc.communicate()[0][-2000:]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            time.sleep(0.05)
        raise AssertionError(f"agent {self.name} did not bind 127.0.0.1:{self.port}")

    def calls(self) -> list[AgentCall]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [AgentCall(*m.groups()) for m in _CALL.finditer(text)]

    def stop(self) -> str:
        """Stop the agent; its output (for failure messages)."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out[-2000:]
