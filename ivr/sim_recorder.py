"""`ivr simulate`'s stand-in for the worker's recorder: the caller speaks `--record-seconds` then is silent."""

from __future__ import annotations

from dataclasses import dataclass, field

from ivr.flow.commands import StartRecording
from ivr.flow.events import RecordingFinished


@dataclass
class SimRecorder:
    speech_s: float
    """How long the simulated caller speaks into each recording."""
    started: dict[int, tuple[float, StartRecording]] = field(default_factory=dict)
    lengths: dict[int, float] = field(default_factory=dict)
    active: int | None = None

    def start(self, cmd: StartRecording, now: float) -> tuple[float, RecordingFinished]:
        """When the recording ends by itself (silence after the speech, or its maximum), and how."""
        self.started[cmd.recording_id] = (now, cmd)
        self.active = cmd.recording_id
        voiced = min(self.speech_s, cmd.max_s)
        if self.speech_s + cmd.silence_s >= cmd.max_s:
            return cmd.max_s, self._finished(cmd.recording_id, "max", cmd.max_s, voiced)
        return self.speech_s + cmd.silence_s, self._finished(cmd.recording_id, "silence",
                                                             self.speech_s + cmd.silence_s, voiced)

    def stop(self, recording_id: int, now: float) -> RecordingFinished:
        """The finish key: the file holds what was said so far."""
        at, _ = self.started[recording_id]
        length = now - at
        return self._finished(recording_id, "stopped", length, min(self.speech_s, length))

    def _finished(self, recording_id: int, reason: str, length: float, voiced: float) -> RecordingFinished:
        self.lengths[recording_id] = length
        return RecordingFinished(recording_id, reason, f"sim-{recording_id}.wav", round(length, 3), round(voiced, 3))
