"""The fetch step: one HTTP request inside a budget, JMESPath mapping, a filler prompt if it is slow."""

from __future__ import annotations

import json
from functools import lru_cache

import jmespath
from jmespath.visitor import TreeInterpreter

from ivr.config.steps import FetchStep
from ivr.flow.commands import Fetch
from ivr.flow.context import Activity, CallContext, Next, Reply
from ivr.flow.events import FetchCompleted, FetchFailed
from ivr.flow.template import render, render_body, render_header, render_path
from ivr.records.model import FetchEntry

SAFETY_MARGIN = 0.5
"""The step gives up this long after the budget if the HTTP client never answered."""

_INTERPRETER = TreeInterpreter()
"""One JMESPath interpreter for every mapping: `jmespath.search` builds a new one per expression, whose empty
method cache then looks up each node's visitor by name (a third of a 6-field map's cost; it holds no state
between searches, and the flow engine runs on one thread)."""


@lru_cache(maxsize=4096)
def _compiled(expression: str) -> jmespath.parser.ParsedResult:
    return jmespath.compile(expression)


def search(expression: str, body: object) -> object:
    """`jmespath.search(expression, body)`, with the expression compiled once and the interpreter reused."""
    return _INTERPRETER.visit(_compiled(expression).parsed, body)


def stringify(value: object) -> str | None:
    """A mapped JSON value as a variable: strings as they are, other values as JSON, null as unset."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class FetchActivity(Activity):
    """Waits for FetchCompleted/FetchFailed with its request_id; its own timer guards the budget."""

    def __init__(self, step: FetchStep, ctx: CallContext) -> None:
        super().__init__(step.id, ctx)
        self.step = step
        self.request_id = 0
        self.started = 0.0
        self.filler_at: float | None = None
        self.give_up_at: float | None = None

    @property
    def deadline(self) -> float | None:
        times = [t for t in (self.filler_at, self.give_up_at) if t is not None]
        return min(times) if times else None

    def start(self, now: float) -> Reply:
        endpoint = self.ctx.config.http.get(self.step.endpoint)
        if endpoint is None:
            return self._fail("unknown_endpoint", 0.0)
        variables = self.ctx.variables
        budget = self.step.timeout if self.step.timeout is not None else endpoint.timeout
        self.request_id = self.ctx.new_request_id()
        self.started = now
        self.give_up_at = now + budget + SAFETY_MARGIN
        if self.step.filler is not None:
            self.filler_at = now + self.step.filler.after
        command = Fetch(
            request_id=self.request_id,
            endpoint=self.step.endpoint,
            method=self.step.method,
            path=render_path(self.step.path, variables),
            query=tuple((name, render(t, variables)) for name, t in self.step.query.items()),
            headers=tuple((name, render_header(t, variables)) for name, t in self.step.headers.items()),
            body=None if self.step.body is None else render_body(self.step.body, variables),
            budget_s=budget,
            log_path=render_path(self.step.path, self.ctx.masked_variables()),
        )
        return Reply([command])

    def on_timer(self, now: float) -> Reply:
        if self.give_up_at is not None and now >= self.give_up_at:
            return self._fail("timeout", (now - self.started) * 1000)
        if self.filler_at is not None and now >= self.filler_at and self.step.filler is not None:
            self.filler_at = None
            return Reply([self.ctx.play(self.step.filler.prompts, interruptible=False, loop=True)])
        return Reply()

    def on_fetch(self, event: FetchCompleted | FetchFailed, now: float) -> Reply:
        if event.request_id != self.request_id or self.give_up_at is None:
            return Reply()
        if isinstance(event, FetchFailed):
            return self._fail(event.reason, event.elapsed_ms)
        if not 200 <= event.status < 300:
            return self._fail(f"http_{event.status}", event.elapsed_ms, event.status, event.cached)
        missing = self._apply_map(event.body)
        if missing:
            return self._fail("missing_field", event.elapsed_ms, event.status, event.cached)
        self._record("ok", None, event.elapsed_ms, event.status, event.cached)
        return Reply(self.ctx.stop_playback(), Next("ok", self.step.next))

    def _apply_map(self, body: object) -> list[str]:
        """Set (or unset) each mapped variable; the required ones that ended up unset."""
        for name, expression in self.step.map.items():
            value = stringify(search(expression, body))
            if value is None:
                self.ctx.variables.pop(name, None)
            else:
                self.ctx.variables[name] = value
        return [name for name in self.step.required if name not in self.ctx.variables]

    def _fail(self, reason: str, elapsed_ms: float, status: int | None = None, cached: bool = False) -> Reply:
        self._record("failed", reason, elapsed_ms, status, cached)
        self.ctx.variables["last_error"] = reason
        return Reply(self.ctx.stop_playback(), Next(reason, self.step.on_error))

    def _record(self, outcome: str, reason: str | None, elapsed_ms: float, status: int | None,
                cached: bool) -> None:
        self.filler_at = self.give_up_at = None
        self.ctx.fetches.append(FetchEntry(self.step_id, self.step.endpoint, outcome, reason, status,
                                           round(elapsed_ms, 1), cached))

    def abandon(self, now: float, why: str) -> None:
        if self.give_up_at is not None:
            self._record("abandoned", why, (now - self.started) * 1000, None, False)
        super().abandon(now, why)
