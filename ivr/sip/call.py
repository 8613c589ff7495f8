"""One SIP call on a worker: a `pj.Call` subclass that turns callbacks into events and runs commands.

Every callback body is wrapped (SWIG would print and swallow an exception). Players are never
destroyed here: a stopped player goes to `CallHost.retire`, which keeps it >= 1 s (PJSUA2_NOTES.md).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pjsua2 as pj
import structlog

from ivr.flow import commands, events
from ivr.prompts import WavLengths, prompt_path
from ivr.sip.recorder import Recording
from ivr.sip.transfer import ReferTransactions

log = structlog.get_logger()

_TOKEN = re.compile(r"^[A-Za-z0-9!%'*+.^_`|~-]+$")
_DTMF_INFO = getattr(pj, "PJSUA_DTMF_METHOD_SIP_INFO", 1)
PLAY_GRACE_S = 3.0
"""How long past its files' playing time a playback may run before it is finished regardless."""


class CallHost(Protocol):
    """What a call needs from its worker."""

    prompts: Path
    recordings: Path
    loop_thread: int
    """`threading.get_ident()` of the loop thread (the one that owns pjsua2)."""
    wav_lengths: WavLengths

    def emit(self, call_id: str, event: events.WorkerEvent) -> None: ...

    def post_eof(self, call_id: str, token: int) -> None: ...

    def post_digit(self, call_id: str, event: events.DigitReceived) -> None: ...

    def retire(self, player: Any) -> None: ...

    def watch_play(self, call_id: str, token: int, seconds: float) -> None: ...

    def ended(self, call_id: str) -> None: ...

    def watch_recording(self, call_id: str) -> None: ...


class Prompter(pj.AudioMediaPlayer):  # type: ignore[misc]
    """A WAV player (or playlist) whose end-of-file is posted to the loop thread."""

    def __init__(self, host: CallHost, call_id: str, token: int) -> None:
        super().__init__()
        self._host = host
        self._call_id = call_id
        self._token = token

    def onEof2(self) -> None:  # noqa: N802 (pjsua2 override; runs on pjmedia's thread)
        try:
            self._host.post_eof(self._call_id, self._token)
        except Exception:
            log.exception("sip.player.eof_failed", call=self._call_id)


@dataclass(slots=True)
class _Playback:
    play: commands.Play
    player: Prompter
    token: int
    connected: bool = False


def sip_headers(pairs: tuple[tuple[str, str], ...]) -> Any:
    """A `SipHeaderVector` of well-formed headers; a bad name or a CR/LF in a value is skipped."""
    vector = pj.SipHeaderVector()
    for name, value in pairs:
        if not _TOKEN.match(name) or "\r" in value or "\n" in value:
            log.warning("sip.header.skipped", header=name)
            continue
        header = pj.SipHeader()
        header.hName = name
        header.hValue = value
        vector.append(header)
    return vector


