"""The admin HTTP endpoint: /healthz, /metrics (Prometheus text), /calls (live calls as JSON).

With a token configured every request must carry `Authorization: Bearer <token>` (compared in constant
time); anything else gets 401 and no data.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ivr.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer_guard(token: str) -> Middleware:
    """aiohttp middleware: 401 unless the request carries `Authorization: Bearer <token>`."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="ivr-admin"'})
        return await handler(request)

    return guard


def make_app(metrics: Metrics, health: Callable[[], dict[str, object]],
             calls: Callable[[], list[dict[str, object]]],
             http_stats: Callable[[], dict[str, dict[str, object]]], *, token: str = "") -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        state = health()
        return web.json_response(state, status=200 if state.get("ok") else 503)

    async def metrics_text(_: web.Request) -> web.Response:
        for endpoint, stats in http_stats().items():
            state = stats.get("breaker")
            for name in ("closed", "open", "half_open"):
                metrics.set("ivr_http_breaker_state", 1.0 if state == name else 0.0, endpoint=endpoint, state=name)
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    async def live_calls(_: web.Request) -> web.Response:
        return web.json_response({"calls": calls()})

    app = web.Application(middlewares=[bearer_guard(token)] if token else [])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/calls", live_calls)
    return app
