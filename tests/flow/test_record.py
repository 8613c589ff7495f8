"""The record step (voicemail): intro and beep, finish key / silence / max, review menu, empty takes, hang-up."""

from __future__ import annotations

from typing import Any

from flowkit import T0, connect, make_config

from ivr.flow.commands import HangUp, Play, PlayRecording, StartRecording, StopPlayback, StopRecording
from ivr.flow.events import CallEnded, DigitReceived, PlaybackFinished, RecordingFinished
from ivr.flow.session import FlowSession


def flow(**record: Any) -> list[dict[str, Any]]:
    step = {"id": "vm", "type": "record", "prompts": ["voicemail_intro"], "max_length": "60s", "silence": "4s",
            "variable": "voicemail", "next": "saved", "on_empty": "nothing", **record}
    return [step, {"id": "saved", "type": "hangup", "reason": "saved"},
            {"id": "nothing", "type": "hangup", "reason": "nothing"}]


def recorded(session: FlowSession, now: float, *, reason: str = "silence", voiced: float = 6.0) -> list[Any]:
    out = session.handle(PlaybackFinished(1), now)
    [start] = out
    assert isinstance(start, StartRecording) and (start.max_s, start.silence_s) == (60.0, 4.0)
    return session.handle(RecordingFinished(start.recording_id, reason, "vm-1.wav", voiced + 4, voiced), now + 10)


def test_intro_and_beep_then_record_and_keep_without_review() -> None:
    session, out = connect(make_config(flow(review=False)))
    assert out[-1] == Play(1, ("voicemail_intro", "beep"), interruptible=False)
    assert session.handle(DigitReceived("#"), T0 + 1) == []     # not during the intro
    assert recorded(session, T0 + 5) == [HangUp("saved")]
    assert session.variables["voicemail"] == "vm-1.wav"
    assert session.path == ("vm:take_silence", "vm:kept", "saved:hangup")


def test_finish_key_stops_the_recording() -> None:
    session, _ = connect(make_config(flow(review=False)))
    [start] = session.handle(PlaybackFinished(1), T0 + 5)
    assert isinstance(start, StartRecording)
    assert session.handle(DigitReceived("5"), T0 + 6) == []      # other keys are just sound
    assert session.handle(DigitReceived("#"), T0 + 9) == [StopRecording(start.recording_id)]
    out = session.handle(RecordingFinished(start.recording_id, "stopped", "vm-1.wav", 4.0, 3.8), T0 + 9.1)
    assert out == [HangUp("saved")]


def test_review_listen_then_rerecord_then_keep() -> None:
    session, _ = connect(make_config(flow()))
    out = recorded(session, T0 + 5)
    assert out == [Play(2, ("voicemail_review",))]
    out = session.handle(DigitReceived("1"), T0 + 16)
    assert out == [StopPlayback(2), PlayRecording(3, 1)]
    out = session.handle(PlaybackFinished(3), T0 + 26)
    assert out == [Play(4, ("voicemail_review",))]
    out = session.handle(DigitReceived("2"), T0 + 27)          # again: only the beep this time
    assert out == [StopPlayback(4), Play(5, ("beep",), interruptible=False)]
    [start] = session.handle(PlaybackFinished(5), T0 + 28)
    assert isinstance(start, StartRecording) and start.recording_id == 2
    session.handle(RecordingFinished(2, "max", "vm-2.wav", 60.0, 60.0), T0 + 88)
    assert session.handle(DigitReceived("3"), T0 + 90)[-1] == HangUp("saved")
    assert session.variables["voicemail"] == "vm-2.wav"


def test_no_review_choice_keeps_it() -> None:
    session, _ = connect(make_config(flow(review_timeout="3s")))
    recorded(session, T0 + 5)
    assert session.handle(PlaybackFinished(2), T0 + 20) == []
    assert session.deadline == T0 + 23
    assert session.handle_timer(T0 + 23) == [HangUp("saved")]


def test_empty_takes_ask_again_then_on_empty() -> None:
    session, _ = connect(make_config(flow(max_takes=2)))
    out = recorded(session, T0 + 5, voiced=0.0)
    assert out == [Play(2, ("voicemail_intro", "beep"), interruptible=False)]
    [start] = session.handle(PlaybackFinished(2), T0 + 20)
    assert isinstance(start, StartRecording)
    out = session.handle(RecordingFinished(start.recording_id, "silence", "vm-2.wav", 4.5, 0.4), T0 + 25)
    assert out == [HangUp("nothing")]
    assert "voicemail" not in session.variables


def test_caller_hangs_up_mid_message_and_the_message_is_kept() -> None:
    session, _ = connect(make_config(flow()))
    [start] = session.handle(PlaybackFinished(1), T0 + 5)
    assert isinstance(start, StartRecording)
    assert session.handle(RecordingFinished(start.recording_id, "hangup", "vm-1.wav", 12.0, 11.0), T0 + 17) == []
    session.handle(CallEnded("caller_hangup"), T0 + 17)
    record = session.record().as_dict()
    assert record["variables"]["voicemail"] == "vm-1.wav"
    assert record["outcome"]["kind"] == "abandoned"


def test_a_worker_that_never_reports_does_not_hold_the_call() -> None:
    session, _ = connect(make_config(flow()))
    session.handle(PlaybackFinished(1), T0 + 5)
    assert session.deadline == T0 + 5 + 60 + 10
    assert session.handle_timer(T0 + 75) == [HangUp("nothing")]
    assert "vm:take_lost" in session.path


def test_stale_report_ignored() -> None:
    session, _ = connect(make_config(flow()))
    session.handle(PlaybackFinished(1), T0 + 5)
    assert session.handle(RecordingFinished(99, "silence", "x.wav", 5, 5), T0 + 6) == []
