"""The built-in demo CRM: an aiohttp server shaped like a real CRM's customer API (for demos and tests only).

API:
  GET  /api/v1/customers?phone=+15551000001   -> 200 {"data": [customer], "meta": {"count": 1}}
  GET  /api/v1/customers?account=100001       -> same; unknown -> {"data": [], "meta": {"count": 0}}
  GET  /api/v1/customers/{id}                 -> 200 {"data": customer} | 404
  GET  /healthz
Bad or missing query -> 400 {"error": {"code", "message"}}. With a token configured (--token or
DEMO_CRM_TOKEN), /api/ requires `Authorization: Bearer <token>`.

Demo-only controls (no auth; never expose this server): POST /_demo/behaviour with
{"latency_ms": 3000, "status": 503, "invalid_json": false, "for_requests": N} makes the next N (or all)
/api/ answers slow and/or failing; {} restores normal service; GET /_demo/behaviour; GET /_demo/stats.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hmac
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ivr.config.model import DemoCrmConfig

log = structlog.get_logger("ivr.democrm")

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_DIGITS = re.compile(r"^[0-9]{1,15}$")


class CustomerDataError(Exception):
    """The customer file cannot be used; the message names the file and every problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Loyalty(_Model):
    tier: str | None = Field(None, pattern=r"^[a-z][a-z0-9_\-]*$")
    since: dt.date | None = None


class Manager(_Model):
    name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    sip: str | None = Field(None, pattern=r"^sips?:[^\s<>]+$")
    """The manager's phone, for account-manager routing (a transfer step's variable target)."""


class Customer(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,32}$")
    account_number: str = Field(pattern=r"^[0-9]{6,8}$")
    name: str = Field(min_length=1)
    first_name: str | None = Field(None, min_length=1)
    """How a greeting addresses the customer (a `say` step: "Welcome back, {{first_name}}")."""
    language: str | None = Field(None, pattern=r"^[a-z]{2}$")
    """The customer's preferred language (ISO 639-1), mapped to the call's `lang`."""
    phones: tuple[str, ...] = Field(min_length=1)
    loyalty: Loyalty = Field(default_factory=Loyalty)
    account_manager: Manager | None = None

    @field_validator("phones")
    @classmethod
    def _e164(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for phone in value:
            if not _E164.match(phone):
                raise ValueError(f"phone {phone!r} is not E.164 (write '+15551000001', quoted in YAML)")
        return value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class CustomerFile(_Model):
    customers: tuple[Customer, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CustomerFile:
        for what, values in (("id", [c.id for c in self.customers]),
                             ("account_number", [c.account_number for c in self.customers]),
                             ("phone", [p for c in self.customers for p in c.phones])):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}: {', '.join(dupes)}")
        return self


def load_customers(path: Path) -> tuple[Customer, ...]:
    """Read and validate the customer file; raise CustomerDataError naming the file and the problems."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CustomerDataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise CustomerDataError(f"{path}: not valid YAML: {exc}") from None
    try:
        return CustomerFile.model_validate(raw).customers
    except ValidationError as exc:
        issues = "; ".join(f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise CustomerDataError(f"{path}: {issues}") from None


def _loc(loc: tuple[int | str, ...]) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    return text or "(top level)"


class Behaviour(_Model):
    latency_ms: float = Field(0.0, ge=0, le=120_000, description="Added to every /api/ answer.")
    status: int | None = Field(None, ge=100, le=599, description="Answer with this status; null = normal.")
    invalid_json: bool = Field(False, description="Answer 200 with an HTML body instead of JSON.")
    for_requests: int | None = Field(None, ge=1, description="Only for the next N /api/ requests.")


class _Demo:
    """The demo server's state: data indexes, configured latency and token, behaviour, counters."""

    def __init__(self, customers: tuple[Customer, ...], latency: float, token: str | None) -> None:
        self.by_phone = {p.lstrip("+"): c.to_json() for c in customers for p in c.phones}
        self.by_account = {c.account_number: c.to_json() for c in customers}
        self.by_id = {c.id: c.to_json() for c in customers}
        self.latency = latency
        self.token = token
        self.behaviour = Behaviour()
        self.remaining: int | None = None
        self.requests = 0
        self.by_status: Counter[int] = Counter()
        self.lookups: Counter[str] = Counter()

    def set_behaviour(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.remaining = behaviour.for_requests

    def take_behaviour(self) -> Behaviour:
        current = self.behaviour
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.set_behaviour(Behaviour())
        return current

    def authorized(self, request: web.Request) -> bool:
        if not self.token:
            return True
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), ("Bearer " + self.token).encode())


