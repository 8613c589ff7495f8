"""Voicemail recording on a worker: pjsua2's `AudioMediaRecorder` (8 kHz 16-bit WAV) plus silence detection.

pjsua2 has no voice-activity callback. Rather than an `AudioMediaPort` (its frame callbacks run on the
clock thread and would need a hand-over), the loop thread polls the WAV file the recorder is writing: every
`POLL_S` it reads the frames written since the last poll and measures each 20 ms frame's RMS. The recording
stops after `silence_s` without a voiced frame (the conference bridge keeps writing frames when no RTP
comes, so a silent caller times out too) or at `max_s`. Voiced = up to the end of the last voiced frame.
The recorder is destroyed on stop; once pjmedia has closed the file (header sizes written), RecordingFinished
is sent.
"""

from __future__ import annotations

import math
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import pjsua2 as pj
import structlog

from ivr.flow import commands, events
from ivr.prompts import wav_seconds

log = structlog.get_logger()

POLL_S = 0.2
FRAME_BYTES = 320
"""20 ms of 8 kHz 16-bit mono."""
FRAME_S = 0.02
HEADER_BYTES = 44
CLOSE_WAIT_S = 0.5
VOICE_RMS = 300.0
"""About -41 dBFS: line noise and comfort noise stay below, speech goes well above."""


def frame_rms(frame: bytes) -> float:
    samples = array("h", frame)
    if sys.byteorder != "little":
        samples.byteswap()
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


class Recording:
    """One StartRecording on one call; the call owns it and calls `poll`, `stop` on its loop thread."""

    def __init__(self, cmd: commands.StartRecording, path: Path, media: Any) -> None:
        self.cmd = cmd
        self.path = path
        self.started = time.monotonic()
        self._frames = 0
        self._voiced_frames = 0
        self._offset = HEADER_BYTES
        self._media = media
        self._recorder: Any = pj.AudioMediaRecorder()
        self._recorder.createRecorder(str(path))
        media.startTransmit(self._recorder)

    def poll(self, now: float) -> str | None:
        """Why the recording should end now ("silence", "max"), or None."""
        self._analyse()
        if now - self.started >= self.cmd.max_s or self._frames * FRAME_S >= self.cmd.max_s:
            return "max"
        if (self._frames - self._voiced_frames) * FRAME_S >= self.cmd.silence_s:
            return "silence"
        return None

    def stop(self, reason: str) -> events.RecordingFinished:
        """Disconnect and destroy the recorder (the file is complete afterwards) and say how it went."""
        try:
            self._media.stopTransmit(self._recorder)
        except pj.Error:
            pass  # the call's media is already gone
        self._recorder = None  # destroying it removes its conference port, which closes the file
        length = self._closed_length()
        self._analyse()
        length = max(length, self._frames * FRAME_S)
        voiced = min(length, self._voiced_frames * FRAME_S)
        log.info("sip.record.finished", file=self.path.name, reason=reason, duration_s=round(length, 2),
                 voiced_s=round(voiced, 2))
        return events.RecordingFinished(self.cmd.recording_id, reason, self.path.name, round(length, 3),
                                        round(voiced, 3))

    def _closed_length(self) -> float:
        """The file's length once its header is written. pjmedia (2.14+) removes conference ports on its
        clock thread, so the file is closed a frame or two after the recorder is destroyed: wait for it,
        briefly (the loop thread stalls meanwhile; typically 20-40 ms), rather than report a file in flux."""
        end = time.monotonic() + CLOSE_WAIT_S
        while True:
            length = wav_seconds(self.path, 0.0)
            if length > 0 or time.monotonic() >= end:
                return length
            time.sleep(0.005)

    def _analyse(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        whole = len(data) - len(data) % FRAME_BYTES
        for start in range(0, whole, FRAME_BYTES):
            self._frames += 1
            if frame_rms(data[start:start + FRAME_BYTES]) >= VOICE_RMS:
                self._voiced_frames = self._frames
        self._offset += whole
