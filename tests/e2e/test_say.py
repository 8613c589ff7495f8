"""Flows that speak, over real SIP with real audio: the default VIP flow greets a gold customer by the first
name the demo CRM knows ("Welcome back, Alan.", synthesised by the offline engine), in the customer's
language (Claude Shannon's CRM record says Spanish: Spanish voice and the prompts/es/ set).

The caller's SDP names a UDP socket of the test (sipp-scenarios/say_capture.xml), so the RTP the IVR sends is
recorded and decoded; its 20 ms energy envelope must contain the synthesised WAV (correlation, and the same
amount of sound) and the prompt of the caller's language set rather than the other language's."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from audiokit import RtpRecorder, best_match, voiced, wav_envelope
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import ROOT, IvrServer
from recordkit import transferred
from sippkit import collect, sipp

from ivr.tts.cache import cache_file

pytestmark = pytest.mark.sip

PROMPTS = ROOT / "prompts"
MATCH = 0.85
"""Envelope correlation of a recording found in the capture (measured ~0.95+; another recording: < 0.7)."""


@dataclass(frozen=True)
class Caller:
    number: str
    lang: str
    text: str
    voice: str


ALAN = Caller("+15551000002", "en", "Welcome back, Alan.", "flite:slt")
CLAUDIO = Caller("+15551000004", "es", "Bienvenido de nuevo, Claudio.", "espeak-ng:es")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrServer]:
    srv = start_server(e2e_config(), tmp_path_factory.mktemp("say"))
    yield srv
    srv.stop()


def _call(server: IvrServer, workdir: Path, tag: str, caller: Caller, recorder: RtpRecorder) -> subprocess.Popen[str]:
    run = sipp(server.sip_port, "say_capture.xml", service="100", tag=tag, workdir=workdir, background=True,
               variables={"caller": caller.number, "digits": "", "expected_refer": f"sip:gold@{QUEUE_HOST}",
                          "rtp_ip": "127.0.0.1", "rtp_port": str(recorder.port)})
    assert isinstance(run, subprocess.Popen)
    return run


def _heard(server: IvrServer, workdir: Path, calls: list[tuple[str, Caller]]) -> dict[str, tuple[Caller, list[float]]]:
    """Place the calls at once; each one's RTP envelope once its SIPp run passed and its record is in."""
    recorders = {tag: RtpRecorder() for tag, _ in calls}
    procs = {tag: _call(server, workdir, tag, caller, recorders[tag]) for tag, caller in calls}
    heard = {}
    for tag, caller in calls:
        out, _ = procs[tag].communicate(timeout=120)
        run = collect(procs[tag].returncode, out, workdir, tag)
        recorders[tag].stop()
        assert run.returncode == 0, run.describe()
        line = server.call_ended(f"{tag}-")
        assert line["outcome"] == transferred("gold", f"sip:gold@{QUEUE_HOST}")
        assert "welcome_back:said" in line["path"] and "vip_welcome:played" in line["path"], line["path"]
        assert line["variables"].get("lang", "en") == caller.lang  # unset: the default language
        heard[tag] = (caller, recorders[tag].envelope())
    return heard


def test_gold_callers_hear_their_name_in_their_language(server: IvrServer, workdir: Path) -> None:
    calls = [(f"say{i}{c.lang}", c) for i in range(2) for c in (ALAN, CLAUDIO)]  # 4 calls at once
    heard = _heard(server, workdir, calls)
    cache = server.workdir / "run" / "tts"
    for tag, (caller, envelope) in heard.items():
        speech = cache_file(cache, caller.text, caller.voice)
        assert speech.is_file(), f"{tag}: no synthesised WAV for {caller.text!r}"
        clip = wav_envelope(speech)
        assert voiced(clip) > 25, f"{speech} is not speech"
        assert voiced(envelope) > voiced(clip), f"{tag}: the call was (nearly) silent"
        corr, at = best_match(envelope, clip)
        assert corr > MATCH, f"{tag}: the greeting is not in the call's audio (best correlation {corr:.2f})"
        window = envelope[at:at + len(clip)]
        assert abs(voiced(window) - voiced(clip)) <= 0.15 * voiced(clip) + 3, (tag, voiced(window), voiced(clip))
        other = "en" if caller.lang == "es" else "es"
        mine = best_match(envelope, wav_envelope(_prompt("vip_welcome", caller.lang)))[0]
        theirs = best_match(envelope, wav_envelope(_prompt("vip_welcome", other)))[0]
        assert mine > MATCH and mine > theirs + 0.1, f"{tag}: {caller.lang} set {mine:.2f}, {other} set {theirs:.2f}"
        print(f"{tag}: greeting corr {corr:.3f} voiced {voiced(window)}/{voiced(clip)} frames; "
              f"vip_welcome {caller.lang} {mine:.3f} vs {other} {theirs:.3f}")


def _prompt(name: str, lang: str) -> Path:
    return PROMPTS / lang / f"{name}.wav" if lang != "en" else PROMPTS / f"{name}.wav"



def test_static_texts_are_rendered_before_the_server_is_ready(server: IvrServer) -> None:
    warmed = server.events("tts.warmed_up")
    assert warmed and warmed[0]["failed"] == 0 and warmed[0]["texts"] >= 4, warmed
    ready_at = next(i for i, e in enumerate(server.lines) if e.get("event") == "ivr.ready")
    assert server.lines.index(warmed[0]) < ready_at
    cache = server.workdir / "run" / "tts"
    for text, voice in (("For English, press 1.", "flite:slt"), ("Para español, marque 2.", "espeak-ng:es"),
                        ("Gracias.", "espeak-ng:es"), ("Thank you.", "flite:slt")):
        assert cache_file(cache, text, voice).is_file(), text


class HttpTts:
    """An operator's TTS service on loopback (flite behind HTTP), stopped mid-run by the test."""

    def __init__(self) -> None:
        outer = self
        self.texts: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.texts.append(body["text"])
                out = subprocess.run(["flite", "-voice", "slt", "-t", body["text"], "-o", "/dev/stdout"],
                                     capture_output=True, check=True, timeout=30).stdout
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/speak"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def test_an_http_tts_service_that_dies_mid_run_falls_back_to_a_prompt(tmp_path: Path) -> None:
    tts = HttpTts()
    cfg = e2e_config()
    cfg["tts"] = {"voices": {"en": "http:slt", "es": "espeak-ng:es"}, "http": {"url": tts.url},
                  "fallback_prompts": ["technical_difficulties"], "budget": "2s"}
    srv = start_server(cfg, tmp_path / "srv")
    try:
        alan = _heard(srv, tmp_path, [("http1", ALAN)])["http1"][1]
        assert tts.texts == ["For English, press 1.", "Thank you.", "Welcome back, Alan."]  # warm-up, then Alan
        greeting = wav_envelope(cache_file(srv.workdir / "run" / "tts", ALAN.text, "http:slt"))
        assert best_match(alan, greeting)[0] > MATCH
        tts.stop()  # the service dies; the next caller still gets through, hearing the fallback prompt
        katherine = Caller("+15551000003", "en", "Welcome back, Katherine.", "http:slt")
        heard = _heard(srv, tmp_path, [("http2", katherine)])["http2"][1]
        assert not cache_file(srv.workdir / "run" / "tts", katherine.text, "http:slt").exists()
        fallback = best_match(heard, wav_envelope(PROMPTS / "technical_difficulties.wav"))[0]
        assert fallback > MATCH, fallback
        assert srv.events("tts.fallback"), "the fallback was not logged"
    finally:
        tts.stop() if tts._thread.is_alive() else None
        srv.stop()
