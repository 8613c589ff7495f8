"""Harness for the SIP worker tests (used by conftest.py and the tests): spawn the real worker process
on a socketpair, drive it with a tiny scripted controller, and place real calls with SIPp on 127.0.0.1.

Ports: worker SIP 15100-15139 (UDP+TCP), SIPp signalling 15150-15189, worker RTP 31000-31799,
SIPp media 31800-31999. Every wait is bounded.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ivr.flow import commands, events
from ivr.sip import wire

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sipp-scenarios"
PROMPTS = ROOT / "prompts"
HOST = "127.0.0.1"
_slots = itertools.count()

Script = Callable[["Controller", str, Any], None]
"""Called for every event from the worker: (controller, call id, event)."""


@dataclass
class Ports:
    sip: int
    rtp: int
    sipp: int
    sipp_media: int


def next_ports() -> Ports:
    i = next(_slots) % 40
    return Ports(sip=15100 + i, rtp=31000 + 20 * i, sipp=15150 + i, sipp_media=31800 + 4 * (i % 50))


@dataclass
class Controller:
    """A scripted stand-in for the controller: reads the worker's events, runs `script` on each."""

    sock: socket.socket
    script: Script
    events: list[tuple[float, str, Any]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)
    play_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def send(self, call: str, command: Any) -> None:
        try:
            self.sock.sendall(wire.encode(call, command))
        except OSError:
            pass

    def run(self) -> None:
        with self.sock.makefile("rb") as stream:
            for line in stream:
                call, event = wire.decode(line)
                with self.changed:
                    self.events.append((time.monotonic(), call, event))
                    self.changed.notify_all()
                if isinstance(event, events.WorkerReady):
                    self.ready.set()
                try:
                    self.script(self, call, event)
                except Exception as exc:  # a broken script must show in the test, not kill the reader
                    print("script failed:", repr(exc), file=sys.stderr)
        self.closed.set()

    def of(self, kind: type, call: str | None = None) -> list[Any]:
        with self.changed:
            return [e for _, c, e in self.events if isinstance(e, kind) and (call is None or c == call)]

    def calls(self) -> list[str]:
        with self.changed:
            return [c for _, c, e in self.events if isinstance(e, events.CallOffered)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    ctl: Controller
    ports: Ports
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close_control(self) -> None:
        try:
            self.ctl.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ctl.sock.close()


def ivr_script(
    prompts: tuple[str, ...] = ("welcome",),
    transfer_on: str | None = None,
    uri: str = "sip:sales@127.0.0.1:5999",
    answer: bool = True,
    headers: tuple[tuple[str, str], ...] = (("X-IVR-Queue", "sales"),),
) -> Script:
    """Answer and play `prompts`; after the digits `transfer_on` REFER to `uri`; on a final transfer
    status, or when playback ends with no transfer planned, hang up."""
    digits: dict[str, str] = {}

    def script(ctl: Controller, call: str, event: Any) -> None:
        match event:
            case events.CallOffered():
                if answer:
                    ctl.send(call, commands.Answer())
                    ctl.send(call, commands.Play(next(ctl.play_ids), prompts))
            case events.DigitReceived(digit=d):
                digits[call] = digits.get(call, "") + d
                if transfer_on is not None and digits[call] == transfer_on:
                    ctl.send(call, commands.Transfer(queue="sales", uri=uri, headers=headers))
            case events.TransferProgress(final=True):
                ctl.send(call, commands.HangUp(reason="transferred"))
            case events.PlaybackFinished() if transfer_on is None:
                ctl.send(call, commands.HangUp(reason="done"))

    return script


def sipp(
    worker: Worker,
    scenario: str,
    *args: str,
    calls: int = 1,
    limit: int | None = None,
    rate: str = "10",
    timeout: float = 40.0,
    transport: str = "u1",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a SIPp scenario against the worker (127.0.0.1 only) and wait for it, bounded."""
    if shutil.which("sipp") is None:
        pytest.fail("sipp not installed: scripts/bootstrap installs Debian's sip-tester")
    argv = [
        "sipp", f"{HOST}:{worker.ports.sip}", "-sf", str(SCENARIOS / scenario), "-i", HOST,
        "-p", str(worker.ports.sipp), "-mi", HOST, "-mp", str(worker.ports.sipp_media), "-t", transport,
        "-m", str(calls), "-l", str(limit or calls), "-r", rate, "-s", "100", "-set", "caller", "5551234",
        "-nostdin", "-timeout", f"{int(timeout)}s", "-timeout_error", "-trace_err", "-trace_logs",
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 15,
                            cwd=worker.stderr_path.parent)
    if check and result.returncode != 0:
        pytest.fail(f"sipp {scenario} failed rc={result.returncode}\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-2000:]}\nworker:\n{worker.stderr()[-4000:]}")
    return result
