"""Local UDP ports for the SIPp callers of `ivr qa`: a SIP port and a media block per run, never shared.

SIPp binds more than the `-mp` it is given: audio RTP on mp, RTCP on mp+1, video RTP on mp+2 and its RTCP on
mp+3. A single free port for `-mp` left mp+2 to chance, and on a machine where other servers hold RTP ports
in the ephemeral range SIPp died with "Unable to bind video RTP socket" before its call (the failure of the
clean-clone run). A block is free only when all four ports bind at once, and a port handed to a running job
is not handed out again until that job releases it.
"""

from __future__ import annotations

import socket
import threading
from contextlib import ExitStack
from dataclasses import dataclass

MEDIA_BLOCK = 4
"""Ports SIPp binds from its -mp: audio RTP, audio RTCP, video RTP, video RTCP."""
ATTEMPTS = 200


@dataclass(frozen=True)
class Ports:
    sip: int
    media: int
    """The first of MEDIA_BLOCK consecutive ports (SIPp's -mp)."""

    def all(self) -> tuple[int, ...]:
        return (self.sip, *range(self.media, self.media + MEDIA_BLOCK))


class PortPool:
    """Hands out free SIP ports and media blocks on `host` to concurrent jobs of one `ivr qa` run."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._lock = threading.Lock()
        self._taken: set[int] = set()

    def reserve(self) -> Ports:
        """Ports free now and not held by another job; OSError when none are found (a saturated host)."""
        with self._lock:
            media = self._block(MEDIA_BLOCK)
            sip = self._block(1, avoid=set(range(media, media + MEDIA_BLOCK)))
            ports = Ports(sip, media)
            self._taken.update(ports.all())
            return ports

    def release(self, ports: Ports) -> None:
        with self._lock:
            self._taken.difference_update(ports.all())

    def _block(self, size: int, avoid: frozenset[int] | set[int] = frozenset()) -> int:
        for _ in range(ATTEMPTS):
            first = self._ephemeral() // size * size  # aligned: blocks of two jobs never overlap
            wanted = range(first, first + size)
            if first < 1024 or any(p in self._taken or p in avoid for p in wanted):
                continue
            if self._all_bind(wanted):
                return first
        raise OSError(f"no {size} consecutive free UDP ports on {self.host} after {ATTEMPTS} attempts")

    def _ephemeral(self) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.host, 0))
            return int(s.getsockname()[1])

    def _all_bind(self, wanted: range) -> bool:
        with ExitStack() as stack:
            for port in wanted:
                s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                try:
                    s.bind((self.host, port))
                except OSError:
                    return False
        return True
