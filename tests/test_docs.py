"""Docs that run: every `sh` block of README.md and sipp-scenarios/README.md is executed verbatim against
`scripts/run`'s default configuration, so the docs cannot drift from the product.

Blocks that call the server (127.0.0.1:5060, a worker port, the admin port) get one `ivr run config/ivr.yaml`
started by this module on the DEFAULT ports (the one place in the suite that uses them; the blocks run one
after another). A block preceded by `<!-- docs-test: skip REASON -->` is not run (keep that list tiny).
Each block runs in `bash -e -o pipefail` from a sandbox that links the worktree's .venv, config, prompts and
scripts and holds a copy of sipp-scenarios, so logs and generated files stay out of the worktree.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "sipp-scenarios/README.md")
_BLOCK = re.compile(r"(?:<!--\s*docs-test:\s*(?P<directive>[^>]*?)\s*-->\s*\n)?^```sh\n(?P<body>.*?)^```", re.S | re.M)
NEEDS_SERVER = re.compile(r"127\.0\.0\.1:(5060|51\d\d|8080)\b")
BLOCK_TIMEOUT = 900
DEFAULT_PORTS = ((5060, socket.SOCK_DGRAM), (5100, socket.SOCK_DGRAM), (8080, socket.SOCK_STREAM),
                 (8081, socket.SOCK_STREAM))
PORT_WAIT = 600
LOCK = Path("/tmp/ivr-docs-test-default-ports.lock")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    body: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(root: Path = ROOT) -> list[Block]:
    """The `sh` code blocks of the docs, with the skip directive written just before each."""
    found = []
    for doc in DOCS:
        text = (root / doc).read_text()
        for match in _BLOCK.finditer(text):
            directive = (match.group("directive") or "").strip()
            skip = directive[len("skip"):].strip() or "no reason given" if directive.startswith("skip") else None
            line = text.count("\n", 0, match.start("body"))
            found.append(Block(doc, line, match.group("body"), skip))
    return found


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    box = tmp_path_factory.mktemp("docs")
    for name in (".venv", "config", "prompts", "scripts", "ivr"):
        (box / name).symlink_to(ROOT / name)
    for name in ("sipp-scenarios", "docs"):  # copies: blocks write into them
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, box / name)
    return box


@pytest.fixture(scope="module")
def default_server(sandbox: Path) -> Iterator[subprocess.Popen[str]]:
    """`ivr run config/ivr.yaml` exactly as scripts/run starts it (minus the bootstrap), on the default ports."""
    lock = open(LOCK, "w")  # noqa: SIM115 (closed below): serialises docs tests of every worktree
    fcntl.flock(lock, fcntl.LOCK_EX)
    busy = _busy_ports(PORT_WAIT)
    assert not busy, f"default ports {busy} still in use after {PORT_WAIT} s: the docs test needs them"
    log = open(sandbox / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([str(ROOT / ".venv/bin/ivr"), "run", "config/ivr.yaml", "--run-dir", str(sandbox / "run")],
                            cwd=sandbox, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_ready(proc, sandbox / "server.log")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        lock.close()


def _busy_ports(wait: float) -> list[int]:
    """The default ports still taken after waiting up to `wait` seconds for them (another run may end)."""
    end = time.monotonic() + wait
    while True:
        busy = [p for p, k in DEFAULT_PORTS if not _port_free(p, k)]
        if not busy or time.monotonic() > end:
            return busy
        time.sleep(2)


def _wait_ready(proc: subprocess.Popen[str], log: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in log.read_text(errors="replace").splitlines():
            try:
                if json.loads(line).get("event") == "ivr.ready":
                    return
            except ValueError:
                continue
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"the default server did not start:\n{log.read_text(errors='replace')[-3000:]}")


def run_block(block: Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{cwd / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.body], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT)


def test_docs_have_blocks_and_few_skips() -> None:
    found = blocks()
    assert len(found) >= 5
    assert sum(1 for b in found if b.skip) <= 3, [b.id for b in found if b.skip]


@pytest.mark.sip
@pytest.mark.parametrize("block", blocks(), ids=lambda b: b.id)
def test_doc_block_runs(block: Block, sandbox: Path, request: pytest.FixtureRequest) -> None:
    if block.skip:
        pytest.skip(f"docs-test: skip {block.skip}")
    if NEEDS_SERVER.search(block.body):
        request.getfixturevalue("default_server")
    done = run_block(block, sandbox)
    assert done.returncode == 0, (f"{block.id} failed (exit {done.returncode}):\n{block.body}\n--- stdout ---\n"
                                  f"{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")


if __name__ == "__main__":  # list the blocks: python tests/test_docs.py
    for b in blocks():
        print(b.id, "SKIP " + b.skip if b.skip else "", file=sys.stdout)
