"""Runs the real `ivr run` as a child process for end-to-end tests and reads its JSON log lines."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ivr.front.rpc import KamailioRpc, RpcUnavailable

ROOT = Path(__file__).resolve().parents[2]
IVR = [sys.executable, "-m", "ivr"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_span(span: int, host: str = "127.0.0.1", ports: range = range(16200, 20000)) -> int:
    """The first of `span` consecutive ports free on `host` for UDP and TCP (a multi-worker server's worker
    ports). Drawn at random from `ports`, below the kernel's ephemeral range (32768+), so no socket the kernel
    numbers itself lands in the span between this check and the workers' bind; clear of tests/front's blocks
    (10000-14999), tests/sip's fixed ports (15100-15189) and the benches (20000+)."""
    for _ in range(50):
        base = random.randrange(ports.start, ports.stop - span)
        if all(_free(host, base + i) for i in range(span)):
            return base
    raise AssertionError(f"no {span} consecutive free ports on {host} in {ports}")


def _free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def default_config() -> dict[str, Any]:
    """config/ivr.yaml as a dict, with paths made absolute so the copy can live anywhere."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    data["prompts_dir"] = str(ROOT / "prompts")
    data["demo_crm"]["customers"] = str(ROOT / "config" / "customers.yaml")
    return data


class IvrServer:
    """`ivr run CONFIG` in the background; `lines` holds its decoded JSON log lines."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    @property
    def sip_port(self) -> int:
        return int(self.config["sip"]["listen_port"])

    def start(self, timeout: float = 30.0) -> IvrServer:
        path = self.workdir / "ivr.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([*IVR, "run", str(path), "--run-dir", str(self.workdir / "run")], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda e: e.get("event") == "ivr.ready", timeout, what="ivr.ready")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.raw.append(line)
                try:
                    obj = json.loads(line)
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    self.lines.append(obj)
                self._cond.notify_all()

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0,
                 what: str = "log line") -> dict[str, Any]:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for obj in self.lines:
                    if match(obj):
                        return obj
                if self.proc is not None and self.proc.poll() is not None:
                    end = min(end, time.monotonic() + 1.0)  # let the reader catch the last lines
                left = end - time.monotonic()
                if left <= 0:
                    tail = "".join(line[:300].rstrip() + "\n" for line in self.raw[-25:])
                    raise AssertionError(f"no {what} within {timeout:.0f}s; server output tail:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def call_ended(self, sip_call_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The canonical log line of the call whose SIP Call-ID contains `sip_call_id`."""
        return self.wait_for(lambda e: e.get("event") == "call.ended" and sip_call_id in str(e.get("sip_call_id")),
                             timeout, what=f"call.ended for {sip_call_id}")

    def dispatcher_flags(self, worker: str) -> str | None:
        """The managed front's dispatcher flags for `worker` ("w000"; "AP": active and probing), over its RPC
        socket; None when the front does not answer."""
        port = int(self.config["sip"]["worker_base_port"]) + int(worker.lstrip("w"))
        rpc = KamailioRpc(self.workdir / "run" / "front" / "kamailio_rpc.sock", timeout=2.0)
        try:
            listing = asyncio.run(rpc.call("dispatcher.list"))
        except RpcUnavailable:
            return None
        found: list[str] = []

        def walk(node: object) -> None:
            if isinstance(node, dict):
                if str(node.get("URI", "")).endswith(f":{port}") and "FLAGS" in node:
                    found.append(str(node["FLAGS"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(listing)
        assert len(found) <= 1, found
        return found[0] if found else None

    def wait_front_active(self, worker: str, timeout: float = 15.0) -> None:
        """Until the front routes calls to `worker` again (a restarted worker: at the first OPTIONS probe it
        answers), instead of sleeping for probe intervals."""
        end = time.monotonic() + timeout
        while not (self.dispatcher_flags(worker) or "").startswith("A"):
            assert time.monotonic() < end, f"{worker} not active at the front: {self.dispatcher_flags(worker)}"
            time.sleep(0.2)

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.lines if e.get("event") == name]

    def stop(self, timeout: float = 30.0, *, check_records: bool = True) -> int:
        """SIGTERM and wait; then every call.ended line must have exactly one identical row in the store."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if check_records and self.proc.returncode == 0 and self.config.get("records", {}).get("store") != "none":
            self.check_records()
        return int(self.proc.returncode)

    def check_records(self) -> None:
        """Calls placed = rows stored, each row identical to its `call.ended` log line (SQLite store)."""
        from recordkit import assert_rows_match_lines, sqlite_rows

        rows = sqlite_rows(self.workdir / "run" / self.config.get("records", {}).get("path", "records.sqlite3"))
        assert_rows_match_lines(rows, self.events("call.ended"))
