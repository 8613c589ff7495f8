"""`ivr qa` refuses what it must not do before any packet is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
