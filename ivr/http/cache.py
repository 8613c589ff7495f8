"""An LRU response cache with stale-while-revalidate ages, timed by an injected clock."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ivr.config.model import CacheConfig

CacheKey = tuple[str, str, str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]
"""(endpoint, method, path, sorted query, sorted step headers)."""


class Freshness(Enum):
    FRESH = "fresh"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached 2xx JSON response. `body` is shared by every hit: treat it as read-only."""

    status: int
    body: Any
    stored_at: float


class ResponseCache:
    """Bounded LRU map of responses; an entry is fresh for `ttl`, then stale for `stale`, then gone."""

    def __init__(self, config: CacheConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._entries: OrderedDict[CacheKey, Entry] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._config.max_entries > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> tuple[Entry, Freshness] | None:
        """The entry and how fresh it is, or None (a miss; an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock() - entry.stored_at
        if age >= self._config.ttl + self._config.stale:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry, Freshness.FRESH if age < self._config.ttl else Freshness.STALE

    def put(self, key: CacheKey, status: int, body: Any) -> None:
        if not self.enabled:
            return
        self._entries[key] = Entry(status, body, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._config.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
