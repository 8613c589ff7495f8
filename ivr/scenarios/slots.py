"""The target's free call slots, read from its admin API, so `ivr qa` never starts a path the server has no
room for: a sweep must not fail because of its own scheduling.

`--parallel` counts SIPp processes, not the server's calls. A call can hold a slot on the target after its SIPp
run has ended (a caller that aborted leaves the server's call up until its own timeout; a worker restarting
lowers the capacity), and calls from elsewhere share the server. Before each job `Slots.admit` waits (bounded)
until the target's live calls (`/healthz` `live_calls`) plus the job's calls fit its capacity (`workers_ready`
x the config's `calls_per_worker`), then holds the admission until the server counts the job's first call, so
two jobs admitted back to back do not both count the same free slot. A load run (`--calls N --rate R`) is
admitted once, for its first calls: a 503 from a server it fills itself is still a FAIL.
Without an admin API to read (a remote target, admin disabled, a token not given) `ivr qa` schedules on
`--parallel` alone, as before, and says so.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from ivr.config.model import IvrConfig

POLL_S = 0.2
SETTLE_S = 3.0
"""At most this long after a job starts, its first call is expected in the target's live calls."""


@dataclass(frozen=True)
class Load:
    live: int
    capacity: int

    def fits(self, need: int) -> bool:
        """`need` more calls fit (a run bigger than the whole server waits for an idle one; no worker ready:
        nothing fits)."""
        return self.capacity > 0 and self.live + min(need, self.capacity) <= self.capacity


class Slots:
    """One target's admin API. `admit` is called from the job threads; one admission at a time."""

    def __init__(self, url: str, calls_per_worker: int, token: str | None, wait_s: float) -> None:
        self.url = url.rstrip("/")
        self.calls_per_worker = calls_per_worker
        self.token = token
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self.waited: list[tuple[str, float]] = []
        """(job, seconds) of every admission that had to wait (for the report on stderr)."""

    def load(self) -> Load | None:
        """Live calls and capacity now; None when the admin API does not answer with them."""
        request = urllib.request.Request(self.url + "/healthz", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 (operator-given URL)
                body = response.read()
        except urllib.error.HTTPError as exc:  # 503 while a worker restarts or the server drains: still JSON
            body = exc.read()
        except (urllib.error.URLError, OSError, ValueError):
            return None
        try:
            state = json.loads(body)
            live, ready = state["live_calls"], state["workers_ready"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(live, int) or not isinstance(ready, int):
            return None
        return Load(live, ready * self.calls_per_worker)

    def admit(self, job: str, need: int, started: Callable[[], Callable[[], bool]],
              stopped: Callable[[], bool]) -> tuple[bool, str]:
        """Wait until `need` calls fit on the target (at most `wait_s`), call `started()` (it starts the job and
        returns "has it exited?"), then hold the admission until the target counts one call more than its
        lowest count since, the job exited or SETTLE_S passed. Returns (True, "") when there was room, else
        (False, why) after starting the job all the same (its calls may then be refused: the row says why)."""
        with self._lock:
            began = time.monotonic()
            load = self.load()
            while load is not None and not load.fits(need):
                if stopped() or time.monotonic() - began > self.wait_s:
                    break
                time.sleep(POLL_S)
                load = self.load()
            waited = time.monotonic() - began
            if waited >= POLL_S:
                self.waited.append((job, waited))
            exited = started()
            if load is None:
                return False, "the target's admin API did not answer"
            room = load.fits(need)
            settle_until, lowest = time.monotonic() + SETTLE_S, load.live
            while time.monotonic() < settle_until and not exited() and not stopped():
                time.sleep(POLL_S / 4)
                now = self.load()
                if now is None or now.live > lowest:  # (lowest: other calls may end meanwhile)
                    break
                lowest = min(lowest, now.live)
        if room:
            return True, ""
        return False, f"the target had {load.live} of {load.capacity} calls up after waiting {waited:.0f} s"

    def wait_idle(self, stopped: Callable[[], bool]) -> bool:
        """Wait (at most `wait_s`) until the target has no call up; False when it still has some."""
        began = time.monotonic()
        while (load := self.load()) is not None and load.live > 0:
            if stopped() or time.monotonic() - began > self.wait_s:
                return False
            time.sleep(POLL_S)
        return True

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def from_config(config: IvrConfig, url: str | None, target_is_loopback: bool, target_port: int,
                wait_s: float) -> Slots | None:
    """The target's admin API: `url` (--admin), else the config's own admin address when the target is the
    config's server (a loopback address on the config's SIP port); None when there is none to read."""
    admin = config.admin
    if url is None:
        if not (admin.enabled and target_is_loopback and target_port == config.sip.listen_port):
            return None
        host = "127.0.0.1" if admin.host in ("0.0.0.0", "") else admin.host
        url = f"http://{host}:{admin.port}"
    token = os.environ.get(admin.token_env) if admin.token_env else None
    return Slots(url, config.sip.calls_per_worker, token, wait_s)
