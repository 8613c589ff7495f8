"""Turns a flow's `Speak` into the worker's `Play` of files: prompts of the call's language set, speech from the
cache (rendered now within the latency budget), the fallback prompts when speech fails or is late."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from ivr.config.speech import TtsConfig
from ivr.flow.commands import Play, Speak
from ivr.prompts import prompt_path
from ivr.tts.cache import TtsCache
from ivr.tts.engine import SynthesisError

log = structlog.get_logger()


class Speaker:
    def __init__(self, config: TtsConfig, cache: TtsCache, prompts_dir: Path) -> None:
        self.config = config
        self.cache = cache
        self.prompts_dir = prompts_dir

    def voice(self, lang: str) -> str:
        return self.config.voices.get(lang) or self.config.voices[self.config.default_lang]

    async def warm_up(self, texts: list[tuple[str, str]]) -> int:
        """Render (text, lang) pairs ahead of calls; returns how many failed (logged)."""
        results = await asyncio.gather(*(self.cache.get(t, self.voice(lang)) for t, lang in texts),
                                       return_exceptions=True)
        failed = [(t, r) for (t, _), r in zip(texts, results, strict=True) if isinstance(r, BaseException)]
        for text, error in failed:
            log.error("tts.warm_up_failed", text=text, error=str(error))
        log.info("tts.warmed_up", texts=len(texts), failed=len(failed))
        return len(failed)

    async def play_for(self, speak: Speak) -> Play:
        """The Play of `speak`'s parts; never raises for an engine failure or a late engine."""
        says = [(text, self.voice(kind.partition(":")[2] or speak.lang)) for kind, text in speak.parts
                if kind.startswith("say")]
        try:
            rendered = await asyncio.wait_for(asyncio.gather(*(self.cache.get(t, v) for t, v in says)),
                                              self.config.budget)
        except (SynthesisError, TimeoutError) as exc:
            log.warning("tts.fallback", lang=speak.lang, error=str(exc) or type(exc).__name__, texts=len(says))
            rendered = None
        files: list[str] = []
        speech = iter(rendered or [])
        for kind, value in speak.parts:
            if kind == "prompt":
                files.append(str(prompt_path(self.prompts_dir, value, speak.lang)))
            elif rendered is not None:
                files.append(str(next(speech)))  # the say parts, in order
        if rendered is None:
            files += [str(prompt_path(self.prompts_dir, p, speak.lang)) for p in self.config.fallback_prompts]
        return Play(speak.play_id, (), interruptible=speak.interruptible, lang=speak.lang, files=tuple(files))
