"""A refused or unanswered first transfer, then the fallback REFER in the same dialog: several calls at once
straight at one worker. The transferee's NOTIFYs carry `Event: refer;id=<CSeq>` as real ones do; a 481 to
one of them fails the SIPp call (see ivr/sip/transfer.py for why pjsip sent one)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sip_harness import Controller, Script, sipp

from ivr.flow import commands, events

pytestmark = pytest.mark.sip
FIRST = "sip:sales@127.0.0.1:5999"
FALLBACK = "sip:default@127.0.0.1:5999"


def fallback_script(notify_timeout: float | None = None) -> Script:
    """Answer, REFER to FIRST on digit 1; a final failure REFERs to FALLBACK; a final 2xx hangs up."""
    attempts: dict[str, int] = {}

    def script(ctl: Controller, call: str, event: Any) -> None:
        match event:
            case events.CallOffered():
                ctl.send(call, commands.Answer())
                ctl.send(call, commands.Play(next(ctl.play_ids), ("welcome",)))
            case events.DigitReceived(digit="1") if call not in attempts:
                attempts[call] = 1
                ctl.send(call, commands.Transfer(queue="sales", uri=FIRST))
            case events.TransferProgress(final=True, code=code) if code >= 300 and attempts.get(call) == 1:
                attempts[call] = 2
                ctl.send(call, commands.Transfer(queue="default", uri=FALLBACK))
            case events.TransferProgress(final=True, code=code) if 200 <= code < 300:
                ctl.send(call, commands.HangUp(reason="transferred"))

    return script


@pytest.mark.parametrize(("status", "calls", "transport"), [
    ("405", 4, "u1"), ("603", 4, "u1"), ("405", 1, "u1"), ("603", 1, "u1"),
    ("405", 4, "t1"),  # over TCP pjsip's Timer K is 0: nothing is left to end, and nothing may break
])
def test_refused_refer_then_fallback_at_once(spawn_worker, status: str, calls: int, transport: str) -> None:
    worker = spawn_worker(fallback_script())
    run = sipp(worker, "refer_reject.xml", "-set", "digits", "1", "-set", "expected_refer", FIRST,
               "-set", "refer_status", status, calls=calls, rate="100", transport=transport, check=False)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: len(ctl.of(events.CallEnded)) == calls, 10)
    assert run.returncode == 0, f"{run.stdout[-2500:]}\nworker:\n{worker.stderr()[-6000:]}"
    for call in ctl.calls():
        finals = [(p.code, p.final) for p in ctl.of(events.TransferProgress, call) if p.final]
        assert finals == [(int(status), True), (200, True)], (call, finals)
        assert ctl.of(events.CallEnded, call) == [events.CallEnded(reason="local_hangup", code=200)]


def test_unanswered_refer_is_a_408_and_the_call_stays_up(spawn_worker) -> None:
    """No answer to the REFER at all: pjsip's Timer F (64*T1 = 32 s on UDP) ends the REFER with 408. That is a
    final TransferProgress for the controller and the call stays up for the fallback REFER (pjsip would
    otherwise send BYE on a 408 to an in-dialog request: keep_inv_after_tsx_timeout, ivr/sip/transfer.py)."""
    worker = spawn_worker(fallback_script())
    run = sipp(worker, "refer_timeout.xml", "-set", "digits", "1", "-set", "expected_refer", FIRST,
               calls=4, rate="100", timeout=60, check=False)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: len(ctl.of(events.CallEnded)) == 4, 10)
    assert run.returncode == 0, f"{run.stdout[-2500:]}\nworker:\n{worker.stderr()[-4000:]}"
    for call in ctl.calls():
        finals = [p.code for p in ctl.of(events.TransferProgress, call) if p.final]
        assert finals == [408, 200], (call, finals)
        assert ctl.of(events.CallEnded, call) == [events.CallEnded(reason="local_hangup", code=200)]


def test_fallback_sent_while_the_first_refer_is_unanswered(spawn_worker) -> None:
    """The controller gives up on an unanswered REFER (its own timer) and sends the fallback: the first
    REFER's transaction is ended before the second goes out, and its status is not reported as the
    fallback's."""
    base = fallback_script()

    def script(ctl: Controller, call: str, event: Any) -> None:
        base(ctl, call, event)
        if isinstance(event, events.DigitReceived):
            threading.Timer(2.0, ctl.send, (call, commands.Transfer(queue="default", uri=FALLBACK))).start()

    worker = spawn_worker(script)
    run = sipp(worker, "refer_timeout.xml", "-set", "digits", "1", "-set", "expected_refer", FIRST,
               calls=4, rate="100", timeout=30, check=False)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: len(ctl.of(events.CallEnded)) == 4, 10)
    assert run.returncode == 0, f"{run.stdout[-2500:]}\nworker:\n{worker.stderr()[-4000:]}"
    for call in ctl.calls():
        finals = [p.code for p in ctl.of(events.TransferProgress, call) if p.final]
        assert finals == [200], (call, finals)
        assert ctl.of(events.CallEnded, call) == [events.CallEnded(reason="local_hangup", code=200)]


def test_fallback_after_a_silent_subscription_outlived_its_refer(spawn_worker) -> None:
    """202 and no NOTIFY, and the controller waits longer than Timer K (5 s; the flow's default notify timeout
    is 10 s): the first REFER's transaction is gone, its subscription is not (pjsua2 gives no handle to end
    it). That subscription takes the fallback's NOTIFY (it has no Event id yet), and pjsua reports it for the
    same call: the controller still sees the fallback succeed (ivr/sip/transfer.py, "Left as it is")."""
    base = fallback_script()

    def script(ctl: Controller, call: str, event: Any) -> None:
        base(ctl, call, event)
        if isinstance(event, events.DigitReceived):
            threading.Timer(6.0, ctl.send, (call, commands.Transfer(queue="default", uri=FALLBACK))).start()

    worker = spawn_worker(script)
    run = sipp(worker, "no_notify.xml", "-set", "digits", "1", "-set", "expected_refer", FIRST,
               calls=4, rate="100", timeout=30, check=False)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: len(ctl.of(events.CallEnded)) == 4, 10)
    assert run.returncode == 0, f"{run.stdout[-2500:]}\nworker:\n{worker.stderr()[-4000:]}"
    for call in ctl.calls():
        assert [p.code for p in ctl.of(events.TransferProgress, call) if p.final] == [200], call
        assert ctl.of(events.CallEnded, call) == [events.CallEnded(reason="local_hangup", code=200)]
