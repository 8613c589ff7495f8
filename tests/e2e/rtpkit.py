"""A tiny RTP endpoint for tests: sends G.711 frames filled with one "mark" byte every 20 ms to every address
it has heard from, and counts the packets it receives by the mark that fills them. A call's SDP points at it
(c=/m=), so a test can prove audio crossed a bridge in each direction without a sound card or a mock."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections import Counter

FRAME = 160
"""20 ms of 8 kHz G.711."""
SILENCE = frozenset({0xFF, 0x7F})


class RtpPeer:
    """Bound on `host`:`port` (chosen by the kernel); runs at most `limit_s` seconds."""

    def __init__(self, mark: int, host: str = "127.0.0.1", limit_s: float = 120.0) -> None:
        self.mark = mark
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.received: Counter[str] = Counter()
        """Packets by content: "mark:0xNN" (filled with one byte), "silence", "other" (tones, mixes)."""
        self.peers: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._limit = limit_s
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RtpPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def count(self, kind: str) -> int:
        with self._lock:
            return self.received[kind]

    def marked(self, mark: int) -> int:
        return self.count(f"mark:{mark:#04x}")

    def _run(self) -> None:
        seq, stamp, ssrc = 0, 0, 0x1000 + self.mark
        end = time.monotonic() + self._limit
        next_send = time.monotonic()
        payload = bytes([self.mark]) * FRAME
        while not self._stop.is_set() and time.monotonic() < end:
            wait = max(0.0, next_send - time.monotonic())
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                data, addr = self.sock.recvfrom(2048)
                self._classify(data, addr)
                continue
            next_send += 0.02
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, stamp & 0xFFFFFFFF, ssrc)
            for addr in list(self.peers):
                self.sock.sendto(header + payload, addr)
            seq, stamp = seq + 1, stamp + FRAME

    def _classify(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or data[1] & 0x7F != 0:
            return  # not PCMU RTP (telephone-events; RTCP goes to port + 1, never here)
        payload = data[12:]
        self.peers.add(addr)
        if not payload:
            return
        top, hits = Counter(payload).most_common(1)[0]
        if all(b in SILENCE for b in payload):
            kind = "silence"
        elif hits >= len(payload) * 3 // 4:
            kind = f"mark:{top:#04x}"
        else:
            kind = "other"
        with self._lock:
            self.received[kind] += 1
