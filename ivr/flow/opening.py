"""When a closed schedule opens next: the variables a `say` reads to the caller ("We open at 8 a.m. on Monday")."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from ivr.config.model import Schedule
from ivr.flow.hours import WEEKDAYS, is_open

LOOKAHEAD_DAYS = 14
"""How far ahead the next opening is searched (a schedule closed longer has none)."""


def next_opening(schedule: Schedule, now: float) -> dt.datetime | None:
    """The next local instant the schedule opens after `now` (a span start on a day that is open), or None."""
    zone = ZoneInfo(schedule.timezone)
    today = dt.datetime.fromtimestamp(now, zone).date()
    for offset in range(LOOKAHEAD_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        starts = sorted(span.split("-")[0] for span in schedule.hours.get(WEEKDAYS[day.weekday()], ()))
        for start in starts:
            hour, minute = (int(x) for x in start.split(":"))
            at = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
            if at.timestamp() > now and is_open(schedule, at.timestamp()):
                return at
    return None


def opening_variables(schedule: Schedule, now: float) -> dict[str, str]:
    """`opens_time` (HH:MM), `opens_day` (mon..sun) and `opens_date` (ISO) of the next opening; empty if none."""
    at = next_opening(schedule, now)
    if at is None:
        return {}
    return {"opens_time": at.strftime("%H:%M"), "opens_day": at.strftime("%a").lower(),
            "opens_date": at.date().isoformat()}
