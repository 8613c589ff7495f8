"""A real PostgreSQL server (Debian's postgresql-15 binaries) on a free loopback port, for tests.

As root the server must run as another user: the data directory is made in /tmp (pytest's tmp dirs are
root-only) and owned by `postgres`, and the postmaster is exec'd as that user with a session of its own, so
`kill()` can SIGKILL the postmaster and all its children at once, like a crash of the database host (each
PostgreSQL child calls setsid(), so a process-group kill would miss them: they are found through /proc).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"


def _die_with_parent() -> None:
    """In the child (after the switch to the postgres user): SIGKILL it if the test process dies first, so a
    killed pytest leaves no server behind (the children follow a dead postmaster by themselves)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="ivr-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_user = os.geteuid() == 0
        if self._as_user:
            entry = pwd.getpwnam(USER)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run([str(BIN / "initdb"), "-D", str(self.data), "-U", "ivr", "--auth=trust", "-E", "UTF8",
                   "--no-sync"])

    @property
    def dsn(self) -> str:
        return f"postgresql://ivr@127.0.0.1:{self.port}/postgres"

    def _kwargs(self) -> dict[str, object]:
        return {"user": USER, "group": USER, "extra_groups": []} if self._as_user else {}

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       **self._kwargs())  # type: ignore[call-overload]

    def start(self, timeout: float = 30.0) -> PgServer:
        log = open(self.dir / "postgres.log", "ab")  # noqa: SIM115  # owned by the child
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            [str(BIN / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.dir), "-c", "fsync=on", "-c", "max_connections=50"],
            stdout=log, stderr=log, start_new_session=True, preexec_fn=_die_with_parent, **self._kwargs())
        end = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                if time.monotonic() > end or self.proc.poll() is not None:
                    self.kill()  # never leave a half-started server behind
                    raise AssertionError(f"postgres did not start: {self.log_tail()}") from None
                time.sleep(0.2)

    def family(self) -> list[int]:
        """The postmaster's pid and its children's (backends, checkpointer, walwriter, ...)."""
        assert self.proc is not None
        pids = [self.proc.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.append(int(stat.parent.name))
        return pids

    def signal_all(self, sig: signal.Signals) -> None:
        for pid in self.family():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children at once (a crash, not a shutdown)."""
        assert self.proc is not None
        self.signal_all(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def rows(self) -> list[dict[str, object]]:
        with psycopg.connect(self.dsn) as conn:
            return [record for (record,) in conn.execute("SELECT record FROM calls").fetchall()]
