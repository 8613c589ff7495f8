"""A refused or unanswered first transfer, then the fallback REFER in the same dialog: several calls at once
straight at one worker. The transferee's NOTIFYs carry `Event: refer;id=<CSeq>` as real ones do; a 481 to
one of them fails the SIPp call (see ivr/sip/transfer.py for why pjsip sent one)."""

from __future__ import annotations

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


@pytest.mark.parametrize("calls", [4, 1])
@pytest.mark.parametrize("status", ["405", "603"])
def test_refused_refer_then_fallback_at_once(spawn_worker, status: str, calls: int) -> None:
    worker = spawn_worker(fallback_script())
    run = sipp(worker, "refer_reject.xml", "-set", "digits", "1", "-set", "expected_refer", FIRST,
               "-set", "refer_status", status, calls=calls, rate="100", check=False)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: len(ctl.of(events.CallEnded)) == calls, 10)
    assert run.returncode == 0, f"{run.stdout[-2500:]}\nworker:\n{worker.stderr()[-6000:]}"
    for call in ctl.calls():
        finals = [(p.code, p.final) for p in ctl.of(events.TransferProgress, call) if p.final]
        assert finals == [(int(status), True), (200, True)], (call, finals)
        assert ctl.of(events.CallEnded, call) == [events.CallEnded(reason="local_hangup", code=200)]
