"""The GET response cache: fresh hits, stale-while-revalidate, what is cached, the LRU bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from crmkit import GOLD, FakeClock, FakeCrm, MakeClient, Reply

from ivr.config.model import CacheConfig
from ivr.flow.commands import Fetch
from ivr.flow.events import FetchCompleted, FetchFailed

CACHE = CacheConfig(ttl=10.0, stale=20.0, max_entries=100)
PLATINUM = {"data": [{"id": "C-1001", "loyalty": {"tier": "platinum"}}], "meta": {"count": 1}}


def lookup(phone: str = "+15551000001", *, method: str = "GET",
           headers: tuple[tuple[str, str], ...] = ()) -> Fetch:
    return Fetch(1, "crm", method, "/api/v1/customers", (("phone", phone),), headers, None, 2.0)


def completed(result: FetchCompleted | FetchFailed) -> FetchCompleted:
    assert isinstance(result, FetchCompleted), result
    return result


async def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_fresh_hit_makes_no_request(fake_crm: FakeCrm, make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client(fake_crm.url, cache=CACHE)
    first = completed(await client.fetch(lookup()))
    clock.advance(9.9)
    second = completed(await client.fetch(lookup()))
    assert not first.cached and second.cached and second.body == GOLD and second.status == 200
    assert len(fake_crm.seen) == 1
    stats = client.stats()["crm"]
    assert (stats["cache_misses"], stats["cache_hits"], stats["cache_entries"]) == (1, 1, 1)


async def test_key_covers_query_and_step_headers(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url, cache=CACHE)
    await client.fetch(lookup("+1"))
    await client.fetch(lookup("+2"))
    await client.fetch(lookup("+1", headers=(("X-Tenant", "a"),)))
    await client.fetch(lookup("+1", headers=(("x-tenant", "a"),)))  # header names are case-insensitive
    assert len(fake_crm.seen) == 3


async def test_stale_hit_served_at_once_then_refreshed(fake_crm: FakeCrm, make_client: MakeClient,
                                                       clock: FakeClock) -> None:
    client = await make_client(fake_crm.url, cache=CACHE)
    completed(await client.fetch(lookup()))
    clock.advance(15.0)
    fake_crm.default = Reply(body=PLATINUM, delay=0.5)
    results = [completed(await client.fetch(lookup())) for _ in range(3)]
    assert all(r.cached and r.body == GOLD and r.elapsed_ms < 300 for r in results)
    await wait_for(lambda: client.stats()["crm"]["refreshing"] == 0)
    assert len(fake_crm.seen) == 2  # one background refresh for three stale hits
    fresh = completed(await client.fetch(lookup()))
    assert fresh.cached and fresh.body == PLATINUM
    stats = client.stats()["crm"]
    assert (stats["cache_stale"], stats["refreshes"], stats["cache_hits"]) == (3, 1, 1)


async def test_failed_refresh_keeps_the_stale_entry(fake_crm: FakeCrm, make_client: MakeClient,
                                                    clock: FakeClock) -> None:
    client = await make_client(fake_crm.url, cache=CACHE)
    completed(await client.fetch(lookup()))
    clock.advance(15.0)
    fake_crm.default = Reply(503, {})
    assert completed(await client.fetch(lookup())).body == GOLD
    await wait_for(lambda: client.stats()["crm"]["refresh_failures"] == 1)
    assert completed(await client.fetch(lookup())).body == GOLD


async def test_expired_entry_is_a_miss(fake_crm: FakeCrm, make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client(fake_crm.url, cache=CACHE)
    completed(await client.fetch(lookup()))
    clock.advance(30.0)
    assert not completed(await client.fetch(lookup())).cached
    assert len(fake_crm.seen) == 2


async def test_empty_result_is_cached(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    fake_crm.default = Reply(body={"data": [], "meta": {"count": 0}})
    client = await make_client(fake_crm.url, cache=CACHE)
    completed(await client.fetch(lookup("+19999")))
    assert completed(await client.fetch(lookup("+19999"))).cached
    assert len(fake_crm.seen) == 1


async def test_failures_and_non_get_not_cached(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url, cache=CACHE)
    for reply in (Reply(404, {}), Reply(503, {}), Reply(raw=b"<html>")):
        fake_crm.script = [reply]
        assert isinstance(await client.fetch(lookup()), FetchFailed)
    assert not completed(await client.fetch(lookup())).cached
    for _ in range(2):
        assert not completed(await client.fetch(lookup(method="POST"))).cached
    assert len(fake_crm.seen) == 6


async def test_lru_bound(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url, cache=CacheConfig(ttl=60, stale=0, max_entries=2))
    for phone in ("+1", "+2", "+3"):  # +1 is evicted
        await client.fetch(lookup(phone))
    assert completed(await client.fetch(lookup("+2"))).cached  # +2 becomes most recently used
    assert not completed(await client.fetch(lookup("+1"))).cached  # a miss; evicts +3
    assert completed(await client.fetch(lookup("+2"))).cached
    assert not completed(await client.fetch(lookup("+3"))).cached
    assert client.stats()["crm"]["cache_entries"] == 2
    assert len(fake_crm.seen) == 5


async def test_max_entries_zero_disables(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url, cache=CacheConfig(max_entries=0))
    for _ in range(2):
        assert not completed(await client.fetch(lookup())).cached
    assert len(fake_crm.seen) == 2


async def test_exit_cancels_background_refresh(fake_crm: FakeCrm, make_client: MakeClient,
                                               clock: FakeClock) -> None:
    client = await make_client(fake_crm.url, cache=CACHE)
    completed(await client.fetch(lookup()))
    clock.advance(15.0)
    fake_crm.default = Reply(delay=3.0)
    completed(await client.fetch(lookup()))
    await wait_for(lambda: len(fake_crm.seen) == 2)
    started = time.monotonic()
    await client.__aexit__(None, None, None)
    assert time.monotonic() - started < 1.0
    assert client.stats()["crm"]["refreshing"] == 0
