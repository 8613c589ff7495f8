"""Expected parts of a call record's JSON form (`CallRecord.as_dict()`), for assertions on log lines and rows."""

from __future__ import annotations


def transferred(queue: str, uri: str) -> dict[str, object]:
    return {"kind": "transfer", "reason": "transferred", "queue": queue, "uri": uri}


def hung_up(reason: str) -> dict[str, object]:
    return {"kind": "hangup", "reason": reason, "queue": None, "uri": None}
