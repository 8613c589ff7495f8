"""Business hours: is a schedule open at an instant? Weekday spans in the schedule's own time zone."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from ivr.config.model import HolidayCalendar, Schedule, Weekday

WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=64)
def _holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    """The public holidays of one year (an unknown calendar has none; `ivr check` reports it)."""
    try:
        calendar = holidays.country_holidays(country, subdiv=subdivision, years=year)
    except NotImplementedError:
        return frozenset()
    return frozenset(calendar.keys())


def is_holiday(calendar: HolidayCalendar | None, day: dt.date) -> bool:
    if calendar is None:
        return False
    return day in _holiday_dates(calendar.country, calendar.subdivision, day.year)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def in_spans(spans: tuple[str, ...], local: dt.datetime) -> bool:
    """True when the local wall-clock time falls in one of the 'HH:MM-HH:MM' spans (end exclusive)."""
    minute = local.hour * 60 + local.minute
    for span in spans:
        start, end = span.split("-")
        if _minutes(start) <= minute < _minutes(end):
            return True
    return False


def is_open(schedule: Schedule, now: float) -> bool:
    """Open at epoch `now`?

    open_dates win over holidays and closed_dates (the day then keeps its weekday's spans); otherwise a
    closed date or a public holiday is closed all day; otherwise the weekday's spans decide.
    """
    local = dt.datetime.fromtimestamp(now, ZoneInfo(schedule.timezone))
    day = local.date()
    iso = day.isoformat()
    if iso not in schedule.open_dates:
        if iso in schedule.closed_dates or is_holiday(schedule.holidays, day):
            return False
    return in_spans(schedule.hours.get(WEEKDAYS[day.weekday()], ()), local)
