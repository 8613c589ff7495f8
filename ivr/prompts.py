"""Prompt files: `<prompts dir>/<name>.wav`, 8 kHz mono 16-bit PCM; their playing time from the header."""

from __future__ import annotations

import os
import stat
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


class WavLengths:
    """Playing times of WAV files, each read once per version of the file (its size and mtime).

    A worker plays the same prompts call after call: one `stat` per file and play replaces the existence
    check plus opening and parsing the header (bench/README.md, worker session 17). A file replaced in
    place (new size or mtime) is read again; the table is emptied when it reaches `limit` entries
    (recordings and rendered speech are files of one call)."""

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit
        self._known: dict[str, tuple[int, int, float]] = {}

    def seconds(self, path: str) -> float | None:
        """The file's playing time (1.0 when its header cannot be read); None when it is not a regular file."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        known = self._known.get(path)
        if known is not None and known[0] == st.st_mtime_ns and known[1] == st.st_size:
            return known[2]
        value = wav_seconds(Path(path))
        if len(self._known) >= self._limit:
            self._known.clear()
        self._known[path] = (st.st_mtime_ns, st.st_size, value)
        return value


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
