"""Audio the IVR sends, as the tests hear it: an RTP recorder (a UDP socket named in the caller's SDP), G.711
mu-law decoding, and 20 ms energy envelopes to compare a capture with the WAV files it should contain."""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
import wave
from pathlib import Path

FRAME = 160
"""Samples per 20 ms at 8 kHz."""
VOICED_RMS = 300.0
"""A 20 ms frame louder than this (16-bit linear RMS) is sound, not silence or line noise."""


def _ulaw(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    sample = ((mantissa << 3) + 0x84) << exponent
    sample -= 0x84
    return -sample if sign else sample


ULAW = [_ulaw(b) for b in range(256)]


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


class RtpRecorder:
    """Receives the RTP stream sent to 127.0.0.1:port; frames placed by their RTP timestamp (gaps stay gaps)."""

    def __init__(self, max_packets: int = 20000) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.packets: list[tuple[int, int, bytes]] = []
        """(payload type, timestamp, payload)"""
        self._max = max_packets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.packets) < self._max:
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) > 12 and data[0] >> 6 == 2:
                pt = data[1] & 0x7F
                ts = struct.unpack("!I", data[4:8])[0]
                cc = data[0] & 0x0F
                self.packets.append((pt, ts, data[12 + 4 * cc:]))

    def stop(self, quiet_s: float = 1.0, limit_s: float = 10.0) -> None:
        """Stop once no packet came for `quiet_s` (bounded by `limit_s`)."""
        end = time.monotonic() + limit_s
        seen = -1
        while time.monotonic() < end and seen != len(self.packets):
            seen = len(self.packets)
            time.sleep(quiet_s)
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def envelope(self) -> list[float]:
        """RMS per 20 ms frame of the PCMU stream, indexed by RTP timestamp from the first packet."""
        audio = [(ts, payload) for pt, ts, payload in self.packets if pt == 0]
        if not audio:
            return []
        ts0 = audio[0][0]
        frames: dict[int, float] = {}
        for ts, payload in audio:
            samples = [ULAW[b] for b in payload]
            for i in range(0, len(samples) - FRAME + 1, FRAME):
                frames[((ts - ts0) & 0xFFFFFFFF) // FRAME + i // FRAME] = rms(samples[i:i + FRAME])
        return [frames.get(i, 0.0) for i in range(max(frames) + 1)]


def wav_envelope(path: Path) -> list[float]:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2), path
        data = wav.readframes(wav.getnframes())
    samples = list(struct.unpack(f"<{len(data) // 2}h", data))
    return [rms(samples[i:i + FRAME]) for i in range(0, len(samples) - FRAME + 1, FRAME)]


def voiced(envelope: list[float]) -> int:
    """Frames of sound."""
    return sum(1 for e in envelope if e > VOICED_RMS)


def _db(envelope: list[float]) -> list[float]:
    return [20 * math.log10(max(e, 30.0)) for e in envelope]


def best_match(capture: list[float], clip: list[float]) -> tuple[float, int]:
    """The highest Pearson correlation of the clip's dB envelope with any same-length window of the capture, and
    that window's start: near 1 when the capture contains that recording, low for another recording or silence."""
    a, b = _db(capture), _db(clip)
    n = len(b)
    if n < 10 or len(a) < n:
        return 0.0, 0
    mb = sum(b) / n
    db = [x - mb for x in b]
    sb = math.sqrt(sum(x * x for x in db))
    best, at = 0.0, 0
    for lag in range(len(a) - n + 1):
        window = a[lag:lag + n]
        ma = sum(window) / n
        da = [x - ma for x in window]
        sa = math.sqrt(sum(x * x for x in da))
        if sa > 0 and sb > 0:
            corr = sum(x * y for x, y in zip(da, db, strict=True)) / (sa * sb)
            if corr > best:
                best, at = corr, lag
    return best, at
