"""Where a transfer goes: the order a queue's targets are tried in, variable targets and their allow-list.

Pure and deterministic. The state a strategy needs lives outside the engine's globals: `QueueCursors`
(one per controller, owned by `CallRouter`, handed to every session through `CallContext`) counts the
transfers started per queue and carries the seed the `random` strategy draws from. The same ticket and
seed always give the same plan, so `ivr simulate --seed` reproduces a choice and tests need no mocks.

`plan_targets(queue, ticket, seed)` is the one entry point for "which target next": a transfer step
(REFER) and a bridged transfer both walk the tuple it returns, first to last.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from ivr.config.model import Queue
from ivr.flow.template import render

_TARGET = re.compile(r"^sips?:(?:[A-Za-z0-9\-_.!~*'()&=+$,%]+@)?[A-Za-z0-9\-.\[\]:]+(?:;[A-Za-z0-9\-_.!~*'()%=]+)*$",
                     re.IGNORECASE)
"""A SIP URI a variable target may render to: user@host[:port][;params], no headers, no spaces, no '<>'."""
_STAR = "[A-Za-z0-9\\-_.!~'()&=+$,%]+"
"""What '*' of an allow pattern stands for: user-part or host characters, never '@', ':', ';', '?', '/'."""
_HEADER_SAFE = "[]/?:+$-_.!~*'()"
"""Characters left as they are in a Refer-To header value (RFC 3261 hnv-unreserved and unreserved)."""


@dataclass(slots=True)
class QueueCursors:
    """Per-queue transfer counters and the seed of `random`: the only state target strategies need."""

    seed: int = 0
    start: int = 0
    """The first ticket of every queue (`ivr simulate --ticket`)."""
    _next: dict[str, int] = field(default_factory=dict)

    def take(self, queue: str) -> int:
        """This transfer's ticket for `queue` (start, start + 1, ... over the controller's lifetime)."""
        ticket = self._next.get(queue, self.start)
        self._next[queue] = ticket + 1
        return ticket


def plan_targets(name: str, queue: Queue, ticket: int, seed: int = 0) -> tuple[str, ...]:
    """The queue's fixed target URIs in the order to try them for transfer number `ticket` of the queue."""
    targets = queue.all_targets
    if not targets:
        return ()
    uris = [t.uri for t in targets]
    match queue.strategy:
        case "ordered":
            order = list(range(len(uris)))
        case "round_robin":
            start = ticket % len(uris)
            order = [(start + i) % len(uris) for i in range(len(uris))]
        case "weighted":
            first = _smooth_weighted([t.weight for t in targets], ticket)
            rest = sorted((i for i in range(len(uris)) if i != first), key=lambda i: -targets[i].weight)
            order = [first, *rest]
        case "random":
            order = list(range(len(uris)))
            random.Random(f"{seed}:{name}:{ticket}").shuffle(order)
    return tuple(uris[i] for i in order)


def _smooth_weighted(weights: list[int], ticket: int) -> int:
    """Smooth weighted round robin (the sequence nginx uses): the target picked at position ticket % total."""
    total = sum(weights)
    current = [0] * len(weights)
    picked = 0
    for _ in range(ticket % total + 1):
        current = [c + w for c, w in zip(current, weights, strict=True)]
        picked = max(range(len(weights)), key=lambda i: current[i])
        current[picked] -= total
    return picked


def allowed(uri: str, patterns: tuple[str, ...]) -> bool:
    """True when `uri` matches one of the allow patterns as a whole (scheme and host case-insensitive)."""
    return any(_pattern(p).match(uri) for p in patterns)


def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + _STAR.join(re.escape(part) for part in pattern.split("*")) + "$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class VariableTarget:
    """A step's variable target: the URI when usable, else why not (`empty`, `invalid`, `disallowed`)."""

    uri: str | None
    reason: str
    rendered: str


def variable_target(template: str, variables: Mapping[str, str], queue: Queue) -> VariableTarget:
    """Render a step's `target` and check it against the queue's allow-list."""
    uri = render(template, variables).strip()
    if not uri or any(not variables.get(v, "").strip() for v in _variables(template)):
        return VariableTarget(None, "empty", uri)
    if not _TARGET.match(uri):
        return VariableTarget(None, "invalid", uri)
    if not allowed(uri, queue.allow):
        return VariableTarget(None, "disallowed", uri)
    return VariableTarget(uri, "ok", uri)


def _variables(template: str) -> list[str]:
    return re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*\}\}", template)


def with_uri_headers(uri: str, headers: tuple[tuple[str, str], ...]) -> str:
    """`uri?Name=value&...`: headers embedded in a SIP URI (RFC 3261 19.1.1), values %-escaped."""
    if not headers:
        return uri
    query = "&".join(f"{name}={quote(value, safe=_HEADER_SAFE)}" for name, value in headers)
    return f"{uri}{'&' if '?' in uri else '?'}{query}"
