"""The call router without SIP: admission (trunks, numbers, drain), the front's trunk header, lost workers,
and a bug in one call's session staying inside that call. Commands are captured; the clock is ours."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from ivr.calls import CallRouter
from ivr.config.load import load_config
from ivr.flow import commands, events
from ivr.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


class Fetcher:
    async def fetch(self, cmd: commands.Fetch) -> events.FetchCompleted | events.FetchFailed:
        return events.FetchFailed(cmd.request_id, "connect_error", 1.0)


@pytest.fixture
def sent() -> list[tuple[str, str, Any]]:
    return []


def make_router(sent: list[tuple[str, str, Any]], front_hosts: frozenset[str] = frozenset()) -> CallRouter:
    config = load_config(ROOT / "config" / "ivr.yaml").config
    return CallRouter(config, lambda w, c, m: sent.append((w, c, m)), Fetcher(), Metrics(), front_hosts=front_hosts,
                      clock=lambda: 1_800_000_000.0)


def offer(source: str = "127.0.0.1:5070", dialed: str = "100", headers: tuple[tuple[str, str], ...] = ()
          ) -> events.CallOffered:
    return events.CallOffered(source=source, caller="+15551000001", dialed=dialed, sip_call_id="sip-1",
                              headers=headers)


async def test_a_trunk_call_is_answered(sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent)
    router.on_event("w000", "c1", offer())
    assert sent == [("w000", "c1", commands.Answer())]
    assert ("w000", "c1") in router.calls


async def test_an_address_that_is_no_trunk_gets_403(sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent)
    with capture_logs() as logs:
        router.on_event("w000", "c1", offer(source="192.0.2.7:5060"))
    assert sent == [("w000", "c1", commands.Reject(403, "Forbidden"))]
    assert logs[0]["event"] == "call.rejected" and logs[0]["source"] == "192.0.2.7:5060"


async def test_the_trunk_header_is_trusted_only_from_the_front(sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent, front_hosts=frozenset({"10.0.0.5"}))
    router.on_event("w000", "c1", offer(source="10.0.0.5:5060", headers=(("X-IVR-Trunk", "demo"),)))
    router.on_event("w000", "c2", offer(source="192.0.2.7:5060", headers=(("X-IVR-Trunk", "demo"),)))
    router.on_event("w000", "c3", offer(source="10.0.0.5:5060", headers=(("X-IVR-Trunk", "nope"),)))
    assert [m for _, _, m in sent] == [commands.Answer(), commands.Reject(403, "Forbidden"),
                                       commands.Reject(403, "Forbidden")]


async def test_draining_refuses_new_calls_with_503_and_retry_after(sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent)
    router.draining = True
    router.on_event("w000", "c1", offer())
    assert sent == [("w000", "c1", commands.Reject(503, "Service Unavailable", retry_after=30))]


async def test_an_unknown_number_without_catch_all_gets_404(sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent)
    numbers = {k: v for k, v in router.config.numbers.items() if k != "*"}
    router.reconfigure(router.config.model_copy(update={"numbers": numbers}))
    router.on_event("w000", "c1", offer(dialed="999"))
    assert sent == [("w000", "c1", commands.Reject(404, "Not Found"))]


async def test_a_lost_worker_ends_its_calls_with_one_record_each(sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent)
    router.on_event("w000", "c1", offer())
    router.on_event("w001", "c2", offer())
    with capture_logs() as logs:
        router.on_worker_lost("w000")
    ended = [e for e in logs if e["event"] == "call.ended"]
    assert [(e["call_id"], e["end_reason"]) for e in ended] == [("c1", "worker_lost")]
    assert list(router.calls) == [("w001", "c2")]


async def test_a_bug_in_one_session_ends_only_that_call(sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent)
    router.on_event("w000", "c1", offer())
    router.on_event("w000", "c2", offer())

    def broken(event: object, now: float) -> list[commands.FlowCommand]:
        raise RuntimeError("bug")

    router.calls[("w000", "c1")].session.handle = broken  # type: ignore[method-assign]
    with capture_logs() as logs:
        router.on_event("w000", "c1", events.CallConnected())
    assert ("w000", "c1", commands.HangUp(reason="internal_error")) in sent
    assert [e["end_reason"] for e in logs if e["event"] == "call.ended"] == ["internal_error"]
    assert list(router.calls) == [("w000", "c2")]


async def test_a_failing_fetch_routes_the_call_on_and_the_record_says_why(sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent)
    router.on_event("w000", "c1", offer())
    router.on_event("w000", "c1", events.CallConnected())
    play = next(m for _, _, m in sent if isinstance(m, commands.Play))
    router.on_event("w000", "c1", events.PlaybackFinished(play.play_id))
    for _ in range(20):
        await asyncio.sleep(0)
    transfer = next(m for _, _, m in sent if isinstance(m, commands.Transfer))
    assert transfer.queue == "default"


async def test_a_hang_up_the_worker_never_confirms_is_still_recorded(sent: list[tuple[str, str, Any]],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import ivr.calls
    from ivr.config.steps import Flow, HangupStep

    monkeypatch.setattr(ivr.calls, "HANGUP_CONFIRM_S", 0.05)
    router = make_router(sent)
    bye = Flow(steps=(HangupStep(id="bye", type="hangup", reason="test"),))
    router.reconfigure(router.config.model_copy(update={"flows": {**router.config.flows, "bye": bye},
                                                        "numbers": {**router.config.numbers, "999": "bye"}}))
    router.on_event("w000", "c1", offer(dialed="999"))
    router.on_event("w000", "c1", events.CallConnected())
    assert sent[-1] == ("w000", "c1", commands.HangUp(reason="test"))
    with capture_logs() as logs:
        await asyncio.sleep(0.3)  # the worker never sends CallEnded
    assert [e["end_reason"] for e in logs if e["event"] == "call.ended"] == ["hangup_unconfirmed"]
    assert router.calls == {}


async def test_the_record_is_logged_and_handed_on_and_lines_carry_the_call_id(
        sent: list[tuple[str, str, Any]]) -> None:
    router = make_router(sent)
    records: list[Any] = []
    router.on_record = lambda record, data: records.append((record, data))
    router.on_event("w000", "c1", offer())
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        router.on_event("w000", "c1", events.CallConnected())
        await asyncio.sleep(0)  # the CRM lookup task runs and fails (connect_error)
        await asyncio.sleep(0)
        router.on_event("w000", "c1", events.CallEnded("caller_hangup"))
    [(record, data)] = records
    assert data == record.as_dict()
    assert record.call_id == "c1" and record.worker == "w000" and len(record.uid) == 32
    assert record.outcome.kind == "abandoned" and record.end_reason == "caller_hangup"
    ended = [line for line in logs if line["event"] == "call.ended"]
    assert len(ended) == 1 and {k: v for k, v in ended[0].items() if k not in ("event", "log_level")} == \
        record.as_dict()
    assert all(line.get("call_id") == "c1" for line in logs), logs


async def test_round_robin_spans_calls_through_the_routers_cursor(sent: list[tuple[str, str, Any]]) -> None:
    """The per-queue cursor lives in the router, not in the engine: consecutive calls start at the next target."""
    from ivr.config.model import Queue
    from ivr.config.steps import Flow, TransferStep

    config = load_config(ROOT / "config" / "ivr.yaml").config
    queue = Queue.model_validate({"targets": [{"uri": f"sip:a{i}@pbx.test"} for i in range(3)],
                                  "strategy": "round_robin"})
    flow = Flow(steps=(TransferStep(id="go", type="transfer", queue="agents"),))
    config = config.model_copy(update={"queues": {**config.queues, "agents": queue},
                                       "flows": {**config.flows, "rr": flow}, "numbers": {"*": "rr"}})
    router = CallRouter(config, lambda w, c, m: sent.append((w, c, m)), Fetcher(), Metrics(), seed=1)
    for n in range(6):
        router.on_event("w000", f"c{n}", offer())
        router.on_event("w000", f"c{n}", events.CallConnected())
        router.on_event("w000", f"c{n}", events.CallEnded("local_hangup"))  # a worker holds at most 4 calls
    uris = [m.uri for _, _, m in sent if isinstance(m, commands.Transfer)]
    assert uris == [f"sip:a{i % 3}@pbx.test" for i in range(6)]


async def test_a_variable_target_outside_the_allow_list_is_logged(sent: list[tuple[str, str, Any]]) -> None:
    from ivr.config.steps import Flow, HangupStep, SetStep, TransferStep

    config = load_config(ROOT / "config" / "ivr.yaml").config
    flow = Flow(steps=(SetStep(id="set", type="set", values={"am": "sip:mallory@evil.test"}),
                       TransferStep(id="go", type="transfer", queue="account_managers", target="{{am}}",
                                    on_fail="bye"),
                       HangupStep(id="bye", type="hangup")))
    config = config.model_copy(update={"flows": {**config.flows, "am": flow}, "numbers": {"*": "am"}})
    metrics = Metrics()
    router = CallRouter(config, lambda w, c, m: sent.append((w, c, m)), Fetcher(), metrics)
    with capture_logs() as logs:
        router.on_event("w000", "c1", offer())
        router.on_event("w000", "c1", events.CallConnected())
        router.on_event("w000", "c1", events.CallEnded(reason="local_hangup"))
    skipped = [e for e in logs if e["event"] == "transfer.target_skipped"]
    assert [(e["queue"], e["uri"], e["reason"]) for e in skipped] == [
        ("account_managers", "sip:mallory@evil.test", "disallowed")]
    assert not any(isinstance(m, commands.Transfer) for _, _, m in sent)


async def test_a_digit_with_the_workers_receipt_time_is_measured_to_the_engine() -> None:
    config = load_config(ROOT / "config" / "ivr.yaml").config
    metrics = Metrics()
    router = CallRouter(config, lambda w, c, m: None, Fetcher(), metrics, clock=lambda: 1_800_000_000.0)
    router.on_event("w000", "c1", offer())
    router.on_event("w000", "c1", events.CallConnected())
    router.on_event("w000", "c1", events.DigitReceived("1", "rfc4733", 1_800_000_000.0 - 0.012))
    router.on_event("w000", "c1", events.DigitReceived("2", "info"))  # no receipt time: not measured
    text = metrics.render()
    assert 'ivr_digit_delay_ms_bucket{method="rfc4733",le="10"} 0' in text
    assert 'ivr_digit_delay_ms_bucket{method="rfc4733",le="15"} 1' in text
    assert 'ivr_digit_delay_ms_count{method="rfc4733"} 1' in text
    assert 'method="info"' not in text
