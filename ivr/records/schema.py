"""What the two stores share: the table, its migrations per dialect, a row from a record, the call filter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

COLUMNS = ("uid", "call_id", "sip_call_id", "node", "worker", "trunk", "caller", "dialed", "flow", "tier",
           "queue", "outcome", "end_reason", "started_at", "ended_at", "record")
"""Columns of `calls`: the record's JSON in `record`, and copies of the fields the queries filter on."""

_TYPES: dict[Dialect, tuple[str, str]] = {"sqlite": ("REAL", "TEXT"), "postgresql": ("DOUBLE PRECISION", "JSONB")}
_INDEXED = ("caller", "dialed", "flow", "tier", "queue", "outcome")


def migrations(dialect: Dialect) -> list[tuple[int, list[str]]]:
    """(version, statements) in order; each version is applied once, in one transaction."""
    real, doc = _TYPES[dialect]
    create = (f"CREATE TABLE IF NOT EXISTS calls (uid TEXT PRIMARY KEY, call_id TEXT NOT NULL, sip_call_id TEXT, "
              f"node TEXT, worker TEXT, trunk TEXT, caller TEXT, dialed TEXT, flow TEXT, tier TEXT, queue TEXT, "
              f"outcome TEXT, end_reason TEXT, started_at {real} NOT NULL, ended_at {real}, record {doc} NOT NULL)")
    indexes = [f"CREATE INDEX IF NOT EXISTS calls_{c} ON calls ({c}, started_at)" for c in _INDEXED]
    return [(1, [create, "CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at)", *indexes])]


VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"


def row(data: dict[str, object]) -> tuple[object, ...]:
    """The column values of one record (`CallRecord.as_dict()` form), in COLUMNS order."""
    outcome = data.get("outcome") if isinstance(data.get("outcome"), dict) else {}
    assert isinstance(outcome, dict)
    variables = data.get("variables") if isinstance(data.get("variables"), dict) else {}
    assert isinstance(variables, dict)
    transfers = data.get("transfers") or []
    assert isinstance(transfers, list)
    queue = outcome.get("queue") or (transfers[-1].get("queue") if transfers else None)
    return (data["uid"], data["call_id"], data.get("sip_call_id"), data.get("node"), data.get("worker"),
            data.get("trunk"), data.get("caller"), data.get("dialed"), data.get("flow"), variables.get("tier"),
            queue, outcome.get("kind"), data.get("end_reason"), data["started_at"], data.get("ended_at"),
            json.dumps(data, separators=(",", ":"), ensure_ascii=False))


@dataclass(frozen=True, slots=True)
class CallFilter:
    """`ivr calls` / `ivr report` selection; None matches anything. Times are epoch seconds."""

    caller: str | None = None
    dialed: str | None = None
    flow: str | None = None
    tier: str | None = None
    queue: str | None = None
    outcome: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int | None = None

    def sql(self, mark: str) -> tuple[str, list[object]]:
        """The WHERE ... ORDER BY ... LIMIT clause with `mark` placeholders, and its parameters."""
        where: list[str] = []
        params: list[object] = []
        for column in ("caller", "dialed", "flow", "tier", "queue", "outcome"):
            value = getattr(self, column)
            if value is not None:
                where.append(f"{column} = {mark}")
                params.append(value)
        if self.since is not None:
            where.append(f"started_at >= {mark}")
            params.append(self.since)
        if self.until is not None:
            where.append(f"started_at < {mark}")
            params.append(self.until)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        clause += " ORDER BY started_at DESC, uid"
        if self.limit is not None:
            clause += f" LIMIT {int(self.limit)}"
        return clause, params