DEMO = web.AppKey("demo", _Demo)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts, artificial latency, injected failures and the bearer token for /api/ requests."""
    if not request.path.startswith("/api/"):
        return await _json_errors(request, handler)
    demo = request.app[DEMO]
    demo.requests += 1
    behaviour = demo.take_behaviour()
    delay = demo.latency + behaviour.latency_ms / 1000.0
    if delay > 0:
        await asyncio.sleep(delay)
    response: web.StreamResponse
    if not demo.authorized(request):
        response = _error(401, "unauthorized", "missing or wrong bearer token")
        response.headers["WWW-Authenticate"] = "Bearer"
    elif behaviour.status is not None:
        response = _error(behaviour.status, "injected", "failure injected by /_demo/behaviour")
    elif behaviour.invalid_json:
        response = web.Response(text="<html><body>Gateway error</body></html>", content_type="text/html")
    else:
        response = await _json_errors(request, handler)
    demo.by_status[response.status] += 1
    log.debug("democrm.request", method=request.method, path=request.path, status=response.status)
    return response


async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, "http_" + str(exc.status), exc.reason)


async def _search(request: web.Request) -> web.Response:
    demo = request.app[DEMO]
    phone, account = request.query.get("phone"), request.query.get("account")
    if (phone is None) == (account is None):
        return _error(400, "invalid_query", "give exactly one of ?phone= or ?account=")
    if phone is not None:
        digits = phone.strip().lstrip("+")  # an unescaped '+' arrives as a space
        if not _DIGITS.match(digits):
            return _error(400, "invalid_query", "phone must be digits with an optional leading '+'")
        demo.lookups["phone"] += 1
        found = demo.by_phone.get(digits)
    else:
        assert account is not None
        if not _DIGITS.match(account):
            return _error(400, "invalid_query", "account must be digits")
        demo.lookups["account"] += 1
        found = demo.by_account.get(account)
    data = [found] if found is not None else []
    return web.json_response({"data": data, "meta": {"count": len(data)}})


async def _customer(request: web.Request) -> web.Response:
    demo = request.app[DEMO]
    demo.lookups["id"] += 1
    found = demo.by_id.get(request.match_info["id"])
    if found is None:
        return _error(404, "not_found", "no such customer")
    return web.json_response({"data": found})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "customers": len(request.app[DEMO].by_id)})


async def _get_behaviour(request: web.Request) -> web.Response:
    demo = request.app[DEMO]
    return web.json_response({**demo.behaviour.model_dump(), "remaining": demo.remaining})


async def _set_behaviour(request: web.Request) -> web.Response:
    try:
        behaviour = Behaviour.model_validate(await request.json())
    except json.JSONDecodeError:
        return _error(400, "invalid_json", "the body must be a JSON object")
    except ValidationError as exc:
        issues = "; ".join(f"{_loc(err['loc'])}: {err['msg']}" for err in exc.errors())
        return _error(400, "invalid_behaviour", issues)
    request.app[DEMO].set_behaviour(behaviour)
    log.info("democrm.behaviour.set", **behaviour.model_dump())
    return await _get_behaviour(request)


async def _stats(request: web.Request) -> web.Response:
    demo = request.app[DEMO]
    return web.json_response({"requests": demo.requests, "lookups": dict(demo.lookups),
                              "by_status": {str(k): v for k, v in sorted(demo.by_status.items())}})


def make_app(customers: Path, latency: float = 0.0, *, token: str | None = None) -> web.Application:
    """The demo CRM app; raises CustomerDataError when the customer file is missing or wrong."""
    app = web.Application(middlewares=[_api_middleware])
    app[DEMO] = _Demo(load_customers(customers), latency, token or None)
    app.router.add_get("/api/v1/customers", _search)
    app.router.add_get("/api/v1/customers/{id}", _customer)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/_demo/behaviour", _get_behaviour)
    app.router.add_post("/_demo/behaviour", _set_behaviour)
    app.router.add_get("/_demo/stats", _stats)
    return app


async def start(cfg: DemoCrmConfig, config_dir: Path) -> web.AppRunner:
    """Start the demo CRM on cfg.host:cfg.port (token from DEMO_CRM_TOKEN); the caller cleans the runner up."""
    app = make_app(config_dir / cfg.customers, cfg.latency, token=os.environ.get("DEMO_CRM_TOKEN"))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, cfg.host, cfg.port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("democrm.started", host=cfg.host, port=cfg.port, customers=len(app[DEMO].by_id),
             latency_s=cfg.latency, token=bool(app[DEMO].token))
    return runner


def main(argv: list[str] | None = None) -> int:
    """`python -m ivr.democrm --customers config/customers.yaml --host 127.0.0.1 --port 8081`."""
    from ivr import logs

    parser = argparse.ArgumentParser(prog="python -m ivr.democrm", description="The built-in demo CRM.")
    parser.add_argument("--customers", type=Path, default=Path("config/customers.yaml"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every /api/ answer")
    parser.add_argument("--token", default=os.environ.get("DEMO_CRM_TOKEN"),
                        help="require this bearer token (default: $DEMO_CRM_TOKEN; none: no auth)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        app = make_app(args.customers, args.latency, token=args.token)
    except CustomerDataError as exc:
        log.error("democrm.bad_data", error=str(exc))
        return 2

    async def _started(app: web.Application) -> None:
        log.info("democrm.started", host=args.host, port=args.port, customers=len(app[DEMO].by_id),
                 latency_s=args.latency, token=bool(app[DEMO].token))

    app.on_startup.append(_started)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
