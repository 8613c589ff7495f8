#!/usr/bin/env python3
"""Writes RFC 4733 telephone-event pcaps for SIPp's `play_pcap_audio`, one file per digit string.

Unlike SIPp's stock dtmf_2833_*.pcap, one file carries a whole digit string on ONE RTP stream with
continuous sequence numbers and timestamps, so a repeated digit ("112#") is seen as separate digits.
Layout: 100 ms of PCMU silence (lets the receiver's RTP session leave probation), then per digit an
event of `--tone-ms` (packets every 20 ms, marker on the first, three end packets) and a `--gap-ms` of
PCMU silence. Deterministic output (fixed SSRC, start values and capture times).

    python3 sipp-scenarios/make_dtmf_pcap.py 112# -o sipp-scenarios/pcap/dtmf_112hash.pcap
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
PT_PCMU = 0
PT_EVENT = 101
SSRC = 0x49565231
PTIME_MS = 20
SAMPLES = 8 * PTIME_MS
PCMU_SILENCE = b"\xff" * SAMPLES
SRC = (b"\x7f\x00\x00\x01", 6000)
DST = (b"\x7f\x00\x00\x01", 6002)


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP around one RTP packet (SIPp rewrites addresses and ports when playing)."""
    udp = struct.pack("!HHHH", SRC[1], DST[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, SRC[0], DST[0])
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def _rtp(seq: int, ts: int, pt: int, marker: bool, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, SSRC) + payload


def rtp_packets(digits: str, tone_ms: int = 160, gap_ms: int = 200) -> list[tuple[int, bytes]]:
    """(send time in ms, RTP packet) for the whole digit string."""
    packets: list[tuple[int, bytes]] = []
    seq, ts, t = 1000, 16000, 0

    def silence(ms: int) -> None:
        nonlocal seq, ts, t
        for _ in range(ms // PTIME_MS):
            packets.append((t, _rtp(seq, ts, PT_PCMU, False, PCMU_SILENCE)))
            seq, ts, t = seq + 1, ts + SAMPLES, t + PTIME_MS

    silence(100)
    for digit in digits:
        event, steps = EVENTS[digit.upper()], max(1, tone_ms // PTIME_MS)
        for step in range(1, steps + 1):
            end = step == steps
            for _ in range(3 if end else 1):  # the end packet is sent three times (RFC 4733 2.5.1.4)
                body = struct.pack("!BBH", event, (0x80 if end else 0) | 10, step * SAMPLES)
                packets.append((t, _rtp(seq, ts, PT_EVENT, step == 1, body)))
                seq += 1
            t += PTIME_MS
        ts += steps * SAMPLES
        silence(gap_ms)
    return packets


def pcap_bytes(digits: str, tone_ms: int = 160, gap_ms: int = 200) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # pcap, Ethernet
    for when_ms, packet in rtp_packets(digits, tone_ms, gap_ms):
        frame = _frame(packet)
        out.append(struct.pack("<IIII", 1_700_000_000 + when_ms // 1000, (when_ms % 1000) * 1000,
                               len(frame), len(frame)) + frame)
    return b"".join(out)


def file_name(digits: str) -> str:
    return "dtmf_" + digits.replace("#", "hash").replace("*", "star") + ".pcap"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("digits", nargs="+", help="digit strings (0-9 * # A-D)")
    p.add_argument("-o", "--output", type=Path, help="output file (one digit string only)")
    p.add_argument("-d", "--directory", type=Path, default=Path(__file__).parent / "pcap")
    p.add_argument("--tone-ms", type=int, default=160)
    p.add_argument("--gap-ms", type=int, default=200)
    args = p.parse_args(argv)
    if args.output and len(args.digits) > 1:
        p.error("--output takes one digit string")
    for digits in args.digits:
        if not digits or any(d.upper() not in EVENTS for d in digits):
            p.error(f"not a digit string: {digits!r}")
        path = args.output or args.directory / file_name(digits)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pcap_bytes(digits, args.tone_ms, args.gap_ms))
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
