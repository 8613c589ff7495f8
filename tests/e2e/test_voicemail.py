"""After hours, callers leave voicemails over real SIP and RTP: SIPp plays a pcap of espeak-ng speech, the
worker records it (AudioMediaRecorder) and stops on silence; the stored WAV holds the caller's audio
(energy and duration checked against the source) and the call's record names it. Three callers at once."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import sys
import threading
import time
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import e2e_config, start_server
from ivrkit import ROOT, IvrServer
from sippkit import SippRun, sipp

pytestmark = pytest.mark.sip

MESSAGE = "Hello, this is Ada Lovelace. Please call me back about my order number four two seven. Thank you."
LEAD_MS = 16000
"""Caller silence while "closed", the reopening time (spoken), the voicemail intro and the beep play (~13 s)."""
VOICE_RMS = 300.0
SILENCE_S = 8


def frames_rms(path: Path) -> tuple[float, list[float]]:
    """(duration in s, RMS of each 20 ms frame) of an 8 kHz mono 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        data = array("h", w.readframes(w.getnframes()))
    frames = [data[i:i + 160] for i in range(0, len(data) - 159, 160)]
    return len(data) / 8000, [math.sqrt(sum(s * s for s in f) / 160) for f in frames]


def voiced_span(rms: list[float]) -> float:
    """Seconds from the first to the last voiced frame."""
    voiced = [i for i, r in enumerate(rms) if r >= VOICE_RMS]
    return (voiced[-1] - voiced[0] + 1) * 0.02 if voiced else 0.0


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(8 kHz WAV of the message, pcap of it after LEAD_MS of silence)."""
    if not shutil.which("espeak-ng") or not shutil.which("sox"):
        pytest.fail("espeak-ng and sox are needed (scripts/bootstrap installs them)")
    out = tmp_path_factory.mktemp("speech")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out / "raw.wav"), MESSAGE], check=True)
    subprocess.run(["sox", str(out / "raw.wav"), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    str(out / "speech.wav"), "norm", "-3"], check=True)
    subprocess.run([sys.executable, str(ROOT / "sipp-scenarios" / "make_speech_pcap.py"), str(out / "speech.wav"),
                    "-o", str(out / "speech.pcap"), "--lead-ms", str(LEAD_MS)], check=True)
    return out / "speech.wav", out / "speech.pcap"


class VoicemailHook:
    """A real aiohttp server on loopback that takes multipart voicemails; its first answer is a 503 (the
    server must retry from its spool)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.loop = asyncio.new_event_loop()
        self.url = ""
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        assert started.wait(10)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/voicemail", self._post)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/voicemail"  # type: ignore[union-attr]
        started.set()
        self.loop.run_forever()

    async def _post(self, request: web.Request) -> web.Response:
        if self.refused == 0:
            self.refused += 1
            return web.Response(status=503)
        form = await request.post()
        audio = form["audio"]
        assert isinstance(audio, web.FileField)
        raw = form["record"]
        record = bytes(raw).decode() if isinstance(raw, bytes | bytearray) else str(raw)
        self.received.append({"key": request.headers.get("Idempotency-Key"), "name": audio.filename,
                              "type": audio.content_type, "audio": audio.file.read(),
                              "record": json.loads(record)})
        return web.Response(status=204)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def hook() -> Iterator[VoicemailHook]:
    server = VoicemailHook()
    yield server
    server.close()


@pytest.fixture(scope="module")
def closed_server(tmp_path_factory: pytest.TempPathFactory, hook: VoicemailHook) -> Iterator[IvrServer]:
    """The default support flow with an office that is never open (no clock tricks), voicemails delivered to
    the local webhook and copied to a directory."""
    cfg = e2e_config()
    cfg["schedules"]["office"] = {"timezone": "UTC", "hours": {}}
    for step in cfg["flows"]["support"]["steps"]:
        if step["type"] == "record":  # leading silence (the prompts' length varies with TTS) must not end it
            step["silence"] = f"{SILENCE_S}s"
    cfg["records"] = {"voicemail": {"url": hook.url, "directory": "voicemail", "retry_max": "1s"}}
    srv = start_server(cfg, tmp_path_factory.mktemp("voicemail"))
    yield srv
    srv.stop()


def test_three_callers_leave_voicemails_after_hours(closed_server: IvrServer, workdir: Path,
                                                    speech: tuple[Path, Path], hook: VoicemailHook) -> None:
    source, pcap = speech
    source_s, source_rms = frames_rms(source)
    run = sipp(closed_server.sip_port, "voicemail.xml", service="200", tag="vm", workdir=workdir,
               variables={"caller": "+15553000006"}, keys={"speech_pcap": str(pcap)}, calls=3, concurrency=3,
               timeout=120)
    assert isinstance(run, SippRun)
    events = [r[:400] for r in closed_server.raw if "record" in r.lower() or "error" in r.lower()]
    assert run.returncode == 0, run.describe() + "\n--- server ---\n" + "\n".join(map(str, events[-12:]))
    lines = [closed_server.call_ended(f"vm-{n}-") for n in (1, 2, 3)]
    files = set()
    for line in lines:
        assert line["outcome"] == {"kind": "hangup", "reason": "voicemail", "queue": None, "uri": None}
        assert line["path"][:4] == ["check_hours:closed", "closed:played", "voicemail:take_silence",
                                    "voicemail:kept"]
        name = line["variables"]["voicemail"]
        files.add(name)
        length, rms = frames_rms(closed_server.workdir / "run" / "recordings" / name)
        span = voiced_span(rms)
        # the whole message is in the file: its voiced span matches the source's (packet loss or a late
        # start would shorten it), then the silence that stopped it, and not much more (the leading silence
        # is at most the lead minus the ~8 s of prompts)
        assert abs(span - voiced_span(source_rms)) < 0.6, (name, span, voiced_span(source_rms))
        assert source_s < length < source_s + SILENCE_S + LEAD_MS / 1000 - 8, (name, length)
        loud = sorted(rms, reverse=True)[: len(rms) // 4]
        assert sum(loud) / len(loud) > 5 * VOICE_RMS, "speech energy, not line noise"
    assert len(files) == 3
    end = time.monotonic() + 30
    while len(hook.received) < 3:
        assert time.monotonic() < end, f"webhook got {len(hook.received)} of 3 voicemails"
        time.sleep(0.2)
    assert hook.refused == 1
    by_name = {r["name"]: r for r in hook.received}
    assert set(by_name) == files
    for line in lines:
        got = by_name[line["variables"]["voicemail"]]
        stored = closed_server.workdir / "run" / "recordings" / got["name"]
        assert got["audio"] == stored.read_bytes() == (closed_server.workdir / "run" / "voicemail" /
                                                        got["name"]).read_bytes()
        assert got["type"] == "audio/wav" and got["key"] == f"{line['uid']}/{got['name']}"
        assert got["record"] == {k: v for k, v in line.items() if k in got["record"]}
        assert got["record"]["uid"] == line["uid"]
