"""Fixtures for the HTTP client and demo CRM tests; the fake CRM itself lives in crmkit.py."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from crmkit import FakeClock, FakeCrm, MakeClient, serve

from ivr.config.model import CacheConfig, HttpEndpoint
from ivr.crm import HttpClient


@pytest.fixture
async def fake_crm() -> AsyncIterator[FakeCrm]:
    crm = FakeCrm()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", crm.handle)
    runner, crm.url = await serve(app)
    yield crm
    await runner.cleanup()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return "http://127.0.0.1:" + str(port)


@pytest.fixture
async def make_client(clock: FakeClock) -> AsyncIterator[MakeClient]:
    """make_client(url, **HttpEndpoint fields) -> an entered client with one endpoint "crm".

    Defaults differ from production to keep tests focused: no retries, no cache, a 5 s timeout.
    """
    clients: list[HttpClient] = []

    async def make(url: str, **fields: Any) -> HttpClient:
        fields.setdefault("retries", 0)
        fields.setdefault("timeout", 5.0)
        fields.setdefault("cache", CacheConfig(max_entries=0))
        client = HttpClient({"crm": HttpEndpoint(base_url=url, **fields)}, clock=clock)
        clients.append(await client.__aenter__())
        return client

    yield make
    for client in clients:
        await client.__aexit__(None, None, None)
