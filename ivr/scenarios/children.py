"""`ivr qa`'s SIPp children and its stop: SIGTERM or SIGINT ends every SIPp it started, at a safe point."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

STOP_GRACE_S = 3.0
"""Seconds a SIPp child has to exit after SIGTERM before it is killed."""


class Stop:
    """A stop asked for by SIGTERM or SIGINT. The handler only records it; the main thread raises
    KeyboardInterrupt itself at a safe point (`qa._results`), never from inside a lock: an exception raised
    asynchronously in `concurrent.futures.wait` can leave a future's lock held, and the worker thread that
    then sets that future's result blocks for ever (seen once: `ivr qa` hung after SIGINT)."""

    requested = False

    @classmethod
    def check(cls) -> None:
        if cls.requested:
            raise KeyboardInterrupt


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT stop the run like Ctrl-C while the calls run. SIGINT explicitly too: a shell starts
    background jobs with SIGINT ignored, and `kill -INT` on an `ivr qa ... &` would otherwise be lost."""
    def request(signum: int, frame: FrameType | None) -> None:
        Stop.requested = True

    Stop.requested = False
    previous = {signum: signal.signal(signum, request) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Children:
    """The SIPp processes running now; `stop` ends them all and refuses new ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[str]] = set()
        self.stopped = False

    def start(self, cmd: list[str], cwd: Path) -> subprocess.Popen[str]:
        with self._lock:
            if self.stopped:
                raise InterruptedError("ivr qa is stopping")
            # own session: a terminal's Ctrl-C reaches ivr qa only, which stops the children itself
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            self._procs.add(proc)
            return proc

    def done(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
