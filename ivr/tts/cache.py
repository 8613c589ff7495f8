"""Rendered speech on disk: one WAV per (engine voice, text), named by their hash, bounded by size (LRU).

Concurrent requests for the same text share one synthesis; at most `concurrency` run at once."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import structlog

from ivr.tts.engine import SynthesisError, TtsEngine

log = structlog.get_logger()

IN_USE_S = 120.0
"""Files used this recently are never evicted (a call may be about to play them)."""
FORMAT = "wav8k16"
"""Part of the key: a change of output format renders again."""


def cache_file(directory: Path, text: str, voice: str) -> Path:
    """Where the rendering of `text` in `voice` lives in a cache directory."""
    digest = hashlib.sha256(f"{FORMAT}\0{voice}\0{text}".encode()).hexdigest()[:32]
    return directory / f"{digest}.wav"


class TtsCache:
    def __init__(self, directory: Path, engine: TtsEngine, *, max_bytes: int, concurrency: int = 2) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._engine = engine
        self._max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: dict[Path, asyncio.Task[Path]] = {}

    def path_for(self, text: str, voice: str) -> Path:
        return cache_file(self.directory, text, voice)

    async def get(self, text: str, voice: str) -> Path:
        """The WAV of `text` in `voice`, rendered now if it is not cached. Raises SynthesisError."""
        path = self.path_for(text, voice)
        if path.is_file():
            os.utime(path)  # recently used: evicted last
            return path
        task = self._pending.get(path)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._render(text, voice, path))
            self._pending[path] = task
            task.add_done_callback(lambda done: self._done(path, done))
        return await asyncio.shield(task)

    def _done(self, path: Path, task: asyncio.Task[Path]) -> None:
        """A rendering ended; its failure was logged (callers that gave up waiting never see it)."""
        self._pending.pop(path, None)
        if not task.cancelled():
            task.exception()

    async def _render(self, text: str, voice: str, path: Path) -> Path:
        async with self._slots:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                await self._engine.synthesize(text, voice, path)
            except SynthesisError as exc:
                log.warning("tts.failed", voice=voice, chars=len(text), error=str(exc))
                raise
            log.info("tts.synthesized", voice=voice, chars=len(text), path=str(path),
                     ms=round((loop.time() - started) * 1000, 1))
        self.evict()
        return path

    def evict(self) -> None:
        """Delete the least recently used files until the cache fits its size; a file used in the last
        `IN_USE_S` may be playing (the worker opens it after the controller sent its path) and is kept."""
        files = []
        for entry in self.directory.glob("*.wav"):
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, entry))
        total = sum(size for _, size, _ in files)
        recent = time.time() - IN_USE_S
        for used, size, entry in sorted(files, key=lambda f: f[0]):
            if total <= self._max_bytes or used > recent:
                break
            entry.unlink(missing_ok=True)
            total -= size
            log.info("tts.evicted", path=str(entry), bytes=size)
