"""Prompt files: `<prompts dir>/<name>.wav`, 8 kHz mono 16-bit PCM; their playing time from the header."""

from __future__ import annotations

import wave
from pathlib import Path


def wav_seconds(path: Path, default: float = 1.0) -> float:
    """The playing time of a WAV file from its header; `default` when it cannot be read."""
    try:
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            return wav.getnframes() / rate if rate else default
    except (OSError, EOFError, wave.Error):
        return default
