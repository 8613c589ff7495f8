"""The bench callers' media end: an RTP echo that measures what the server sends (bench only, 127.0.0.1 only).

SIPp places the calls but puts one of these ports in its SDP (`[field0]` from a CSV, see
sipp-scenarios/bench/). For every RTP packet a worker sends, the meter records sequence number and arrival
time per stream (port + SSRC) and sends the packet straight back with its own SSRC, so RTP flows both ways
for the whole call. RTCP (odd ports) is read and counted. On SIGTERM/SIGINT, or after --max-seconds, it
writes per-run totals as JSON to --out and exits.

What it reports, per stream and in total:
- `lost_seq`: sequence numbers never seen (between a stream's first and highest);
- `deficit_time`: packets missing against the 20 ms clock between a stream's first and last packet
  (catches a sender that stalls without skipping sequence numbers), beyond a tolerance of 1 packet + 0.2%
  for clock drift between the sender's media clock and ours (`deficit_time_raw` without it);
- inter-arrival histogram (a stall of the worker's media clock shows as gaps > 40 ms).
Loss on the way back (meter -> worker) shows in the kernel's UDP receive-buffer drops, which
bench/capacity.py reads from /proc; on loopback that is the only place a datagram can be lost.

    .venv/bin/python bench/rtpmeter.py --base 44000 --count 600 --out /tmp/rtp.json
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
PTIME_S = 0.020
BUCKETS_MS = (25, 40, 60, 100, 200)
"""Inter-arrival histogram upper bounds (ms); one more bucket holds everything above the last."""
MIN_PACKETS = 5
"""Streams shorter than this are not judged (a call that ended at once)."""


@dataclass
class Stream:
    port: int
    ssrc: int
    first_t: float
    first_seq: int
    last_t: float = 0.0
    ext_max: int = 0
    packets: int = 0
    out_of_order: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))
    max_gap_ms: float = 0.0

    def add(self, seq: int, now: float) -> None:
        if self.packets == 0:
            self.ext_max = seq
            self.last_t = now
            self.packets = 1
            return
        gap_ms = (now - self.last_t) * 1000
        self.last_t = now
        self.packets += 1
        base = self.ext_max & ~0xFFFF
        ext = base | seq
        if ext < self.ext_max - 0x8000:
            ext += 0x10000
        elif ext > self.ext_max + 0x8000:
            ext -= 0x10000
        if ext > self.ext_max:
            self.ext_max = ext
        else:
            self.out_of_order += 1
        if gap_ms > self.max_gap_ms:
            self.max_gap_ms = gap_ms
        for i, bound in enumerate(BUCKETS_MS):
            if gap_ms <= bound:
                self.hist[i] += 1
                break
        else:
            self.hist[-1] += 1

    def summary(self) -> dict[str, float | int]:
        expected_seq = self.ext_max - self.first_seq + 1
        expected_time = round((self.last_t - self.first_t) / PTIME_S) + 1
        raw = max(0, expected_time - self.packets)
        return {"packets": self.packets, "lost_seq": max(0, expected_seq - self.packets),
                "deficit_time": max(0, raw - 1 - expected_time // 500), "deficit_time_raw": raw,
                "out_of_order": self.out_of_order,
                "max_gap_ms": round(self.max_gap_ms, 1), "seconds": round(self.last_t - self.first_t, 2)}


class Meter:
    """Binds `count` RTP ports (even, from `base`) and their RTCP ports; echoes and measures."""

    def __init__(self, base: int, count: int) -> None:
        self.base = base
        self.socks: dict[int, tuple[socket.socket, int]] = {}
        self.epoll = select.epoll()
        for i in range(count):
            for port in (base + 2 * i, base + 2 * i + 1):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
                sock.bind((HOST, port))
                sock.setblocking(False)
                self.socks[sock.fileno()] = (sock, port)
                self.epoll.register(sock.fileno(), select.EPOLLIN)
        self.current: dict[int, Stream] = {}
        self.done: list[Stream] = []
        self.rtcp = 0
        self.echoed = 0
        self.send_errors = 0
        self.started = time.time()

    def run(self, until: float) -> None:
        unpack = struct.Struct("!HHII").unpack_from
        stop = False

        def on_signal(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop and time.monotonic() < until:
            for fd, _ in self.epoll.poll(0.5):
                sock, port = self.socks[fd]
                try:
                    data, addr = sock.recvfrom(2048)
                except BlockingIOError:
                    continue
                if port & 1:
                    self.rtcp += 1
                    continue
                if len(data) < 12:
                    continue
                now = time.monotonic()
                _, seq, _, ssrc = unpack(data)
                stream = self.current.get(port)
                if stream is None or stream.ssrc != ssrc:
                    if stream is not None:
                        self.done.append(stream)
                    stream = self.current[port] = Stream(port, ssrc, now, seq)
                stream.add(seq, now)
                try:
                    sock.sendto(data[:8] + struct.pack("!I", ssrc ^ 0x5A5A5A5A) + data[12:], addr)
                    self.echoed += 1
                except OSError:
                    self.send_errors += 1

    def report(self) -> dict[str, object]:
        streams = [s for s in (*self.done, *self.current.values()) if s.packets >= MIN_PACKETS]
        sums = [s.summary() for s in streams]
        hist = [sum(s.hist[i] for s in streams) for i in range(len(BUCKETS_MS) + 1)]
        labels = [f"<={b}ms" for b in BUCKETS_MS] + [f">{BUCKETS_MS[-1]}ms"]
        worst = sorted(sums, key=lambda s: (s["lost_seq"], s["deficit_time"]), reverse=True)[:5]
        return {
            "streams": len(streams),
            "packets": sum(int(s["packets"]) for s in sums),
            "lost_seq": sum(int(s["lost_seq"]) for s in sums),
            "deficit_time": sum(int(s["deficit_time"]) for s in sums),
            "deficit_time_raw": sum(int(s["deficit_time_raw"]) for s in sums),
            "out_of_order": sum(int(s["out_of_order"]) for s in sums),
            "streams_with_loss": sum(1 for s in sums if s["lost_seq"]),
            "max_gap_ms": max((float(s["max_gap_ms"]) for s in sums), default=0.0),
            "interarrival": dict(zip(labels, hist, strict=True)),
            "echoed": self.echoed, "echo_send_errors": self.send_errors, "rtcp": self.rtcp,
            "worst_streams": worst,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=int, required=True, help="first RTP port (even); RTCP on port + 1")
    p.add_argument("--count", type=int, default=400, help="number of RTP ports (default: %(default)s)")
    p.add_argument("--out", required=True, help="JSON report written on exit")
    p.add_argument("--max-seconds", type=float, default=1800, help="exit after this long (default: %(default)s)")
    args = p.parse_args(argv)
    if args.base % 2 or not 1024 <= args.base <= 65535 - 2 * args.count:
        p.error("--base must be even and leave room for 2 x --count ports")
    meter = Meter(args.base, args.count)
    print(f"rtpmeter: listening on {HOST}:{args.base}-{args.base + 2 * args.count - 1}", file=sys.stderr, flush=True)
    meter.run(time.monotonic() + args.max_seconds)
    with open(args.out, "w") as f:
        json.dump(meter.report(), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
