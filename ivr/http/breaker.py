"""A per-endpoint circuit breaker: closed, open (fail fast), half-open (one probe), timed by an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import structlog

from ivr.config.model import BreakerConfig

log = structlog.get_logger("ivr.http")


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """`failures` consecutive failures open the circuit; after `cool_down` one probe decides."""

    def __init__(self, endpoint: str, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self.endpoint = endpoint
        self._config = config
        self._clock = clock
        self.state = State.CLOSED
        self.consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_out = False

    def allow(self) -> bool:
        """May a request go out now? True for at most one probe while half-open."""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN and self._clock() - self._opened_at >= self._config.cool_down:
            self.state = State.HALF_OPEN
            self._probe_out = False
            log.info("crm.breaker.half_open", endpoint=self.endpoint)
        if self.state is State.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._probe_out = False
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            log.info("crm.breaker.closed", endpoint=self.endpoint)

    def record_failure(self, reason: str) -> None:
        self.consecutive_failures += 1
        self._probe_out = False
        reopen = self.state is State.HALF_OPEN
        if reopen or (self.state is State.CLOSED and self.consecutive_failures >= self._config.failures):
            self.state = State.OPEN
            self._opened_at = self._clock()
            log.warning("crm.breaker.opened", endpoint=self.endpoint, reason=reason,
                        failures=self.consecutive_failures, cool_down_s=self._config.cool_down, reprobe=reopen)

    def abandon_probe(self) -> None:
        """A request let through was cancelled before it had an outcome: the next request may probe."""
        if self.state is State.HALF_OPEN and self._probe_out:
            self._probe_out = False
