"""RFC 4733 telephone-events on one RTP stream, each digit at its own time, as a pcap for SIPp's
`play_pcap_audio`: PCMU silence every 20 ms in between, continuous sequence numbers and timestamps (so a
repeated digit counts twice), the end packet sent three times (RFC 4733 2.5.1.4)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}
PT_PCMU, PT_EVENT, SSRC = 0, 101, 0x49565251
PTIME_MS, SAMPLES = 20, 160
TONE_MS = 160
_ADDR = (b"\x7f\x00\x00\x01", 6000, b"\x7f\x00\x00\x01", 6002)  # SIPp rewrites addresses and ports


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _frame(payload: bytes) -> bytes:
    src, sport, dst, dport = _ADDR
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\x00" * 12 + b"\x08\x00" + ip + udp


def _rtp(seq: int, ts: int, pt: int, marker: bool, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, SSRC) + payload


def packets(presses: Sequence[tuple[str, int]]) -> list[tuple[int, bytes]]:
    """(send time in ms, RTP packet) with each (digit, ms after the start) pressed for TONE_MS."""
    out: list[tuple[int, bytes]] = []
    seq, t = 1000, 0
    for digit, at in presses:
        while t < at:
            out.append((t, _rtp(seq, 16000 + t * 8, PT_PCMU, False, b"\xff" * SAMPLES)))
            seq, t = seq + 1, t + PTIME_MS
        start_ts, steps = 16000 + t * 8, TONE_MS // PTIME_MS
        for step in range(1, steps + 1):
            end = step == steps
            for _ in range(3 if end else 1):
                body = struct.pack("!BBH", EVENTS[digit], (0x80 if end else 0) | 10, step * SAMPLES)
                out.append((t, _rtp(seq, start_ts, PT_EVENT, step == 1, body)))
                seq += 1
            t += PTIME_MS
    for _ in range(10):  # 200 ms of silence after the last digit
        out.append((t, _rtp(seq, 16000 + t * 8, PT_PCMU, False, b"\xff" * SAMPLES)))
        seq, t = seq + 1, t + PTIME_MS
    return out


def pcap_bytes(presses: Sequence[tuple[str, int]]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for when_ms, packet in packets(presses):
        frame = _frame(packet)
        out.append(struct.pack("<IIII", 1_700_000_000 + when_ms // 1000, (when_ms % 1000) * 1000,
                               len(frame), len(frame)) + frame)
    return b"".join(out)
