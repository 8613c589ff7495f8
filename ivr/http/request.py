"""One HTTP exchange inside a deadline: URL and headers, single attempts, jittered retries, outcome reasons."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from yarl import URL

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MAX_BODY_BYTES = 1 << 20
"""A larger response is refused ("too_large"): a CRM answer for one caller is a few kB."""
MIN_ATTEMPT_S = 0.05
"""A retry is only started when at least this much budget is left after its back-off."""


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: URL
    headers: CIMultiDict[str]
    data: bytes | None
    log_path: str
    """The path without the query (callers' numbers stay out of these logs)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int = 0
    body: Any = None
    reason: str | None = None
    """None on success, else the FetchFailed reason."""
    retryable: bool = False
    cacheable: bool = False
    """A 2xx response with a JSON body."""


def build_request(base_url: str, endpoint_headers: Mapping[str, str], method: str, path: str,
                  query: tuple[tuple[str, str], ...], step_headers: tuple[tuple[str, str], ...],
                  body: Any) -> Request:
    """The request for a fetch: `path` is already escaped; query values are escaped here ('+' -> %2B)."""
    path = path if path.startswith("/") else "/" + path
    text = base_url.rstrip("/") + path
    if query:
        text += ("&" if "?" in path else "?") + "&".join(
            quote(name, safe="") + "=" + quote(value, safe="") for name, value in query)
    headers: CIMultiDict[str] = CIMultiDict({"Accept": "application/json"})
    headers.update(step_headers)
    headers.update(endpoint_headers)  # the endpoint's own headers (credentials) win over a step's
    data = None
    if body is not None:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
    return Request(method.upper(), URL(text, encoded=True), headers, data, path.split("?", 1)[0])


def counts_against_breaker(reason: str) -> bool:
    """Failures that say the endpoint is unwell. A 4xx (but 408/429) is a healthy server's answer."""
    if reason.startswith("http_"):
        status = int(reason[5:])
        return status >= 500 or status in (408, 429)
    return True


async def attempt(session: aiohttp.ClientSession, req: Request) -> Outcome:
    """One try, no retry, no deadline (the caller holds it)."""
    try:
        async with session.request(req.method, req.url, headers=req.headers, data=req.data,
                                   allow_redirects=False) as resp:
            if not 200 <= resp.status < 300:
                return Outcome(resp.status, reason="http_" + str(resp.status), retryable=resp.status >= 500)
            raw = await _read_limited(resp)
            status = resp.status
    except aiohttp.ClientConnectorError:
        return Outcome(reason="connect_error", retryable=True)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError):
        return Outcome(reason="disconnected", retryable=True)
    except aiohttp.ClientError:
        return Outcome(reason="request_error")
    if raw is None:
        return Outcome(status, reason="too_large")
    if not raw.strip():
        return Outcome(status, None)
    try:
        return Outcome(status, json.loads(raw), cacheable=True)
    except ValueError:
        return Outcome(status, reason="invalid_json")


async def _read_limited(resp: aiohttp.ClientResponse) -> bytes | None:
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def backoff(retry: int) -> float:
    """Jittered exponential back-off before retry number `retry` (0-based): 25-50 ms, 50-100 ms, ..."""
    return min(0.05 * 2.0**retry, 0.4) * random.uniform(0.5, 1.0)


async def send(session: aiohttp.ClientSession, sem: asyncio.Semaphore, req: Request, *, deadline: float,
               retries: int) -> tuple[Outcome, int]:
    """Attempts until success, a final failure, the retries or the budget run out; (outcome, attempts)."""
    loop = asyncio.get_running_loop()
    retries = retries if req.method in IDEMPOTENT else 0
    attempts = 0
    try:
        async with asyncio.timeout_at(deadline):
            while True:
                async with sem:
                    attempts += 1
                    outcome = await attempt(session, req)
                if not outcome.retryable or attempts > retries:
                    return outcome, attempts
                delay = backoff(attempts - 1)
                if deadline - loop.time() < delay + MIN_ATTEMPT_S:
                    return outcome, attempts
                await asyncio.sleep(delay)
    except TimeoutError:
        return Outcome(reason="timeout"), attempts
