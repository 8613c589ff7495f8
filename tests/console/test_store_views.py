"""The console's recent list and charts read the real record store, SQLite or PostgreSQL; a store that dies
mid-run is a 503 the page shows, and the console recovers when it returns. The live stream is bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pgkit import PgServer, free_tcp_port
from recordkit import sample

from ivr.admin import make_app
from ivr.config.load import load_config
from ivr.console.views import MAX_STREAMS, ConsoleSources
from ivr.metrics import Metrics
from ivr.records.pg import PgStore
from ivr.records.sqlite import SqliteStore
from ivr.records.store import RecordStore

CONFIG = load_config(Path(__file__).resolve().parents[2] / "config" / "ivr.yaml", check_files=False).config


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = PgServer(free_tcp_port()).start()
    yield server
    server.cleanup()


def _client(store: RecordStore | None) -> TestClient[Any, Any]:
    sources = ConsoleSources(config=lambda: CONFIG, live=lambda: [], status=lambda: {"health": {"ok": True}},
                             store=store)
    return TestClient(TestServer(make_app(Metrics(), lambda: {"ok": True}, lambda: [], lambda: {},
                                          console=sources)))


async def _filled(store: RecordStore) -> AsyncIterator[RecordStore]:
    await store.open()
    now = time.time()
    await store.deliver([sample("c1", started_at=now - 30, tier="gold", queue="gold"),
                         sample("c2", started_at=now - 20, tier="platinum", queue="platinum"),
                         sample("c3", started_at=now - 10, tier="gold", queue="gold", caller="+15551000003"),
                         sample("old", started_at=now - 7200, tier="gold", queue="gold")])
    yield store
    await store.close()


async def _check(client: TestClient[Any, Any]) -> None:
    recent = await client.get("/console/api/recent", params={"limit": "3"})
    assert recent.status == 200
    calls = (await recent.json())["calls"]
    assert [c["uid"] for c in calls] == ["c3", "c2", "c1"]  # newest first, the limit applied
    assert calls[0]["caller"] == "+15551000003" and calls[0]["variables"]["pin"] == "***"  # as stored: masked
    series = await (await client.get("/console/api/series")).json()
    assert sum(series["queue"]["gold"]) == 2 and sum(series["queue"]["platinum"]) == 1  # the old one is out
    assert sum(series["tier"]["gold"]) == 2
    day = await (await client.get("/console/api/series", params={"hours": "24"})).json()
    assert day["bucket_s"] == 1440 and sum(day["queue"]["gold"]) == 3  # the one 2 h old is in the day
    bogus = await (await client.get("/console/api/series", params={"hours": "100000"})).json()
    assert bogus["hours"] == 1


async def test_recent_and_series_from_sqlite(tmp_path: Path) -> None:
    async for store in _filled(SqliteStore(tmp_path / "records.sqlite3")):
        async with _client(store) as client:
            await _check(client)


async def test_recent_and_series_from_postgresql_which_dies_and_returns(pg: PgServer) -> None:
    async for store in _filled(PgStore(pg.dsn)):
        async with _client(store) as client:
            await _check(client)
            pg.kill()
            down = await client.get("/console/api/recent")
            assert down.status == 503 and "record store unavailable" in await down.text()
            assert (await client.get("/console/api/series")).status == 503
            assert (await client.get("/console")).status == 200  # the page and the live feed do not need it
            pg.start()
            await _check(client)


async def test_live_streams_are_bounded_and_a_closed_one_frees_its_slot() -> None:
    async with _client(None) as client:
        streams = [await client.get("/console/events") for _ in range(MAX_STREAMS)]
        for stream in streams:
            assert stream.status == 200
            assert (await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)).startswith(b"event: live")
        refused = await client.get("/console/events")
        assert refused.status == 503 and refused.headers["Retry-After"] == "5"
        streams.pop().close()
        for _ in range(100):  # the server sees the close at its next write (a keepalive at most 5 s later)
            again = await client.get("/console/events")
            if again.status == 200:
                break
            await asyncio.sleep(0.2)
        assert again.status == 200
        for stream in (*streams, again):
            stream.close()
