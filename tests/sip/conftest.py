"""Fixtures for the SIP worker tests: the worker process and its scripted controller (sip_harness.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sip_harness import HOST, PROMPTS, ROOT, Controller, Script, Worker, next_ports


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start a worker with a script; the fixture stops it (and checks it exited cleanly) at the end."""
    started: list[Worker] = []

    def spawn(script: Script, max_calls: int = 4, answer_timeout: float = 5.0, **extra: Any) -> Worker:
        ports = next_ports()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        err = tmp_path / f"worker-{ports.sip}.stderr"
        argv = [
            sys.executable, "-m", "ivr.sip.worker", "--name", "w000", "--control-fd", str(theirs.fileno()),
            "--sip-host", HOST, "--sip-port", str(ports.sip), "--rtp-port", str(ports.rtp),
            "--rtp-port-count", "20", "--media-address", HOST, "--prompts", str(PROMPTS),
            "--max-calls", str(max_calls), "--log-level", extra.get("log_level", "debug"),
            "--answer-timeout", str(answer_timeout),
        ]
        with err.open("wb") as err_file:
            proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()], stderr=err_file, cwd=ROOT)
        theirs.close()
        ctl = Controller(ours, script)
        threading.Thread(target=ctl.run, daemon=True).start()
        worker = Worker(proc, ctl, ports, err)
        started.append(worker)
        assert ctl.ready.wait(10), f"worker not ready:\n{worker.stderr()}"
        return worker

    yield spawn
    for worker in started:
        if worker.proc.poll() is None:
            worker.close_control()
            try:
                worker.proc.wait(10)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait(5)
                pytest.fail(f"worker did not exit on control EOF:\n{worker.stderr()[-3000:]}")


