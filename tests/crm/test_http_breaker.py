"""The per-endpoint circuit breaker: opens, fails fast without network, half-open probe, timed by a fake clock."""

from __future__ import annotations

import asyncio

from crmkit import FakeClock, FakeCrm, MakeClient, Reply
from structlog.testing import capture_logs

from ivr.config.model import BreakerConfig, CacheConfig
from ivr.crm import HttpClient
from ivr.flow.commands import Fetch
from ivr.flow.events import FetchCompleted, FetchFailed

BREAKER = BreakerConfig(failures=3, cool_down=30.0)


def lookup(phone: str = "+15551000001", budget: float = 2.0) -> Fetch:
    return Fetch(1, "crm", "GET", "/api/v1/customers", (("phone", phone),), budget_s=budget)


def reason(result: FetchCompleted | FetchFailed) -> str:
    assert isinstance(result, FetchFailed), result
    return result.reason


async def open_it(fake_crm: FakeCrm, make_client: MakeClient) -> HttpClient:
    fake_crm.default = Reply(503, {})
    client = await make_client(fake_crm.url, breaker=BREAKER)
    for _ in range(3):
        result = await client.fetch(lookup())
        assert isinstance(result, FetchFailed) and result.reason == "http_503"
    return client


async def test_opens_after_n_failures_and_fails_fast(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    with capture_logs() as logs:
        client = await open_it(fake_crm, make_client)
    assert [e for e in logs if e["event"] == "crm.breaker.opened"][0]["endpoint"] == "crm"
    for _ in range(5):
        result = await client.fetch(lookup())
        assert isinstance(result, FetchFailed) and result.reason == "circuit_open"
        assert result.elapsed_ms < 50
    assert len(fake_crm.seen) == 3  # nothing reached the server while open
    stats = client.stats()["crm"]
    assert stats["breaker"] == "open" and stats["failures"] == {"http_503": 3, "circuit_open": 5}


async def test_half_open_probe_success_closes(fake_crm: FakeCrm, make_client: MakeClient,
                                              clock: FakeClock) -> None:
    client = await open_it(fake_crm, make_client)
    clock.advance(29.0)
    assert reason(await client.fetch(lookup())) == "circuit_open"
    clock.advance(1.0)
    fake_crm.default = Reply()
    with capture_logs() as logs:
        assert isinstance(await client.fetch(lookup()), FetchCompleted)
    assert len(fake_crm.seen) == 4
    assert {"event": "crm.breaker.closed", "endpoint": "crm", "log_level": "info"} in logs
    assert client.stats()["crm"]["breaker"] == "closed"
    assert isinstance(await client.fetch(lookup()), FetchCompleted)


async def test_half_open_probe_failure_reopens(fake_crm: FakeCrm, make_client: MakeClient,
                                               clock: FakeClock) -> None:
    client = await open_it(fake_crm, make_client)
    clock.advance(30.0)
    with capture_logs() as logs:
        assert reason(await client.fetch(lookup())) == "http_503"
        assert reason(await client.fetch(lookup())) == "circuit_open"
    assert any(e["event"] == "crm.breaker.opened" for e in logs)
    assert len(fake_crm.seen) == 4
    clock.advance(30.0)
    fake_crm.default = Reply()
    assert isinstance(await client.fetch(lookup()), FetchCompleted)


async def test_only_one_probe_at_a_time(fake_crm: FakeCrm, make_client: MakeClient, clock: FakeClock) -> None:
    client = await open_it(fake_crm, make_client)
    clock.advance(30.0)
    fake_crm.default = Reply(delay=0.3)
    probe = asyncio.create_task(client.fetch(lookup()))
    await asyncio.sleep(0.1)
    assert reason(await client.fetch(lookup())) == "circuit_open"
    assert isinstance(await probe, FetchCompleted)
    assert len(fake_crm.seen) == 4


async def test_cancelled_probe_frees_the_slot(fake_crm: FakeCrm, make_client: MakeClient,
                                              clock: FakeClock) -> None:
    client = await open_it(fake_crm, make_client)
    clock.advance(30.0)
    fake_crm.default = Reply(delay=0.3)
    probe = asyncio.create_task(client.fetch(lookup()))
    await asyncio.sleep(0.1)
    probe.cancel()
    await asyncio.gather(probe, return_exceptions=True)
    fake_crm.default = Reply()
    assert isinstance(await client.fetch(lookup()), FetchCompleted)


async def test_4xx_and_timeouts(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url, breaker=BREAKER)
    fake_crm.default = Reply(404, {})
    for _ in range(5):
        assert reason(await client.fetch(lookup())) == "http_404"
    assert client.stats()["crm"]["breaker"] == "closed"  # a 404 is a healthy server's answer
    fake_crm.default = Reply(delay=1.0)
    for _ in range(3):
        assert reason(await client.fetch(lookup(budget=0.1))) == "timeout"
    assert client.stats()["crm"]["breaker"] == "open"


async def test_cache_still_served_while_open(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url, breaker=BREAKER, cache=CacheConfig(ttl=60, stale=600))
    assert isinstance(await client.fetch(lookup("+1")), FetchCompleted)
    fake_crm.default = Reply(503, {})
    for phone in ("+2", "+3", "+4"):
        await client.fetch(lookup(phone))
    assert client.stats()["crm"]["breaker"] == "open"
    cached = await client.fetch(lookup("+1"))
    assert isinstance(cached, FetchCompleted) and cached.cached
    assert reason(await client.fetch(lookup("+5"))) == "circuit_open"
