"""Readers: numbers, digits, money, times, weekdays and dates in English and Spanish."""

from __future__ import annotations

import pytest

from ivr.flow.readers import date, digits, money, number, time_of_day, weekday


@pytest.mark.parametrize(("value", "en", "es"), [
    ("0", "zero", "cero"), ("3", "three", "tres"), ("15", "fifteen", "quince"), ("21", "twenty-one", "veintiuno"),
    ("42", "forty-two", "cuarenta y dos"), ("100", "one hundred", "cien"),
    ("115", "one hundred fifteen", "ciento quince"), ("1000", "one thousand", "mil"),
    ("2026", "two thousand twenty-six", "dos mil veintiséis"),
    ("1000000", "one million", "un millón"), ("-7", "minus seven", "menos siete"),
    ("3500000", "three million five hundred thousand", "tres millones quinientos mil"),
])
def test_numbers(value: str, en: str, es: str) -> None:
    assert number(value, "en") == en
    assert number(value, "es") == es


def test_unreadable_values_are_spoken_as_written() -> None:
    assert number("12a", "en") == "12a"
    assert money("lots", "en") == "lots"
    assert time_of_day("25:00", "en") == "25:00"
    assert date("tomorrow", "es") == "tomorrow"
    assert weekday("someday", "en") == "someday"
    assert digits("", "en") == ""


def test_digits_one_by_one() -> None:
    assert digits("1002", "en") == "one, zero, zero, two"
    assert digits("+34 91", "es") == "tres, cuatro, nueve, uno"


def test_money() -> None:
    assert money("12.50", "en") == "twelve dollars and fifty cents"
    assert money("1", "en") == "one dollar"
    assert money("0.01", "en") == "zero dollars and one cent"
    assert money("12,5", "es") == "doce dólares con cincuenta centavos"


def test_times() -> None:
    assert time_of_day("08:00", "en") == "8 a.m."
    assert time_of_day("13:30", "en") == "1:30 p.m."
    assert time_of_day("0:05", "en") == "12:05 a.m."
    assert time_of_day("8", "es") == "las 8 de la mañana"
    assert time_of_day("13:30", "es") == "la 1 y 30 de la tarde"
    assert time_of_day("21:00", "es") == "las 9 de la noche"


def test_weekdays_and_dates() -> None:
    assert weekday("mon", "en") == "Monday"
    assert weekday("1", "es") == "lunes"
    assert weekday("Sunday", "es") == "domingo"
    assert date("2026-12-07", "en") == "Monday, December 7"
    assert date("2026-12-07T08:00:00", "es") == "lunes 7 de diciembre"
