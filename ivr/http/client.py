"""HttpClient: what the controller calls for fetch steps. Never raises for expected failures (house rule 7).

A fetch is answered from the cache when it can (fresh, or stale while one background request refreshes
it), fails fast while the endpoint's circuit is open, and otherwise goes to the network with one
deadline (the step's budget, at most the endpoint's timeout) covering connect, retries and body.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
import structlog

from ivr.config.model import HttpEndpoint
from ivr.flow.commands import Fetch
from ivr.flow.events import FetchCompleted, FetchFailed
from ivr.http.breaker import CircuitBreaker
from ivr.http.cache import CacheKey, Freshness, ResponseCache
from ivr.http.request import Outcome, build_request, counts_against_breaker, send

log = structlog.get_logger("ivr.http")


@dataclass(slots=True)
class _Counts:
    fetches: int = 0
    completed: int = 0
    requests: int = 0
    retries: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    cache_stale: int = 0
    cache_misses: int = 0
    refreshes: int = 0
    refresh_failures: int = 0


class _Endpoint:
    """Everything kept per configured endpoint."""

    def __init__(self, name: str, config: HttpEndpoint, clock: Callable[[], float]) -> None:
        self.name = name
        self.config = config
        self.cache = ResponseCache(config.cache, clock)
        self.breaker = CircuitBreaker(name, config.breaker, clock)
        self.counts = _Counts()
        self.sem = asyncio.Semaphore(config.max_connections)
        self.refreshing: dict[CacheKey, asyncio.Task[None]] = {}

    def key(self, cmd: Fetch) -> CacheKey | None:
        if cmd.method.upper() != "GET" or not self.cache.enabled:
            return None
        headers = tuple(sorted((name.lower(), value) for name, value in cmd.headers))
        return (self.name, "GET", cmd.path, tuple(sorted(cmd.query)), headers)


class HttpClient:
    """One shared aiohttp session for all configured endpoints; use as `async with HttpClient(...)`."""

    def __init__(self, endpoints: Mapping[str, HttpEndpoint], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._endpoints = {name: _Endpoint(name, ep, clock) for name, ep in endpoints.items()}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        limit = sum(ep.config.max_connections for ep in self._endpoints.values()) or 100
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None),
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        tasks = [task for ep in self._endpoints.values() for task in ep.refreshing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, cmd: Fetch) -> FetchCompleted | FetchFailed:
        """Answer a fetch step inside its budget: from the cache, the network, or with a failure reason."""
        started = asyncio.get_running_loop().time()
        ep = self._endpoints.get(cmd.endpoint)
        if ep is None:
            log.warning("crm.fetch.failed", endpoint=cmd.endpoint, reason="unknown_endpoint")
            return FetchFailed(cmd.request_id, "unknown_endpoint", 0.0)
        ep.counts.fetches += 1
        key = ep.key(cmd)
        if key is not None:
            hit = self._from_cache(ep, key, cmd, started)
            if hit is not None:
                return hit
            ep.counts.cache_misses += 1
        if not ep.breaker.allow():
            return self._failed(ep, cmd, "circuit_open", started, attempts=0)
        outcome, attempts = await self._exchange(ep, cmd, min(cmd.budget_s, ep.config.timeout), key)
        if outcome.reason is not None:
            return self._failed(ep, cmd, outcome.reason, started, attempts)
        ep.counts.completed += 1
        return FetchCompleted(cmd.request_id, outcome.status, outcome.body, _ms_since(started))

    def stats(self) -> dict[str, dict[str, object]]:
        """Per endpoint: breaker state and counters, for /metrics and logs (no URLs, no headers)."""
        return {name: _stats(ep) for name, ep in self._endpoints.items()}

    def _from_cache(self, ep: _Endpoint, key: CacheKey, cmd: Fetch, started: float) -> FetchCompleted | None:
        found = ep.cache.get(key)
        if found is None:
            return None
        entry, freshness = found
        if freshness is Freshness.FRESH:
            ep.counts.cache_hits += 1
        else:
            ep.counts.cache_stale += 1
            self._start_refresh(ep, key, cmd)
        ep.counts.completed += 1
        return FetchCompleted(cmd.request_id, entry.status, entry.body, _ms_since(started), cached=True)

    def _failed(self, ep: _Endpoint, cmd: Fetch, reason: str, started: float, attempts: int) -> FetchFailed:
        ep.counts.failures[reason] += 1
        elapsed = _ms_since(started)
        log.info("crm.fetch.failed", endpoint=ep.name, method=cmd.method, path=cmd.shown_path,
                 reason=reason, elapsed_ms=elapsed, attempts=attempts, budget_s=cmd.budget_s)
        return FetchFailed(cmd.request_id, reason, elapsed)

    async def _exchange(self, ep: _Endpoint, cmd: Fetch, budget: float,
                        key: CacheKey | None) -> tuple[Outcome, int]:
        """Network request(s) the breaker has let through; record the outcome in breaker, counts and cache."""
        if self._session is None:
            raise RuntimeError("HttpClient used outside `async with`")
        req = build_request(ep.config.base_url, ep.config.headers, cmd.method, cmd.path, cmd.query,
                            cmd.headers, cmd.body)
        deadline = asyncio.get_running_loop().time() + max(budget, 0.0)
        try:
            outcome, attempts = await send(self._session, ep.sem, req, deadline=deadline,
                                           retries=ep.config.retries)
        except asyncio.CancelledError:
            ep.breaker.abandon_probe()
            raise
        ep.counts.requests += attempts
        ep.counts.retries += max(attempts - 1, 0)
        if outcome.reason is None:
            ep.breaker.record_success()
            if key is not None and outcome.cacheable:
                ep.cache.put(key, outcome.status, outcome.body)
        elif counts_against_breaker(outcome.reason):
            ep.breaker.record_failure(outcome.reason)
        else:
            ep.breaker.record_success()  # the server is up and answering
        return outcome, attempts

    def _start_refresh(self, ep: _Endpoint, key: CacheKey, cmd: Fetch) -> None:
        if key in ep.refreshing or not ep.breaker.allow():
            return
        task = asyncio.create_task(self._refresh(ep, key, cmd))
        ep.refreshing[key] = task
        task.add_done_callback(lambda _: ep.refreshing.pop(key, None))

    async def _refresh(self, ep: _Endpoint, key: CacheKey, cmd: Fetch) -> None:
        ep.counts.refreshes += 1
        try:
            outcome, attempts = await self._exchange(ep, cmd, ep.config.timeout, key)
        except Exception:  # a bug; in a background task nobody awaits, so log it rather than lose it
            log.exception("crm.refresh.crashed", endpoint=ep.name)
            return
        if outcome.reason is not None:
            ep.counts.refresh_failures += 1
            log.warning("crm.refresh.failed", endpoint=ep.name, path=cmd.shown_path,
                        reason=outcome.reason, attempts=attempts)


def _ms_since(started: float) -> float:
    return round((asyncio.get_running_loop().time() - started) * 1000.0, 1)


def _stats(ep: _Endpoint) -> dict[str, object]:
    c = ep.counts
    return {
        "breaker": ep.breaker.state.value, "consecutive_failures": ep.breaker.consecutive_failures,
        "fetches": c.fetches, "completed": c.completed, "requests": c.requests, "retries": c.retries,
        "failures": dict(c.failures), "cache_hits": c.cache_hits, "cache_stale": c.cache_stale,
        "cache_misses": c.cache_misses, "cache_entries": len(ep.cache), "refreshes": c.refreshes,
        "refresh_failures": c.refresh_failures, "refreshing": len(ep.refreshing),
    }
