"""Expected parts of a call record's JSON form (`CallRecord.as_dict()`), for assertions on log lines and rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ivr.records.model import CallRecord, DigitInput, FetchEntry, Outcome, Timings, TransferAttempt


def transferred(queue: str, uri: str) -> dict[str, object]:
    return {"kind": "transfer", "reason": "transferred", "queue": queue, "uri": uri}


def hung_up(reason: str) -> dict[str, object]:
    return {"kind": "hangup", "reason": reason, "queue": None, "uri": None}


def abandoned(reason: str) -> dict[str, object]:
    return {"kind": "abandoned", "reason": reason, "queue": None, "uri": None}


LOG_KEYS = ("event", "level", "timestamp")
"""Keys the log renderer adds to a record's fields."""


def sqlite_rows(path: Path) -> list[dict[str, Any]]:
    """Every stored record of an SQLite store (read-only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [json.loads(text) for (text,) in db.execute("SELECT record FROM calls")]
    finally:
        db.close()


def assert_rows_match_lines(rows: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    """One row per call.ended line, keyed by uid, each equal to the line without the renderer's keys."""
    logged = [{k: v for k, v in line.items() if k not in LOG_KEYS} for line in lines]
    by_uid = {row["uid"]: row for row in rows}
    assert len(by_uid) == len(rows), "duplicate uids in the store"
    assert sorted(by_uid) == sorted(r["uid"] for r in logged), (
        f"{len(logged)} calls logged, {len(rows)} rows stored")
    for record in logged:
        assert by_uid[record["uid"]] == record, record["uid"]


def sample(uid: str, *, caller: str = "+15551000001", started_at: float = 1000.0, tier: str = "gold",
           queue: str | None = "gold", flow: str = "support", path: tuple[str, ...] = ("main_menu:1", "to_sales:ok"),
           abandoned: bool = False) -> dict[str, Any]:
    """A plausible finished call's record, in its JSON form."""
    outcome = (Outcome("abandoned", "caller_hangup") if abandoned else
               Outcome("transfer", "transferred", queue, f"sip:{queue}@127.0.0.1") if queue
               else Outcome("hangup", "closed"))
    record = CallRecord(
        uid=uid, call_id="w000-1", sip_call_id=f"{uid}@127.0.0.1", worker="w000", trunk="local", caller=caller,
        dialed="100", flow=flow, started_at=started_at, ended_at=started_at + 9.5, end_reason="local_hangup",
        outcome=outcome, path=path, inputs=(DigitInput("main_menu", "1"),),
        variables=(("tier", tier), ("pin", "***")),
        fetches=(FetchEntry("lookup", "crm", "ok", None, 200, 42.5, False),),
        transfers=(TransferAttempt("to_gold", queue or "gold", "sip:gold@127.0.0.1", "ok", 200, (100, 200),
                                   started_at + 2),),
        timings=Timings(answer_ms=20.0, to_transferred_ms=3100.0, duration_ms=9500.0), node="test")
    return record.as_dict()
