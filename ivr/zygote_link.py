"""The controller's end of the workers' zygote (`ivr/sip/zygote.py`, which holds the protocol).

Starts the zygote on first use and again after it died; `spawn(argv, fd)` forks one worker from it and
returns a `ZygoteChild`, which stands in for `asyncio.subprocess.Process` (pid, returncode, wait, kill):
the worker is the zygote's child, so the zygote reaps it and reports its exit code. This module does not
import pjsua2 (it lives outside `ivr/sip`); only the zygote process does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from typing import Any

import structlog

log = structlog.get_logger()

READY_TIMEOUT_S = 60.0
"""Importing the worker's code on a loaded 2-core machine takes 0.3-3 s; 72 workers wait for it once."""
SPAWN_TIMEOUT_S = 10.0
MAX_MESSAGE = 65536


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ZygoteChild:
    """One worker forked by the zygote."""

    def __init__(self, pid: int, link: Zygote) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._link = link
        self._exited = asyncio.Event()

    def exited(self, code: int | None) -> None:
        self.returncode = code
        self._exited.set()

    async def wait(self) -> int | None:
        """The exit code (-signal if killed); None if the zygote died first (its workers got SIGTERM)."""
        await self._exited.wait()
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the worker's process group (the zygote does it: only it knows the pid is still ours)."""
        if not self._exited.is_set():
            self._link.request({"op": "kill", "pid": self.pid})


class Zygote:
    """The zygote process and its socket; restarted on the next spawn after it died."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[int] | None = None
        self._starts: dict[int, asyncio.Future[ZygoteChild]] = {}
        self._children: dict[int, ZygoteChild] = {}
        self._next_id = 0
        self._lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._reaping: set[asyncio.Task[int]] = set()

    @property
    def pid(self) -> int:
        return self._process.pid if self._process is not None else 0

    async def spawn(self, argv: list[str], fd: int) -> ZygoteChild:
        """Fork a worker running `python -m ivr.sip.worker <argv>` with `fd` as its --control-fd.
        OSError if the zygote cannot be started or does not answer (the caller backs off and retries)."""
        await self._ensure_started()
        self._next_id += 1
        request_id = self._next_id
        started: asyncio.Future[ZygoteChild] = asyncio.get_running_loop().create_future()
        self._starts[request_id] = started
        try:
            async with asyncio.timeout(SPAWN_TIMEOUT_S):
                await self._send_when_writable({"op": "spawn", "id": request_id, "argv": argv}, fd)
                return await started
        except TimeoutError:
            raise OSError(f"zygote did not fork a worker in {SPAWN_TIMEOUT_S:.0f}s") from None
        finally:
            self._starts.pop(request_id, None)

    def request(self, message: dict[str, Any], fd: int | None = None) -> None:
        """Send now; BlockingIOError (an OSError) if the socket's queue is full."""
        if self._sock is None:
            raise OSError("zygote is not running")
        socket.send_fds(self._sock, [json.dumps(message).encode()], [fd] if fd is not None else [])

    async def _send_when_writable(self, message: dict[str, Any], fd: int) -> None:
        """Send, waiting while the zygote's queue is full (a hundred workers asked for at start-up)."""
        loop = asyncio.get_running_loop()
        async with self._send_lock:  # one writer callback per fd: one waiting sender at a time
            while True:
                try:
                    self.request(message, fd)
                    return
                except BlockingIOError:
                    pass
                if self._sock is None:
                    raise OSError("zygote is not running")
                fileno = self._sock.fileno()
                writable: asyncio.Future[None] = loop.create_future()
                loop.add_writer(fileno, _resolve, writable)
                try:
                    await writable
                finally:
                    loop.remove_writer(fileno)

    async def close(self, timeout: float = 5.0) -> None:
        """Close the socket (the zygote exits on EOF; workers still running get SIGTERM) and reap it."""
        process = self._process
        self._drop()
        if process is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def _ensure_started(self) -> None:
        async with self._lock:
            if self._sock is not None:
                return
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "ivr.sip.zygote", "--control-fd", str(theirs.fileno()),
                    "--parent", str(os.getpid()), pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
            except OSError:
                ours.close()
                raise
            finally:
                theirs.close()
            ours.setblocking(False)
            self._sock = ours
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            loop.add_reader(ours.fileno(), self._on_readable)
            try:
                async with asyncio.timeout(READY_TIMEOUT_S):
                    pid = await self._ready
            except (TimeoutError, OSError):
                log.error("zygote.not_ready", pid=self._process.pid, timeout_s=READY_TIMEOUT_S)
                await self.close(timeout=1.0)
                raise OSError("zygote did not start") from None
            log.info("zygote.ready", pid=pid)

    def _on_readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        message = json.loads(data)
        op = message["op"]
        if op == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(int(message["pid"]))
        elif op == "started":
            child = self._children[int(message["pid"])] = ZygoteChild(int(message["pid"]), self)
            future = self._starts.get(int(message["id"]))
            if future is not None and not future.done():
                future.set_result(child)
        elif op == "spawn_failed":
            failed = self._starts.get(int(message["id"]))
            if failed is not None and not failed.done():
                failed.set_exception(OSError(f"zygote could not fork: {message['error']}"))
        elif op == "exited":
            if (gone := self._children.pop(int(message["pid"]), None)) is not None:
                gone.exited(int(message["code"]))

    def _lost(self) -> None:
        """The zygote died (or was closed): its workers got SIGTERM; nothing of theirs will be reported."""
        code = self._process.returncode if self._process is not None else None
        if self._process is not None and self._sock is not None:
            log.error("zygote.exited", pid=self._process.pid, code=code, workers=len(self._children))
            reap = asyncio.get_running_loop().create_task(self._process.wait())
            self._reaping.add(reap)
            reap.add_done_callback(self._reaping.discard)
        self._drop()

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
                asyncio.get_running_loop().remove_writer(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self._process = None
        for child in self._children.values():
            child.exited(None)
        self._children.clear()
        for future in self._starts.values():
            if not future.done():
                future.set_exception(OSError("zygote exited"))
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(OSError("zygote exited before it was ready"))
