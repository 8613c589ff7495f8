"""The worker's bridged legs and its call slots: a leg is never attempted without a free pjsua slot."""

from __future__ import annotations

import pytest
from sip_harness import Controller, sipp

from ivr.flow import commands, events

pytestmark = pytest.mark.sip


def bridge_when_full(ctl: Controller, call: str, event: object) -> None:
    """Answer every call; once all 4 are connected, bridge each (to a loopback port nobody listens on)."""
    match event:
        case events.CallOffered():
            ctl.send(call, commands.Answer())
        case events.CallConnected() if len(ctl.of(events.CallConnected)) == 4:
            for connected in ctl.calls():
                ctl.send(connected, commands.Bridge("agents", "sip:agents@127.0.0.1:9", (("X-Customer-Id", "C-1"),),
                                                    5.0))


def test_a_full_worker_attempts_no_leg(spawn_worker):
    """4 callers hold all 4 slots: each Bridge is answered at once with a final 503 "no_slot", no INVITE."""
    worker = spawn_worker(bridge_when_full)
    sipp(worker, "long_hold.xml", "-d", "4000", calls=4, rate="50")
    ctl = worker.ctl
    assert ctl.wait_for(lambda: len(ctl.of(events.CallEnded)) == 4, 10)
    progress = ctl.of(events.BridgeProgress)
    assert len(progress) == 4 and all((p.code, p.final, p.reason) == (503, True, "no_slot") for p in progress)
    assert "sip.bridge.ringing" not in worker.stderr()
