"""The world the path walker simulates calls in: the CRM answers (real demo CRM, or fixtures) and its faults."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from ivr import democrm
from ivr.config.load import LoadedConfig
from ivr.config.model import HttpEndpoint
from ivr.crm import HttpClient
from ivr.flow.commands import Fetch
from ivr.flow.events import FetchFailed
from ivr.scenarios.model import CrmClass
from ivr.sim_fixtures import Fetcher, FetchResult, Fixtures, fixture_fetcher

DOWN_STATUS = 503


@dataclass(frozen=True)
class World:
    """How fetches are answered: HTTP endpoints (the demo CRM moved to a private port), or fixtures."""

    endpoints: dict[str, HttpEndpoint]
    fixtures: Fixtures | None

    @asynccontextmanager
    async def fetcher(self, crm: CrmClass) -> AsyncIterator[Fetcher]:
        """A fresh fetcher (own cache and breaker) for one simulated call, with the CRM fault `crm`."""
        if crm != "ok":
            yield _faulty(crm)
            return
        if self.fixtures is not None:
            yield fixture_fetcher(self.fixtures.http)
            return
        async with HttpClient(self.endpoints) as client:
            yield client.fetch


def _faulty(crm: CrmClass) -> Fetcher:
    """slow: no answer inside the fetch's budget (a timeout); down: the CRM answers 503."""

    async def fetch(cmd: Fetch) -> FetchResult:
        if crm == "slow":
            return FetchFailed(cmd.request_id, "timeout", cmd.budget_s * 1000)
        return FetchFailed(cmd.request_id, f"http_{DOWN_STATUS}", 5.0)

    return fetch


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def world(loaded: LoadedConfig, fixtures: Fixtures | None) -> AsyncIterator[World]:
    """The demo CRM (when enabled) runs in-process on a free port; endpoints that point at it follow it."""
    config = loaded.config
    endpoints = dict(config.http)
    if fixtures is not None or not config.demo_crm.enabled:
        yield World(endpoints, fixtures)
        return
    demo = config.demo_crm
    app = democrm.make_app(loaded.root / demo.customers)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        port = _free_port("127.0.0.1")
        await web.TCPSite(runner, "127.0.0.1", port).start()
        for name, endpoint in endpoints.items():
            url = urlsplit(endpoint.base_url)
            if url.hostname == demo.host and (url.port or 80) == demo.port:
                moved = url._replace(netloc=f"127.0.0.1:{port}").geturl()
                endpoints[name] = endpoint.model_copy(update={"base_url": moved})
        yield World(endpoints, None)
    finally:
        await runner.cleanup()
