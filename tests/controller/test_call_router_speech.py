"""The router and speech: a Speak is rendered off the loop and sent as a Play of files; a playback stopped or a
call hung up before its speech is ready never gets it (the caller would hear a stale prompt)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ivr.calls import CallRouter
from ivr.config.load import load_config
from ivr.flow import commands, events
from ivr.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


class Fetcher:
    async def fetch(self, cmd: commands.Fetch) -> events.FetchCompleted | events.FetchFailed:
        return events.FetchFailed(cmd.request_id, "connect_error", 1.0)


class SlowSpeaker:
    """Renders when the test says so."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.asked: list[commands.Speak] = []

    async def play_for(self, speak: commands.Speak) -> commands.Play:
        self.asked.append(speak)
        await self.ready.wait()
        return commands.Play(speak.play_id, (), interruptible=speak.interruptible, lang=speak.lang,
                             files=(f"/cache/{speak.play_id}.wav",))


def _router(sent: list[tuple[str, str, Any]], speaker: SlowSpeaker) -> CallRouter:
    config = load_config(ROOT / "config" / "ivr.yaml").config
    return CallRouter(config, lambda w, c, m: sent.append((w, c, m)), Fetcher(), Metrics(),
                      clock=lambda: 1_800_000_000.0, speaker=speaker)


def _offer() -> events.CallOffered:
    return events.CallOffered(source="127.0.0.1:5070", caller="+15559999999", dialed="150", sip_call_id="sip-1")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_speech_is_sent_as_files_when_rendered() -> None:
    sent: list[tuple[str, str, Any]] = []
    speaker = SlowSpeaker()
    router = _router(sent, speaker)
    router.on_event("w0", "c1", _offer())
    router.on_event("w0", "c1", events.CallConnected())
    await _settle()
    assert [s.parts for s in speaker.asked] == [(("say:en", "For English, press 1."),
                                                 ("say:es", "Para español, marque 2."))]
    assert not any(isinstance(m, commands.Play) for _, _, m in sent)
    speaker.ready.set()
    await _settle()
    assert sent[-1] == ("w0", "c1", commands.Play(1, (), lang="en", files=("/cache/1.wav",)))
    router.on_event("w0", "c1", events.CallEnded("remote_bye"))


async def test_a_barge_in_before_the_speech_is_ready_cancels_it() -> None:
    sent: list[tuple[str, str, Any]] = []
    speaker = SlowSpeaker()
    router = _router(sent, speaker)
    router.on_event("w0", "c1", _offer())
    router.on_event("w0", "c1", events.CallConnected())
    await _settle()
    router.on_event("w0", "c1", events.DigitReceived("2"))  # Spanish, before the menu was heard
    speaker.ready.set()
    await _settle()
    plays = [m for _, _, m in sent if isinstance(m, commands.Play)]
    assert commands.StopPlayback(1) in [m for _, _, m in sent]
    assert 1 not in [p.play_id for p in plays]
    assert plays and all(p.lang == "es" for p in plays), plays  # "Gracias." in the Spanish voice, then es prompts
    router.on_event("w0", "c1", events.CallEnded("remote_bye"))
