"""Admission counts a bridged call as two worker slots: a 4-slot worker holds 2 calls from a trunk without REFER
(each may ring a second leg), the third gets 503 + Retry-After so the front fails it over to another worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ivr.calls import CallRouter
from ivr.config.load import load_config
from ivr.config.model import Trunk
from ivr.flow import commands, events
from ivr.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]


class Fetcher:
    async def fetch(self, cmd: commands.Fetch) -> events.FetchCompleted | events.FetchFailed:
        return events.FetchFailed(cmd.request_id, "connect_error", 1.0)


def make_router(sent: list[tuple[str, str, Any]]) -> CallRouter:
    config = load_config(ROOT / "config" / "ivr.yaml").config
    assert Trunk(name="no_refer", sources=("127.0.0.3/32",), refer=False) in config.trunks  # the default config's
    assert config.sip.calls_per_worker == 4
    return CallRouter(config, lambda w, c, m: sent.append((w, c, m)), Fetcher(), Metrics(),
                      clock=lambda: 1_800_000_000.0)


def offer(source: str) -> events.CallOffered:
    return events.CallOffered(source=f"{source}:5070", caller="+15551000001", dialed="100", sip_call_id="sip-1")


async def test_a_four_slot_worker_admits_two_bridgeable_calls() -> None:
    sent: list[tuple[str, str, Any]] = []
    router = make_router(sent)
    for call_id in ("c1", "c2", "c3"):
        router.on_event("w000", call_id, offer("127.0.0.3"))
    retry = router.config.sip.retry_after
    assert [m for _, _, m in sent] == [commands.Answer(), commands.Answer(),
                                       commands.Reject(503, "Service Unavailable", retry)]
    router.on_event("w001", "c1", offer("127.0.0.3"))   # another worker has room
    assert sent[-1] == ("w001", "c1", commands.Answer())
    router.on_event("w000", "c1", events.CallEnded("caller_hangup"))
    router.on_event("w000", "c4", offer("127.0.0.3"))   # a freed pair of slots is usable again
    assert sent[-1] == ("w000", "c4", commands.Answer())


async def test_refer_calls_fill_the_slots_a_bridgeable_call_would_need() -> None:
    sent: list[tuple[str, str, Any]] = []
    router = make_router(sent)
    for call_id in ("c1", "c2", "c3"):
        router.on_event("w000", call_id, offer("127.0.0.1"))   # REFER trunk: one slot each
    router.on_event("w000", "c4", offer("127.0.0.3"))
    assert sent[-1][2] == commands.Reject(503, "Service Unavailable", router.config.sip.retry_after)
    router.on_event("w000", "c5", offer("127.0.0.1"))
    assert sent[-1] == ("w000", "c5", commands.Answer())


async def test_a_late_event_for_an_ended_call_is_ignored() -> None:
    """The bridged leg's end can reach the controller after the caller's: it must not break the worker link."""
    sent: list[tuple[str, str, Any]] = []
    router = make_router(sent)
    router.on_event("w000", "c1", offer("127.0.0.3"))
    router.on_event("w000", "c1", events.CallEnded("caller_hangup"))
    router.on_event("w000", "c1", events.BridgeEnded("caller_hangup", 200))
    router.on_event("w000", "c1", events.TransferProgress(200, True))
    assert not router.calls
