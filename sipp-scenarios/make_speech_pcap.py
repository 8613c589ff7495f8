#!/usr/bin/env python3
"""Writes a PCMU RTP pcap of a WAV (8 kHz mono 16-bit) for SIPp's `play_pcap_audio`: a caller who speaks.

Layout: `--lead-ms` of PCMU silence (the caller listens to the prompts first), then the WAV in 20 ms packets
(continuous sequence numbers and timestamps, one SSRC), then `--tail-ms` of silence. Framing as
make_dtmf_pcap.py. Make the WAV with espeak-ng and sox:

    espeak-ng -w /tmp/s.wav "Hello, this is a message" && sox /tmp/s.wav -r 8000 -c 1 -b 16 /tmp/s8.wav
    python3 sipp-scenarios/make_speech_pcap.py /tmp/s8.wav -o /tmp/speech.pcap --lead-ms 13000
"""

from __future__ import annotations

import argparse
import struct
import sys
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_dtmf_pcap import PCMU_SILENCE, PT_PCMU, PTIME_MS, SAMPLES, _frame, _rtp  # noqa: E402

_BIAS = 0x84
_CLIP = 32635


def ulaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(_CLIP, -sample if sample < 0 else sample) + _BIAS
    exponent = max(0, magnitude.bit_length() - 8)
    exponent = min(exponent, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def pcmu(wav: Path) -> bytes:
    with wave.open(str(wav), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
            raise ValueError(f"{wav}: need 8 kHz mono 16-bit (sox IN -r 8000 -c 1 -b 16 OUT)")
        data = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    return bytes(ulaw(s) for s in samples)


def pcap_bytes(audio: bytes, lead_ms: int = 0, tail_ms: int = 200) -> bytes:
    audio += PCMU_SILENCE[: (-len(audio)) % SAMPLES]  # whole packets
    payloads = [PCMU_SILENCE] * (lead_ms // PTIME_MS)
    payloads += [audio[i:i + SAMPLES] for i in range(0, len(audio), SAMPLES)]
    payloads += [PCMU_SILENCE] * (tail_ms // PTIME_MS)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    seq, ts = 2000, 32000
    for n, payload in enumerate(payloads):
        frame = _frame(_rtp(seq + n, ts + n * SAMPLES, PT_PCMU, n == 0, payload))
        when_ms = n * PTIME_MS
        out.append(struct.pack("<IIII", 1_700_000_000 + when_ms // 1000, (when_ms % 1000) * 1000,
                               len(frame), len(frame)) + frame)
    return b"".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wav", type=Path, help="8 kHz mono 16-bit WAV")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--lead-ms", type=int, default=0, help="silence before the speech")
    p.add_argument("--tail-ms", type=int, default=200, help="silence after it")
    args = p.parse_args(argv)
    args.output.write_bytes(pcap_bytes(pcmu(args.wav), args.lead_ms, args.tail_ms))
    print(args.output, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
