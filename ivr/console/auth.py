"""Who may read the admin port: anyone on loopback by default; with a token, only who presents it.

Scripts send `Authorization: Bearer TOKEN`. A browser cannot send a header on a plain navigation, so the console
is opened once as `/console?token=TOKEN`: the server answers 303 to `/console` (the token leaves the address bar
and the history) and sets the cookie `ivr_admin`, HttpOnly (page scripts cannot read it) and SameSite=Strict
(another site cannot make the browser send it). The cookie holds an HMAC of the token, not the token, so a
leaked cookie does not reveal the token used by scripts, and changing the token ends every browser session.
The admin port speaks plain HTTP, so the cookie is not `Secure`: bind it elsewhere than loopback behind TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ivr.config.model import AdminConfig, is_loopback_host
from ivr.errors import IvrError

COOKIE = "ivr_admin"
COOKIE_MAX_AGE_S = 12 * 3600
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def admin_token(config: AdminConfig, environ: dict[str, str] | None = None) -> str | None:
    """The token the admin port requires (None: open, loopback only). Raises at start when the port is bound
    elsewhere than loopback without one: an open console on a public address is a start-up error."""
    env = os.environ if environ is None else environ
    token = env.get(config.token_env, "") if config.token_env else ""
    if config.token_env and not token:
        raise IvrError(f"admin.token_env names {config.token_env}, which is not set or empty")
    if not token and not is_loopback_host(config.host):  # the config model refuses it already
        raise IvrError(f"admin.host {config.host} is not loopback: set admin.token_env to require a bearer token")
    return token or None


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"ivr-admin-session", hashlib.sha256).hexdigest()


def auth_middleware(token: str) -> Middleware:
    session = session_value(token)

    def presented(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), session.encode())

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        offered = request.query.get("token")
        if offered is not None and request.path == "/console" and request.method == "GET":
            if not hmac.compare_digest(offered.encode(), token.encode()):
                raise _denied()
            found = web.HTTPSeeOther("/console")
            found.set_cookie(COOKIE, session, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="Strict", path="/")
            raise found
        if not presented(request):
            raise _denied()
        return await handler(request)

    return check


def _denied() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Bearer realm="ivr-admin"'},
                                text="401: a bearer token (or /console?token=...) is required\n")
