"""Builds the controller's speaker from the `tts` section and renders the flows' static texts at start-up."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from ivr.config.model import IvrConfig
from ivr.flow.speech import static_texts
from ivr.tts.cache import TtsCache
from ivr.tts.engine import HttpEngine, OfflineEngine, TtsEngine, VoiceRouter
from ivr.tts.speaker import Speaker


@contextlib.asynccontextmanager
async def open_speaker(config: IvrConfig, cache_dir: Path, prompts_dir: Path) -> AsyncIterator[Speaker]:
    """The speaker (with its HTTP session when a TTS service is configured), warmed up before it is returned."""
    tts = config.tts
    async with contextlib.AsyncExitStack() as stack:
        http: TtsEngine | None = None
        if tts.http is not None:
            session = await stack.enter_async_context(aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=max(tts.budget, 10.0))))
            http = HttpEngine(tts.http, session)
        cache = TtsCache(cache_dir, VoiceRouter(OfflineEngine(), http), max_bytes=int(tts.cache_mb * 1024 * 1024),
                         concurrency=tts.concurrency)
        speaker = Speaker(tts, cache, prompts_dir)
        await warm_up(speaker, config)
        yield speaker


async def warm_up(speaker: Speaker, config: IvrConfig) -> None:
    await speaker.warm_up(sorted(set(static_texts(config))))
