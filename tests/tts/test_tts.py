"""Text to speech: the offline engines, an HTTP service on loopback (and one that dies or stalls), the cache."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ivr.config.speech import TtsConfig
from ivr.flow.commands import Play, Speak
from ivr.tts.cache import TtsCache
from ivr.tts.engine import HttpEngine, OfflineEngine, SynthesisError, VoiceRouter, offline_voice_problem
from ivr.tts.speaker import Speaker

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def _format(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as wav:
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes() / wav.getframerate()


@pytest.mark.parametrize("voice", ["flite:slt", "espeak-ng:es", "espeak-ng:en-us"])
async def test_offline_voices_render_telephony_wav(tmp_path: Path, voice: str) -> None:
    out = tmp_path / "x.wav"
    await OfflineEngine().synthesize("Welcome back, Alan. Your account manager is Grace.", voice, out)
    rate, channels, width, seconds = _format(out)
    assert (rate, channels, width) == (8000, 1, 2)
    assert 1.5 < seconds < 8
    assert not list(tmp_path.glob(".*"))  # no temporary files left


async def test_a_missing_engine_is_a_synthesis_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SynthesisError):
        await OfflineEngine().synthesize("Hello", "espeak-ng:en", tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_unknown_offline_voices_are_reported() -> None:
    assert offline_voice_problem("flite:slt") is None
    assert offline_voice_problem("espeak-ng:es") is None
    assert offline_voice_problem("espeak-ng:en-us") is None
    assert "no voice 'sltt'" in str(offline_voice_problem("flite:sltt"))
    assert "no voice 'klingon'" in str(offline_voice_problem("espeak-ng:klingon"))


class FakeService:
    """A real HTTP TTS service on loopback: answers with a 22.05 kHz WAV rendered by espeak-ng; can stall or fail."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.headers: list[str] = []
        self.stall = asyncio.Event()
        self.release = asyncio.Event()
        self.status = 200

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(request.headers.get("Authorization", ""))
        if self.stall.is_set():
            await asyncio.wait_for(self.release.wait(), 30)
        if self.status != 200:
            return web.Response(status=self.status)
        proc = await asyncio.create_subprocess_exec("espeak-ng", "-v", "en-us", "--stdout", str(body["text"]),
                                                    stdout=asyncio.subprocess.PIPE)
        data, _ = await proc.communicate()
        return web.Response(body=data, content_type="audio/wav")


@pytest.fixture
async def service(unused_tcp_port: int) -> object:
    fake = FakeService()
    app = web.Application()
    app.router.add_post("/tts", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    fake.url = f"http://127.0.0.1:{unused_tcp_port}/tts"  # type: ignore[attr-defined]
    yield fake
    fake.release.set()
    await runner.cleanup()


def _speaker(tmp_path: Path, url: str, **tts: object) -> tuple[Speaker, aiohttp.ClientSession]:
    config = TtsConfig.model_validate({"voices": {"en": "http:alloy", "es": "espeak-ng:es"},
                                       "http": {"url": url, "headers": {"Authorization": "Bearer k"}}, **tts})
    session = aiohttp.ClientSession()
    assert config.http is not None
    engine = VoiceRouter(OfflineEngine(), HttpEngine(config.http, session))
    return Speaker(config, TtsCache(tmp_path / "tts", engine, max_bytes=10**7), PROMPTS), session


async def test_http_service_renders_and_is_cached(tmp_path: Path, service: FakeService) -> None:
    speaker, session = _speaker(tmp_path, service.url)  # type: ignore[attr-defined]
    async with session:
        speak = Speak(7, (("prompt", "welcome"), ("say", "Hello Ada.")), "en")
        plays = await asyncio.gather(*(speaker.play_for(speak) for _ in range(5)))
    assert len(service.requests) == 1  # five callers, one synthesis
    assert service.requests[0] == {"text": "Hello Ada.", "voice": "alloy", "format": "wav"}
    assert service.headers == ["Bearer k"]
    play = plays[0]
    assert play.play_id == 7 and play.files[0] == str(PROMPTS / "welcome.wav")
    assert _format(Path(play.files[1]))[:3] == (8000, 1, 2)


async def test_a_failing_or_stalled_service_plays_the_fallback_within_budget(tmp_path: Path,
                                                                           service: FakeService) -> None:
    speaker, session = _speaker(tmp_path, service.url, budget="500ms",  # type: ignore[attr-defined]
                                fallback_prompts=["technical_difficulties"])
    async with session:
        service.status = 500
        failed = await speaker.play_for(Speak(1, (("say", "One."),), "en"))
        service.status = 200
        service.stall.set()
        loop = asyncio.get_running_loop()
        started = loop.time()
        stalled = await speaker.play_for(Speak(2, (("say", "Two."),), "en", interruptible=False))
        waited = loop.time() - started
    fallback = (str(PROMPTS / "technical_difficulties.wav"),)
    assert failed == Play(1, (), lang="en", files=fallback)
    assert stalled == Play(2, (), interruptible=False, lang="en", files=fallback)
    assert waited < 10  # bounded by the budget, not the service's 30 s


async def test_a_language_prompt_set_is_preferred(tmp_path: Path, service: FakeService) -> None:
    speaker, session = _speaker(tmp_path, service.url)  # type: ignore[attr-defined]
    async with session:
        play = await speaker.play_for(Speak(1, (("prompt", "vip_welcome"), ("prompt", "hold_music")), "es"))
    assert play.files == (str(PROMPTS / "es" / "vip_welcome.wav"), str(PROMPTS / "hold_music.wav"))


class CountingEngine:
    def __init__(self) -> None:
        self.calls = 0

    async def synthesize(self, text: str, voice: str, out: Path) -> None:
        self.calls += 1
        out.write_bytes(b"x" * 1000)


async def test_cache_is_bounded_least_recently_used_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ivr.tts.cache.IN_USE_S", 0.0)
    engine = CountingEngine()
    cache = TtsCache(tmp_path, engine, max_bytes=3500)
    first = await cache.get("a", "v")
    for text in ("b", "c"):
        await cache.get(text, "v")
    await asyncio.sleep(0.01)
    assert await cache.get("a", "v") == first  # a hit refreshes "a"
    await cache.get("d", "v")  # over 3500 bytes: "b", the least recently used, goes
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == sorted(
        cache.path_for(t, "v").name for t in ("a", "c", "d"))
    assert engine.calls == 4
    assert cache.path_for("a", "v") != cache.path_for("a", "w")  # the voice is part of the key


async def test_files_in_use_are_not_evicted(tmp_path: Path) -> None:
    cache = TtsCache(tmp_path, CountingEngine(), max_bytes=1500)
    for text in ("a", "b", "c"):
        await cache.get(text, "v")
    assert len(list(tmp_path.glob("*.wav"))) == 3  # over the bound, but each may be playing right now
