"""The admin HTTP endpoint: /healthz, /metrics (Prometheus text), /calls (live calls as JSON), /console.

Open on loopback by default; with a token (`admin.token_env`, required off loopback) every path needs it
(`console/auth.py`: a bearer header, or the console's cookie).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ivr.console.auth import auth_middleware
from ivr.console.views import ConsoleSources, add_routes
from ivr.metrics import Metrics


def make_app(metrics: Metrics, health: Callable[[], dict[str, object]],
             calls: Callable[[], list[dict[str, object]]] | None = None,
             http_stats: Callable[[], dict[str, dict[str, object]]] | None = None, *,
             console: ConsoleSources | None = None, token: str | None = None) -> web.Application:
    """The controller's admin app; the tier's (`ivr tier run`, ivr/front/tier_health.py) has no calls, no HTTP
    client and no console: /healthz and /metrics only."""
    async def healthz(_: web.Request) -> web.Response:
        state = health()
        return web.json_response(state, status=200 if state.get("ok") else 503)

    async def metrics_text(_: web.Request) -> web.Response:
        for endpoint, stats in (http_stats() if http_stats else {}).items():
            state = stats.get("breaker")
            for name in ("closed", "open", "half_open"):
                metrics.set("ivr_http_breaker_state", 1.0 if state == name else 0.0, endpoint=endpoint, state=name)
        live = health().get("live_calls")
        if isinstance(live, int):  # the calls the controller holds now (bench/soak.py watches it stay flat)
            metrics.set("ivr_live_calls", float(live))
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")

    async def live_calls(_: web.Request) -> web.Response:
        return web.json_response({"calls": calls() if calls else []})

    app = web.Application(middlewares=[auth_middleware(token)] if token else [])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_text)
    if calls is not None:
        app.router.add_get("/calls", live_calls)
    if console is not None:
        add_routes(app, console)
    return app
