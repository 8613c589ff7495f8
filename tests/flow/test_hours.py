"""Schedules: weekday spans in the schedule's zone, holidays, closed and open dates, DST."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flowkit import connect, make_config

from ivr.config.model import Schedule
from ivr.flow.commands import Play
from ivr.flow.hours import is_open

UTC = dt.UTC


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def office(**extra: Any) -> Schedule:
    data: dict[str, Any] = {
        "timezone": "Europe/London",
        "hours": {day: ["08:00-18:00"] for day in ("mon", "tue", "wed", "thu")} | {"fri": ["08:00-12:00",
                                                                                           "13:00-17:00"]},
        "holidays": {"country": "GB", "subdivision": "ENG"},
        "closed_dates": ["2026-12-24"],
    }
    return Schedule.model_validate(data | extra)


@pytest.mark.parametrize(("instant", "expected"), [
    ("2026-03-02T10:00:00+00:00", True),     # Monday morning
    ("2026-03-02T07:59:00+00:00", False),    # before opening
    ("2026-03-02T18:00:00+00:00", False),    # the end is exclusive
    ("2026-03-06T12:30:00+00:00", False),    # Friday lunch gap
    ("2026-03-06T13:00:00+00:00", True),
    ("2026-03-07T10:00:00+00:00", False),    # Saturday: no spans
    ("2026-12-25T10:00:00+00:00", False),    # Christmas Day (holiday)
    ("2026-04-03T10:00:00+00:00", False),    # Good Friday (holiday)
    ("2026-12-24T10:00:00+00:00", False),    # closed_date
])
def test_office_hours(instant: str, expected: bool) -> None:
    assert is_open(office(), at(instant)) is expected


def test_open_date_wins_over_holiday_and_closed_date() -> None:
    schedule = office(open_dates=["2026-12-25", "2026-12-24"])
    assert is_open(schedule, at("2026-12-25T10:00:00+00:00"))
    assert is_open(schedule, at("2026-12-24T10:00:00+00:00"))
    assert not is_open(schedule, at("2026-12-25T19:00:00+00:00"))  # still the weekday's spans


def test_dst_uses_local_wall_clock() -> None:
    # 07:30 UTC is 07:30 GMT (closed) a week before BST starts and 08:30 BST (open) after it.
    assert not is_open(office(), at("2026-03-23T07:30:00+00:00"))
    assert is_open(office(), at("2026-03-30T07:30:00+00:00"))


def test_other_zone_and_midnight_end() -> None:
    schedule = Schedule.model_validate({"timezone": "America/New_York", "hours": {"mon": ["20:00-24:00"]}})
    assert is_open(schedule, at("2026-03-03T04:30:00+00:00"))      # Monday 23:30 in New York
    assert not is_open(schedule, at("2026-03-02T23:30:00+00:00"))  # Monday 18:30 in New York


def test_subdivision_holiday() -> None:
    scotland = office(holidays={"country": "GB", "subdivision": "SCT"})
    assert not is_open(scotland, at("2026-01-02T10:00:00+00:00"))  # 2 January: Scotland only
    assert is_open(office(), at("2026-01-02T10:00:00+00:00"))


def test_hours_step_routes_open_and_closed() -> None:
    steps = [
        {"id": "check", "type": "hours", "schedule": "office", "open": "opened", "closed": "shut"},
        {"id": "opened", "type": "play", "prompts": ["open"]},
        {"id": "shut", "type": "play", "prompts": ["closed"]},
    ]
    config = make_config(steps, schedules={"office": office().model_dump(by_alias=True)})
    session, commands = connect(config, now=at("2026-03-02T10:00:00+00:00"))
    assert commands == [Play(1, ("open",))]
    assert session.record().as_dict()["path"] == ["check:open"]
    session, commands = connect(config, now=at("2026-12-25T10:00:00+00:00"))
    assert commands == [Play(1, ("closed",))]
    assert session.record().as_dict()["path"] == ["check:closed"]
