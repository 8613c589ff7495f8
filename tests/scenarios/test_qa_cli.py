"""`ivr qa` refuses what it must not do before any packet is sent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _qa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ivr", "qa", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_a_non_loopback_target_needs_allow_remote() -> None:
    done = _qa("--target", "192.0.2.1:5060")  # TEST-NET-1: refused before anything is generated or sent
    assert done.returncode == 2
    assert "not a loopback address" in done.stderr and "--allow-remote" in done.stderr


def test_calls_are_bounded() -> None:
    done = _qa("--target", "127.0.0.1:5060", "--calls", "100000")
    assert done.returncode == 2 and "--calls must be" in done.stderr


def test_a_path_glob_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    done = _qa("--target", "127.0.0.1:5060", "--path", "nothing.like.this", "--out", str(tmp_path))
    assert done.returncode == 2 and "no path matches" in done.stderr


def _sipp_in(directory: Path) -> list[int]:
    """Pids of the SIPp processes running in `directory` (ivr qa runs each SIPp from its scenarios' directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "sipp" and \
                    Path(os.readlink(proc / "cwd")) == directory:
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_sipp_child_of_a_parallel_run(tmp_path: Path, signum: int) -> None:
    # A target that takes the INVITEs and never answers: every SIPp waits, as on a hung server.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        out = (tmp_path / "out").resolve()
        qa = subprocess.Popen([sys.executable, "-m", "ivr", "qa", "--target", f"127.0.0.1:{port}", "--out", str(out),
                               "--path", "vip_routing.unknown.*", "--parallel", "3", "--crm-control",
                               "http://127.0.0.1:9/"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        try:
            deadline = time.monotonic() + 60
            while len(_sipp_in(out)) < 3 and time.monotonic() < deadline and qa.poll() is None:
                time.sleep(0.2)
            running = _sipp_in(out)
            assert len(running) == 3, "three paths side by side, each with its own SIPp"
            assert silent.recv(65536).startswith(b"INVITE ")
            qa.send_signal(signum)  # to ivr qa alone: the SIPp children are in their own session
            _, err = qa.communicate(timeout=30)
        finally:
            if qa.poll() is None:
                qa.kill()
                qa.communicate()
    assert qa.returncode == 130, err
    assert "interrupted" in err
    assert _sipp_in(out) == []
    for pid in running:
        assert not Path(f"/proc/{pid}").exists() or (Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z")
