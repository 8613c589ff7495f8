"""Transfer: REFER to a configured queue, NOTIFY outcomes, uri_params and headers (refer: false: test_bridge.py)."""

from __future__ import annotations

from typing import Any

import pytest
from flowkit import T0, call, connect, make_config
from recordkit import abandoned, hung_up, transferred

from ivr.flow.commands import HangUp, Play, StopPlayback, Transfer
from ivr.flow.events import CallEnded, DigitReceived, TransferProgress

QUEUES = {
    "gold": {"uri": "sip:gold@pbx.test;transport=tcp", "uri_params": {"cust": "{{customer_id}}", "empty": "{{no}}"},
             "headers": {"X-Tier": "{{tier}}", "X-Evil": "{{caller}}", "X-None": "{{missing}}"}},
    "default": {"uri": "sip:default@pbx.test"},
}


def flow(on_fail: str | None = "sorry", **extra: Any) -> list[dict[str, Any]]:
    transfer: dict[str, Any] = {"id": "to_gold", "type": "transfer", "queue": "gold", "notify_timeout": 10} | extra
    if on_fail:
        transfer["on_fail"] = on_fail
    return [{"id": "set", "type": "set", "values": {"customer_id": "C 1;x>", "tier": "gold\r\nVia: evil"}},
            transfer, {"id": "sorry", "type": "hangup", "prompts": ["sorry"], "reason": "sorry"}]


def start(refer: bool = True, on_fail: str | None = "sorry", caller: str = "+1555\r\nX: y") -> Any:
    config = make_config(flow(on_fail), queues=QUEUES,
                         trunks=[{"name": "t1", "sources": ["127.0.0.1"], "refer": refer}])
    return connect(config, info=call(caller=caller))


def test_transfer_renders_uri_params_and_headers() -> None:
    session, commands = start()
    assert commands == [Transfer(
        "gold", "sip:gold@pbx.test;transport=tcp;cust=C%201%3Bx%3E",
        (("X-Tier", "goldVia: evil"), ("X-Evil", "+1555X: y")))]
    assert session.deadline == T0 + 10


def test_final_2xx_transfers_and_hangs_up() -> None:
    session, _ = start()
    assert session.handle(TransferProgress(100, False), T0 + 0.1) == []
    assert session.handle(TransferProgress(180, False), T0 + 0.5) == []
    assert session.handle(TransferProgress(200, True), T0 + 1) == [HangUp("transferred")]
    assert session.deadline is None
    record = session.record().as_dict()
    assert record["outcome"] == transferred("gold", "sip:gold@pbx.test;transport=tcp;"
                                                                       "cust=C%201%3Bx%3E")
    assert record["transfers"][0] | {} == {  # type: ignore[index]
        "step": "to_gold", "queue": "gold", "uri": "sip:gold@pbx.test;transport=tcp;cust=C%201%3Bx%3E",
        "result": "ok", "code": 200, "progress": [100, 180, 200], "sent_at": T0}
    assert record["path"] == ["set:set", "to_gold:ok"]
    assert record["timings"]["transfer_ms"] == 1000.0  # type: ignore[index]
    assert session.handle(CallEnded("local_hangup"), T0 + 1.1) == []
    assert session.finished


@pytest.mark.parametrize("code", [405, 603, 486])
def test_rejection_goes_to_on_fail(code: int) -> None:
    session, _ = start()
    assert session.handle(TransferProgress(code, True), T0 + 1) == [Play(1, ("sorry",), interruptible=False)]
    assert session.record().as_dict()["path"] == ["set:set", f"to_gold:rejected_{code}"]
    assert session.record().as_dict()["transfers"][0]["code"] == code  # type: ignore[index]


def test_no_notify_goes_to_on_fail() -> None:
    session, _ = start()
    session.handle(TransferProgress(100, False), T0 + 0.1)
    assert session.handle_timer(T0 + 9.9) == []
    assert session.handle_timer(T0 + 10) == [Play(1, ("sorry",), interruptible=False)]
    assert session.record().as_dict()["transfers"][0]["result"] == "no_notify"  # type: ignore[index]
    assert session.handle(TransferProgress(200, True), T0 + 11) == []   # too late: ignored


def test_failure_without_on_fail_hangs_up() -> None:
    session, _ = start(on_fail=None)
    assert session.handle(TransferProgress(603, True), T0 + 1) == [HangUp("transfer_failed")]
    assert session.record().as_dict()["outcome"] == hung_up("transfer_failed")


def test_playback_is_stopped_before_the_transfer() -> None:
    steps = [{"id": "menu", "type": "menu", "prompts": ["m"], "options": {"1": "go"}, "on_exhausted": "go"},
             {"id": "go", "type": "transfer", "queue": "default"}]
    session, _ = connect(make_config(steps))
    assert session.handle(DigitReceived("1"), T0 + 1) == [StopPlayback(1), Transfer("default",
                                                                                     "sip:default@pbx.test")]


def test_call_ended_mid_transfer_and_digits_ignored() -> None:
    session, _ = start()
    assert session.handle(DigitReceived("5"), T0 + 0.5) == []
    assert session.handle(CallEnded("caller_hangup"), T0 + 1) == []
    assert session.record().as_dict()["transfers"][0]["result"] == "abandoned"  # type: ignore[index]
    assert session.record().as_dict()["outcome"] == abandoned("caller_hangup")
    assert session.handle(TransferProgress(200, True), T0 + 2) == [] and session.deadline is None
