"""TTS engines: text -> an 8 kHz mono 16-bit WAV file. Offline: flite (English voices, clustergen `slt`: the
most natural of the Debian engines) and espeak-ng (every other language); an operator's HTTP service.

An engine failure is an expected event: it raises `SynthesisError`, the speaker plays the fallback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

import aiohttp

from ivr.config.speech import HttpTts


class SynthesisError(Exception):
    """The engine could not render a text (missing binary, bad voice, HTTP error)."""


class TtsEngine(Protocol):
    """Renders `text` with `voice` into `out` (8 kHz mono 16-bit PCM WAV), atomically."""

    async def synthesize(self, text: str, voice: str, out: Path) -> None: ...


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise SynthesisError(f"{argv[0]} exited {proc.returncode}: {err.decode(errors='replace')[:200]}")


async def to_telephony(raw: Path, out: Path) -> None:
    """Resample any WAV to 8 kHz mono 16-bit, trim silence at both ends, normalise; atomic rename to `out`."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.wav")
    try:
        await _run("sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp),
                   "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse",
                   "norm", "-3", "pad", "0", "0.15")
        tmp.replace(out)
    except FileNotFoundError as exc:
        raise SynthesisError(f"sox not installed: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def offline_voice_problem(voice: str) -> str | None:
    """Why an offline voice cannot speak (binary missing, unknown voice), or None. Both engines silently fall back
    to their default voice on an unknown name, so `ivr check` asks them for their voice lists."""
    engine, _, name = voice.partition(":")
    if engine not in ("flite", "espeak-ng"):
        return None
    if shutil.which(engine) is None:
        return f"{engine} is not installed (scripts/bootstrap installs it)"
    argv = ["flite", "-lv"] if engine == "flite" else ["espeak-ng", "--voices"]
    listing = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
    if engine == "flite":
        known = set(listing.replace("Voices available:", "").split())
    else:
        rows = [line.split() for line in listing.splitlines()[1:]]
        known = {row[1] for row in rows if len(row) > 4} | {row[4] for row in rows if len(row) > 4} | {
            row[4].rsplit("/", 1)[-1] for row in rows if len(row) > 4}
    return None if name in known else f"{engine} has no voice '{name}' (it would speak with its default voice)"


class OfflineEngine:
    """flite or espeak-ng as a subprocess (voice `flite:slt`, `espeak-ng:es`), then sox to telephony format."""

    async def synthesize(self, text: str, voice: str, out: Path) -> None:
        engine, _, name = voice.partition(":")
        raw = out.with_name(f".{out.name}.{os.getpid()}.raw.wav")
        try:
            if engine == "flite":
                await _run("flite", "-voice", name, "-t", text, "-o", str(raw))
            elif engine == "espeak-ng":
                await _run("espeak-ng", "-v", name, "-s", "160", "-w", str(raw), "--", text)
            else:
                raise SynthesisError(f"no offline engine {engine!r}")
            await to_telephony(raw, out)
        except FileNotFoundError as exc:
            raise SynthesisError(f"{engine} not installed: {exc}") from exc
        finally:
            raw.unlink(missing_ok=True)


class HttpEngine:
    """An operator's TTS service: POST JSON {text, voice, format: "wav"} to `url`; the body is a WAV."""

    def __init__(self, config: HttpTts, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session

    async def synthesize(self, text: str, voice: str, out: Path) -> None:
        raw = out.with_name(f".{out.name}.{os.getpid()}.http.wav")
        try:
            async with self._session.post(self._config.url, json={"text": text, "voice": voice, "format": "wav"},
                                          headers=self._config.headers) as resp:
                if resp.status != 200:
                    raise SynthesisError(f"tts service answered {resp.status}")
                raw.write_bytes(await resp.read())
            await to_telephony(raw, out)
        except aiohttp.ClientError as exc:
            raise SynthesisError(f"tts service unreachable: {exc}") from exc
        finally:
            raw.unlink(missing_ok=True)


class VoiceRouter:
    """Dispatches on the voice's engine: `http:NAME` to the HTTP engine, the rest to the offline one."""

    def __init__(self, offline: TtsEngine, http: TtsEngine | None = None) -> None:
        self._offline = offline
        self._http = http

    async def synthesize(self, text: str, voice: str, out: Path) -> None:
        engine, _, name = voice.partition(":")
        if engine == "http":
            if self._http is None:
                raise SynthesisError("voice http:... needs tts.http")
            await self._http.synthesize(text, name, out)
            return
        await self._offline.synthesize(text, voice, out)