class IvrCall(pj.Call):  # type: ignore[misc]
    """An incoming call; `call_id` is the worker's id for it ("w000-mi6x0k3z-17": worker, process start, counter)."""

    def __init__(self, account: Any, pj_call_id: int, call_id: str, host: CallHost) -> None:
        super().__init__(account, pj_call_id)
        self.call_id = call_id
        self._host = host
        self.answered = False
        self.end_reason = ""
        self._connected = False
        self._ended = False
        self._playback: _Playback | None = None
        self._recording: Recording | None = None
        self._tokens = 0
        self._refers = ReferTransactions()
        self._superseding = False

    # --- callbacks (loop thread) -------------------------------------------------------------------

    def onCallState(self, prm: Any) -> None:  # noqa: N802
        try:
            self._on_state(prm)
        except Exception:
            log.exception("sip.call.state_failed", call=self.call_id)

    def _on_state(self, prm: Any) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not self._connected:
            self._connected = True
            log.debug("sip.call.connected", call=self.call_id)
            self._host.emit(self.call_id, events.CallConnected())
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self._ended:
            self._ended = True
            self._stop_playback()
            if self._recording is not None:  # the message left so far is kept: reported before the end
                self._finish_recording("hangup")
            reason = self.end_reason or _remote_reason(prm, info.lastStatusCode)
            log.debug("sip.call.ended", call=self.call_id, reason=reason, code=info.lastStatusCode)
            self._host.emit(self.call_id, events.CallEnded(reason=reason, code=info.lastStatusCode))
            self._host.ended(self.call_id)

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        try:
            self._connect_playback()
        except Exception:
            log.exception("sip.call.media_failed", call=self.call_id)

    def onDtmfDigit(self, prm: Any) -> None:  # noqa: N802 (SIP INFO: loop thread; RFC 4733: pjmedia's thread)
        try:
            method: events.DtmfMethod = "info" if prm.method == _DTMF_INFO else "rfc4733"
            event = events.DigitReceived(str(prm.digit)[:1].upper(), method, time.time())
            if threading.get_ident() == self._host.loop_thread:
                self.digit(event)
            else:  # no pjsua2 call here: the loop acts on it (control queue + waker, stack.py)
                self._host.post_digit(self.call_id, event)
        except Exception:
            log.exception("sip.call.digit_failed", call=self.call_id)

    def digit(self, event: events.DigitReceived) -> None:
        """A digit, on the loop thread: barges in on an interruptible prompt and goes to the controller."""
        if self._playback is not None and self._playback.play.interruptible:
            self._stop_playback()
        # Never the digit's value: the worker cannot know whether a sensitive gather is collecting it.
        log.debug("sip.call.digit", call=self.call_id, method=event.method)
        self._host.emit(self.call_id, event)

    def onCallTsxState(self, prm: Any) -> None:  # noqa: N802
        if not self._refers.watching:  # no REFER of ours in flight: nothing to read from `prm`
            return
        try:
            self._refers.observe(prm.e.body.tsxState.tsx)
        except Exception:
            log.exception("sip.call.tsx_state_failed", call=self.call_id)

    def onCallTransferStatus(self, prm: Any) -> None:  # noqa: N802
        try:
            code, final, reason = int(prm.statusCode), bool(prm.finalNotify), str(prm.reason)
            if self._superseding:  # an earlier REFER's subscription, ended by `transfer` (ivr/sip/transfer.py)
                log.debug("sip.call.transfer_superseded", call=self.call_id, code=code)
                return
            if final and self._refers.take_timeout() and code == 500:
                code, reason = 408, "Request Timeout"
            log.debug("sip.call.transfer_progress", call=self.call_id, code=code, final=final)
            self._host.emit(self.call_id, events.TransferProgress(code=code, final=final, reason=reason))
        except Exception:
            log.exception("sip.call.transfer_status_failed", call=self.call_id)

    def onCallTransferRequest(self, prm: Any) -> None:  # noqa: N802
        """A REFER from the far end: refused, whatever it names (pjsua would otherwise call the Refer-To)."""
        try:
            prm.statusCode = 603
            log.warning("sip.call.refer_refused", call=self.call_id)
        except Exception:
            log.exception("sip.call.refer_refuse_failed", call=self.call_id)

    def onCallReplaceRequest(self, prm: Any) -> None:  # noqa: N802
        """An INVITE with Replaces aimed at this call: refused (no outside request may take a call over)."""
        try:
            prm.statusCode = 603
            prm.reason = "Declined"
            log.warning("sip.call.replace_refused", call=self.call_id)
        except Exception:
            log.exception("sip.call.replace_refuse_failed", call=self.call_id)

    # --- commands (loop thread) --------------------------------------------------------------------

    def answer_call(self) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = 200
        self.answer(prm)
        self.answered = True

    def reject(self, code: int, reason: str = "", retry_after: int = 0, why: str = "rejected") -> None:
        """Send a final error response to the INVITE (a call already answered gets a BYE instead)."""
        prm = pj.CallOpParam()
        prm.statusCode = code if 300 <= code <= 699 else 480
        if reason:
            prm.reason = reason
        if retry_after > 0:
            prm.txOption.headers = sip_headers((("Retry-After", str(retry_after)),))
        self.end_reason = self.end_reason or why
        self.hangup(prm)

    def hang_up(self, code: int) -> None:
        """BYE when answered, else the final response `code` (480 when `code` is not an error)."""
        if self.answered:
            self.end_reason = self.end_reason or "local_hangup"
            self.hangup(pj.CallOpParam())
        else:
            self.reject(code, why="local_hangup")

    def transfer(self, uri: str, headers: tuple[tuple[str, str], ...]) -> None:
        """REFER to `uri`; an earlier REFER of this call still in pjsip is ended first (see transfer.py)."""
        self._superseding = True
        try:
            superseded = self._refers.supersede()
        finally:
            self._superseding = False
        if superseded:
            log.debug("sip.call.refer_superseded", call=self.call_id, transactions=superseded)
        prm = pj.CallOpParam(True)
        prm.txOption.headers = sip_headers(headers)
        self._refers.expect()
        try:
            self.xfer(uri if uri.startswith("<") else f"<{uri}>", prm)  # name-addr: ';' and '?' stay in the URI
        except pj.Error as exc:
            log.warning("sip.call.transfer_failed", call=self.call_id, error=exc.info())  # no URI: it may hold a secret
            self._refers.expect(False)
            self._host.emit(self.call_id, events.TransferProgress(code=500, final=True, reason="xfer failed"))

    def play(self, play: commands.Play) -> None:
        """Replace the current playback with `play`; a missing prompt ends it at once."""
        self._play_files(play, [str(prompt_path(self._host.prompts, name, play.lang)) for name in play.prompts]
                         + list(play.files))

    def play_recording(self, cmd: commands.PlayRecording) -> None:
        """Play one of this call's recordings back (review), interruptible like a prompt."""
        path = self._host.recordings / f"{self.call_id}-{cmd.recording_id}.wav"
        self._play_files(commands.Play(cmd.play_id, (), interruptible=True), [str(path)])

    def start_recording(self, cmd: commands.StartRecording) -> None:
        """Record the caller into `<recordings>/<call id>-<recording id>.wav`; no audio: failed at once."""
        self._stop_playback()
        if self._recording is not None:
            self._finish_recording("stopped")
        if not self._has_audio():
            self._host.emit(self.call_id, events.RecordingFinished(cmd.recording_id, "failed", ""))
            return
        path = self._host.recordings / f"{self.call_id}-{cmd.recording_id}.wav"
        try:
            self._recording = Recording(cmd, path, self.getAudioMedia(-1))
        except pj.Error as exc:
            log.error("sip.record.create_failed", call=self.call_id, error=exc.info())
            self._host.emit(self.call_id, events.RecordingFinished(cmd.recording_id, "failed", ""))
            return
        self._host.watch_recording(self.call_id)

    def stop_recording(self, recording_id: int) -> None:
        if self._recording is not None and self._recording.cmd.recording_id == recording_id:
            self._finish_recording("stopped")

    def poll_recording(self, now: float) -> bool:
        """Check silence and length; True while the recording goes on."""
        if self._recording is None:
            return False
        reason = self._recording.poll(now)
        if reason is not None:
            self._finish_recording(reason)
        return self._recording is not None

    def _finish_recording(self, reason: str) -> None:
        recording, self._recording = self._recording, None
        if recording is not None:
            self._host.emit(self.call_id, recording.stop(reason))

    def _play_files(self, play: commands.Play, files: list[str]) -> None:
        self._stop_playback()
        lengths = [self._host.wav_lengths.seconds(f) for f in files]
        missing = [f for f, seconds in zip(files, lengths, strict=True) if seconds is None]
        if missing or not files:
            log.error("sip.play.missing_prompt", call=self.call_id, play_id=play.play_id, missing=missing)
            self._host.emit(self.call_id, events.PlaybackFinished(play.play_id))
            return
        self._tokens += 1
        player = Prompter(self._host, self.call_id, self._tokens)
        try:
            options = 0 if play.loop else pj.PJMEDIA_FILE_NO_LOOP
            if len(files) == 1:
                player.createPlayer(files[0], options)
            else:
                player.createPlaylist(files, f"p{self._tokens}", options)
        except pj.Error as exc:
            log.error("sip.play.create_failed", call=self.call_id, play_id=play.play_id, error=exc.info())
            self._host.emit(self.call_id, events.PlaybackFinished(play.play_id))
            return
        self._playback = _Playback(play, player, self._tokens)
        self._connect_playback()
        if not play.loop:  # a lost end-of-file (or media that never comes up) must not leave the flow waiting
            seconds = sum(s for s in lengths if s is not None)
            self._host.watch_play(self.call_id, self._tokens, seconds + PLAY_GRACE_S)

    def stop_playback(self, play_id: int) -> None:
        if self._playback is not None and self._playback.play.play_id == play_id:
            self._stop_playback()

    def play_overdue(self, token: int) -> None:
        """The playback `token` should have ended by now: finish it as if its end-of-file had come."""
        if self._playback is not None and self._playback.token == token:
            log.warning("sip.play.overdue", call=self.call_id, play_id=self._playback.play.play_id)
            self.player_eof(token)

    def player_eof(self, token: int) -> None:
        """The player `token` reached its end (delivered on the loop thread)."""
        playback = self._playback
        if playback is None or playback.token != token or playback.play.loop:
            return
        self._stop_playback()
        self._host.emit(self.call_id, events.PlaybackFinished(playback.play.play_id))

    # --- internals ---------------------------------------------------------------------------------

    def _connect_playback(self) -> None:
        playback = self._playback
        if playback is None or playback.connected or not self._has_audio():
            return
        playback.player.startTransmit(self.getAudioMedia(-1))
        playback.connected = True

    def _has_audio(self) -> bool:
        info = self.getInfo()  # keep it: iterating a temporary's `.media` reads freed memory (SWIG)
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                return True
        return False

    def _stop_playback(self) -> None:
        playback, self._playback = self._playback, None
        if playback is None:
            return
        if playback.connected:
            try:
                playback.player.stopTransmit(self.getAudioMedia(-1))
            except pj.Error:
                pass  # the call's media is already gone, and with it the connection
        self._host.retire(playback.player)


def _remote_reason(prm: Any, code: int) -> str:
    """Why the far end (or the network) ended a call we did not end ourselves."""
    try:
        tsx = prm.e.body.tsxState.tsx
        if tsx.method in ("BYE", "CANCEL") and tsx.role == pj.PJSIP_ROLE_UAS:
            return "caller_hangup"
    except Exception:
        pass
    if code in (200, 487):
        return "caller_hangup"
    return "no_ack" if code == 408 else "failed"
