"""The live console on the admin port: one static page and its JSON/SSE/SVG feeds.

- `/console`                    the page (static HTML + JS + CSS from `static/`, nothing from a CDN)
- `/console/events`             Server-Sent Events: live calls (what `/calls` shows) and the status, on change
- `/console/api/recent`         recent calls from the record store (the stored `CallRecord`, masked at build)
- `/console/api/series?hours=1`  calls per bucket by queue and tier over the last 1, 6 or 24 h (from the store)
- `/console/api/flows`          flow names and descriptions
- `/console/graph/{flow}.svg`   the flow diagram, the same SVG `ivr graph` writes

Masking: the page shows only the live snapshot of `/calls` and stored records: no other path to call data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web

from ivr.config.model import IvrConfig
from ivr.console.series import WINDOWS_H, per_bucket
from ivr.errors import IvrError
from ivr.graph import flow_dot, render_svg
from ivr.records.schema import CallFilter
from ivr.records.store import RecordStore

log = structlog.get_logger()

STATIC = Path(__file__).parent / "static"
TICK_S = 0.5
"""How often the SSE feed looks for a change (a call moving a step is seen within this)."""
KEEPALIVE_S = 5.0
"""A comment line this often on an idle stream: proxies keep it open, and a closed tab frees its slot."""
MAX_STREAMS = 16
"""Open SSE streams at most: a page left open in many tabs (or a hostile client) cannot pile up tasks."""
RECENT_LIMIT = 50
SERIES_MAX_RECORDS = 50000
"""Records read for one chart request at most (the newest; a busier window is cut at its oldest end)."""


@dataclass(slots=True)
class ConsoleSources:
    """What the console reads: all of it already computed by the controller for /calls and /healthz."""

    config: Callable[[], IvrConfig]
    live: Callable[[], list[dict[str, object]]]
    status: Callable[[], dict[str, object]]
    store: RecordStore | None
    clock: Callable[[], float] = time.time
    streams: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    svgs: dict[str, str] = field(default_factory=dict)


def add_routes(app: web.Application, src: ConsoleSources) -> None:
    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers=_NO_STORE)

    async def on_shutdown(_: web.Application) -> None:
        src.stopping.set()

    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/console", page)
    app.router.add_get("/console/", _to_console)
    app.router.add_static("/console/static", STATIC, append_version=False)
    for path, view in (("/console/events", events), ("/console/api/recent", recent), ("/console/api/series", series),
                       ("/console/api/flows", flows), ("/console/graph/{flow}.svg", graph)):
        app.router.add_get(path, _bound(view, src))


def _bound(view: Callable[[web.Request, ConsoleSources], Awaitable[web.StreamResponse]],
           src: ConsoleSources) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await view(request, src)

    return handler


_NO_STORE = {"Cache-Control": "no-store"}


async def _to_console(_: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/console")


def _live_payload(src: ConsoleSources) -> str:
    return json.dumps({"calls": src.live(), "status": src.status()}, separators=(",", ":"), default=str)


async def events(request: web.Request, src: ConsoleSources) -> web.StreamResponse:
    if src.streams >= MAX_STREAMS:
        raise web.HTTPServiceUnavailable(text="too many console streams\n", headers={"Retry-After": "5"})
    src.streams += 1
    try:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **_NO_STORE,
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await _stream(response, src)
        return response
    finally:
        src.streams -= 1


async def _stream(response: web.StreamResponse, src: ConsoleSources) -> None:
    last, sent_at = "", 0.0
    loop = asyncio.get_running_loop()
    while not src.stopping.is_set():
        payload = _live_payload(src)
        try:
            if payload != last:
                await response.write(f"event: live\ndata: {payload}\n\n".encode())
                last, sent_at = payload, loop.time()
            elif loop.time() - sent_at > KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                sent_at = loop.time()
        except (ConnectionResetError, RuntimeError):  # the browser went away
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(src.stopping.wait(), TICK_S)


async def _query(src: ConsoleSources, where: CallFilter) -> list[dict[str, object]]:
    if src.store is None:
        raise web.HTTPNotFound(text="records.store is none: no records are kept\n")
    try:
        return await src.store.query(where)
    except Exception as exc:  # the database is down: the page says so and retries; records wait in the spool
        log.warning("console.store_unavailable", store=src.store.name, error=str(exc))
        raise web.HTTPServiceUnavailable(text=f"record store unavailable: {type(exc).__name__}\n") from None


async def recent(request: web.Request, src: ConsoleSources) -> web.Response:
    text = request.query.get("limit", "")
    limit = min(max(int(text), 1), 500) if text.isdigit() else RECENT_LIMIT
    rows = await _query(src, CallFilter(limit=limit))
    return web.json_response({"calls": rows}, headers=_NO_STORE)


async def series(request: web.Request, src: ConsoleSources) -> web.Response:
    text = request.query.get("hours", "1")
    hours = int(text) if text.isdigit() and int(text) in WINDOWS_H else 1
    now = src.clock()
    rows = await _query(src, CallFilter(since=now - hours * 3600, limit=SERIES_MAX_RECORDS))
    data = per_bucket(src.config(), rows, now=now, hours=hours)
    return web.json_response(data, headers=_NO_STORE)


async def flows(_: web.Request, src: ConsoleSources) -> web.Response:
    config = src.config()
    return web.json_response({"flows": [{"name": name, "description": flow.description,
                                         "steps": [step.id for step in flow.steps]}
                                        for name, flow in config.flows.items()]}, headers=_NO_STORE)


async def graph(request: web.Request, src: ConsoleSources) -> web.Response:
    name = request.match_info["flow"]
    config = src.config()
    if name not in config.flows:
        raise web.HTTPNotFound(text=f"no flow {name!r}\n")
    dot = flow_dot(name, config.flows[name])
    svg = src.svgs.get(dot)
    if svg is None:
        try:
            svg = await asyncio.to_thread(render_svg, dot)
        except IvrError as exc:
            raise web.HTTPServiceUnavailable(text=f"{exc}\n") from None
        if len(src.svgs) > 4 * len(config.flows):
            src.svgs.clear()
        src.svgs[dot] = svg  # keyed by the DOT text: a reloaded flow is drawn again, bounded by the config
    return web.Response(text=svg, content_type="image/svg+xml", headers=_NO_STORE)
