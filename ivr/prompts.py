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


def prompt_path(prompts_dir: Path, name: str, lang: str = "") -> Path:
    """`<dir>/<lang>/<name>.wav` when the language's set has it, else the flat `<dir>/<name>.wav` (default set)."""
    if lang:
        localized = prompts_dir / lang / f"{name}.wav"
        if localized.is_file():
            return localized
    return prompts_dir / f"{name}.wav"


SPEECH_CHARS_PER_S = 14.0
"""Speaking rate of the offline voices, for estimates where nothing is rendered (`ivr simulate`)."""


def speech_seconds(text: str) -> float:
    """Roughly how long `text` takes to say."""
    return round(0.3 + len(text) / SPEECH_CHARS_PER_S, 2)
