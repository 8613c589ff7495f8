"""The fake CRM for the HTTP client tests: a scripted real aiohttp server, a fake clock, a server starter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ivr.crm import HttpClient

GOLD = {"data": [{"id": "C-1001", "loyalty": {"tier": "gold"}, "account_manager": {"name": "Grace"}}],
        "meta": {"count": 1}}


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: GOLD)
    raw: bytes | None = None
    """Sent as text/html instead of a JSON body."""
    delay: float = 0.0
    drop: bool = False
    """Close the connection without an answer."""


@dataclass
class Seen:
    method: str
    path: str
    raw_query: str
    """The query string exactly as sent."""
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class FakeCrm:
    """A scripted CRM: answers `script` in order, then `default`; records every request in `seen`."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, request.raw_path.partition("?")[2], dict(request.query),
                              dict(request.headers), await request.read()))
        reply = self.script.pop(0) if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if reply.raw is not None:
            return web.Response(body=reply.raw, status=reply.status, content_type="text/html")
        return web.json_response(reply.body, status=reply.status)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, "http://" + host + ":" + str(port)


MakeClient = Callable[..., Awaitable[HttpClient]]
"""The `make_client` fixture: make_client(url, **HttpEndpoint fields) -> an entered HttpClient."""
