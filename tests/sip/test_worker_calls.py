"""Real calls from SIPp to the real worker: answer, prompts, digits, REFER."""

from __future__ import annotations

import threading

import pytest
from sip_harness import SCENARIOS, ivr_script, sipp

from ivr.flow import commands, events

pytestmark = pytest.mark.sip
QUEUE_URI = "sip:sales@127.0.0.1:5999"


def test_rfc4733_digit_triggers_refer(spawn_worker):
    worker = spawn_worker(ivr_script(transfer_on="1", uri=QUEUE_URI))
    sipp(worker, "dtmf_rfc4733_refer.xml", "-key", "dtmf_pcap", str(SCENARIOS / "pcap/dtmf_1.pcap"),
         "-set", "expected_refer", QUEUE_URI)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallEnded), 5)
    (call,) = ctl.calls()
    offered = ctl.of(events.CallOffered)[0]
    assert (offered.caller, offered.dialed) == ("5551234", "100")
    assert ("X-IVR-Trunk", "sipp") in offered.headers
    assert [d.digit for d in ctl.of(events.DigitReceived)] == ["1"]
    assert ctl.of(events.DigitReceived)[0].method == "rfc4733"
    assert ctl.of(events.CallConnected, call)
    assert not ctl.of(events.PlaybackFinished)  # the digit barged into the interruptible prompt
    progress = ctl.of(events.TransferProgress, call)
    assert progress[-1] == events.TransferProgress(code=200, final=True, reason=progress[-1].reason)
    assert ctl.of(events.CallEnded, call) == [events.CallEnded(reason="local_hangup", code=200)]


def test_info_digits_trigger_refer(spawn_worker):
    worker = spawn_worker(ivr_script(transfer_on="112#", uri=QUEUE_URI))
    sipp(worker, "dtmf_info_refer.xml", "-set", "digits", "112#", "-set", "expected_refer", QUEUE_URI)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallEnded), 5)
    assert [(d.digit, d.method) for d in ctl.of(events.DigitReceived)] == [
        ("1", "info"), ("1", "info"), ("2", "info"), ("#", "info")]
    assert ctl.of(events.TransferProgress)[-1].code == 200


def test_repeated_rfc4733_digits_are_separate(spawn_worker):
    worker = spawn_worker(ivr_script(transfer_on="112#", uri=QUEUE_URI))
    sipp(worker, "dtmf_rfc4733_refer.xml", "-key", "dtmf_pcap", str(SCENARIOS / "pcap/dtmf_112hash.pcap"),
         "-set", "expected_refer", QUEUE_URI)
    assert [d.digit for d in worker.ctl.of(events.DigitReceived)] == ["1", "1", "2", "#"]


def test_refer_to_is_asserted_by_sipp(spawn_worker):
    """The scenario's Refer-To check has teeth: a different expected URI fails the call."""
    worker = spawn_worker(ivr_script(transfer_on="1", uri=QUEUE_URI))
    result = sipp(worker, "dtmf_info_refer.xml", "-set", "digits", "1",
                  "-set", "expected_refer", "sip:support@127.0.0.1:5999", check=False, timeout=15)
    assert result.returncode != 0


@pytest.mark.parametrize("status", [405, 603])
def test_rejected_refer_is_a_final_transfer_progress(spawn_worker, status):
    worker = spawn_worker(ivr_script(transfer_on="1", uri=QUEUE_URI))
    sipp(worker, "refer_reject.xml", "-set", "digits", "1", "-set", "expected_refer", QUEUE_URI,
         "-set", "refer_status", str(status))
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallEnded), 5)
    finals = [p for p in ctl.of(events.TransferProgress) if p.final]
    assert [p.code for p in finals] == [status]
    assert ctl.of(events.CallEnded)[0].reason == "local_hangup"


def test_notify_486_is_a_final_transfer_progress(spawn_worker):
    worker = spawn_worker(ivr_script(transfer_on="1", uri=QUEUE_URI))
    sipp(worker, "notify_fail.xml", "-set", "digits", "1", "-set", "expected_refer", QUEUE_URI)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallEnded), 5)
    progress = [(p.code, p.final) for p in ctl.of(events.TransferProgress)]
    assert progress[-1] == (486, True)
    assert all(not final for _, final in progress[:-1])


def test_no_notify_leaves_the_timer_to_the_controller(spawn_worker):
    """202 and then silence: the worker reports nothing final and waits for the controller's HangUp."""
    base = ivr_script(transfer_on="1", uri=QUEUE_URI)

    def script(ctl, call, event):
        base(ctl, call, event)
        if isinstance(event, events.DigitReceived):
            threading.Timer(1.5, ctl.send, (call, commands.HangUp(reason="no_notify"))).start()

    worker = spawn_worker(script)
    sipp(worker, "no_notify.xml", "-set", "digits", "1", "-set", "expected_refer", QUEUE_URI)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallEnded), 5)
    assert not [p for p in ctl.of(events.TransferProgress) if p.final]
    assert ctl.of(events.CallEnded)[0] == events.CallEnded(reason="local_hangup", code=200)


def test_no_input_ends_in_a_transfer(spawn_worker):
    """Silence: after the prompt the controller transfers (the operator); the scenario takes the REFER."""

    def script(ctl, call, event):
        match event:
            case events.CallOffered():
                ctl.send(call, commands.Answer())
                ctl.send(call, commands.Play(1, ("no_input",)))
            case events.PlaybackFinished(play_id=1):
                ctl.send(call, commands.Transfer(queue="operator", uri="sip:operator@127.0.0.1:5999"))
            case events.TransferProgress(final=True):
                ctl.send(call, commands.HangUp(reason="transferred"))

    worker = spawn_worker(script)
    sipp(worker, "no_input.xml")
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallEnded), 5)
    assert ctl.of(events.PlaybackFinished) == [events.PlaybackFinished(1)]
    assert ctl.of(events.TransferProgress)[-1].code == 200
