"""Offline answers for `ivr simulate --http-fixtures FILE`: canned HTTP responses and transfer outcomes.

A fixture file (YAML) is a list; the first entry that matches a request answers it:

    - {endpoint: crm, method: GET, path: /api/v1/customers, query: {phone: "+15551000001"},
       status: 200, body: {data: [...]}, delay_ms: 40}
    - {endpoint: crm, fail: timeout}              # or connect_error; other fields optional
    - {transfer: gold, result: 603}               # a transfer to queue gold is rejected
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ivr.flow.commands import Fetch
from ivr.flow.events import FetchCompleted, FetchFailed

FetchResult = FetchCompleted | FetchFailed
Fetcher = Callable[[Fetch], Awaitable[FetchResult]]


class _Fixture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpFixture(_Fixture):
    """An offline answer to the fetches it matches (unset match fields match anything)."""

    endpoint: str | None = None
    method: str | None = None
    path: str | None = None
    query: dict[str, str] | None = None
    status: int = 200
    body: Any = None
    delay_ms: float = 0.0
    fail: Literal["timeout", "connect_error"] | None = None

    def matches(self, cmd: Fetch) -> bool:
        return ((self.endpoint is None or self.endpoint == cmd.endpoint)
                and (self.method is None or self.method.upper() == cmd.method)
                and (self.path is None or self.path == cmd.path)
                and (self.query is None or self.query == dict(cmd.query)))

    def answer(self, cmd: Fetch) -> FetchResult:
        if self.fail == "timeout":
            return FetchFailed(cmd.request_id, "timeout", cmd.budget_s * 1000)
        if self.fail is not None:
            return FetchFailed(cmd.request_id, self.fail, self.delay_ms)
        if self.delay_ms / 1000 > cmd.budget_s:
            return FetchFailed(cmd.request_id, "timeout", cmd.budget_s * 1000)
        if not 200 <= self.status < 300:
            return FetchFailed(cmd.request_id, f"http_{self.status}", self.delay_ms)
        return FetchCompleted(cmd.request_id, self.status, self.body, self.delay_ms)


class TransferFixture(_Fixture):
    """How a transfer to `transfer` (a queue name) ends: a final SIP code, or no final NOTIFY at all. With
    `uri`, only the transfers to that target of the queue (a Refer-To starting with it)."""

    transfer: str
    uri: str | None = None
    result: int | Literal["no_notify"] = 200


@dataclass(frozen=True)
class Fixtures:
    http: tuple[HttpFixture, ...] = ()
    transfers: tuple[TransferFixture, ...] = ()


def load_fixtures(path: Path) -> Fixtures:
    """Read a fixture file; raise ValueError with the reason when it is unreadable or malformed."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of fixtures")
    http: list[HttpFixture] = []
    transfers: list[TransferFixture] = []
    for index, item in enumerate(data):
        try:
            if isinstance(item, dict) and "transfer" in item:
                transfers.append(TransferFixture.model_validate(item))
            else:
                http.append(HttpFixture.model_validate(item))
        except ValidationError as exc:
            raise ValueError(f"{path}: fixture [{index}]: {exc.errors()[0]['msg']}") from None
    return Fixtures(tuple(http), tuple(transfers))


def fixture_fetcher(fixtures: Sequence[HttpFixture]) -> Fetcher:
    """Answer fetches from fixtures; a request no fixture matches fails with reason "no_fixture"."""

    async def fetch(cmd: Fetch) -> FetchResult:
        for fixture in fixtures:
            if fixture.matches(cmd):
                return fixture.answer(cmd)
        return FetchFailed(cmd.request_id, "no_fixture", 0.0)

    return fetch
