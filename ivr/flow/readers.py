"""Readers: how digits, numbers, money, dates and times are spoken, in the caller's language. Pure functions.

A `say` text applies one with `{{variable|reader}}`: "You are caller number {{position|number}}",
"We open at {{opens|time}} on {{opens_day|weekday}}". A value a reader cannot read is spoken as written.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

_EN_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
             "sixteen seventeen eighteen nineteen").split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ES_SMALL = ("cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince dieciséis "
             "diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés veinticuatro veinticinco "
             "veintiséis veintisiete veintiocho veintinueve").split()
_ES_TENS = "_ _ _ treinta cuarenta cincuenta sesenta setenta ochenta noventa".split()
_ES_HUNDREDS = ("_ ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos ochocientos "
                "novecientos").split()
_WEEKDAYS = {"en": "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
             "es": "lunes martes miércoles jueves viernes sábado domingo".split()}
_MONTHS = {"en": ("January February March April May June July August September October November "
                  "December").split(),
           "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split()}
_DAY_NAMES = {d.lower(): i for names in _WEEKDAYS.values() for i, d in enumerate(names)} | {
    d[:3].lower(): i for i, d in enumerate(_WEEKDAYS["en"])}
_MONEY = re.compile(r"^\s*(-?)(\d+)(?:[.,](\d{1,2}))?\s*$")
_TIME = re.compile(r"^\s*(\d{1,2})(?::(\d{2}))?(?::\d{2})?\s*$")


def _en(n: int) -> str:
    if n < 20:
        return _EN_SMALL[n]
    if n < 100:
        return _EN_TENS[n // 10] + ("-" + _EN_SMALL[n % 10] if n % 10 else "")
    if n < 1000:
        return _EN_SMALL[n // 100] + " hundred" + (" " + _en(n % 100) if n % 100 else "")
    for size, word in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            return _en(n // size) + f" {word}" + (" " + _en(n % size) if n % size else "")
    raise AssertionError(n)


def _es(n: int) -> str:
    if n < 30:
        return _ES_SMALL[n]
    if n < 100:
        return _ES_TENS[n // 10] + (" y " + _ES_SMALL[n % 10] if n % 10 else "")
    if n < 1000:
        if n == 100:
            return "cien"
        return _ES_HUNDREDS[n // 100] + (" " + _es(n % 100) if n % 100 else "")
    if n < 10**6:
        head = "mil" if n // 1000 == 1 else _es(n // 1000) + " mil"
        return head + (" " + _es(n % 1000) if n % 1000 else "")
    millions = n // 10**6
    head = "un millón" if millions == 1 else _es(millions) + " millones"
    return head + (" " + _es(n % 10**6) if n % 10**6 else "")


def number(value: str, lang: str) -> str:
    """A whole number in words: "3" -> "three" / "tres"; "-12" -> "minus twelve" / "menos doce"."""
    text = value.strip().replace(",", "") if lang == "en" else value.strip()
    if not re.fullmatch(r"-?\d{1,12}", text):
        return value
    n = int(text)
    words = (_es if lang == "es" else _en)(abs(n))
    return (("menos " if lang == "es" else "minus ") + words) if n < 0 else words


def digits(value: str, lang: str) -> str:
    """Digit by digit (an account or phone number): "1002" -> "one, zero, zero, two"."""
    names = _ES_SMALL if lang == "es" else _EN_SMALL
    spoken = [names[int(c)] for c in value if c.isdigit()]
    return ", ".join(spoken) if spoken else value


def money(value: str, lang: str) -> str:
    """An amount in dollars: "12.50" -> "twelve dollars and fifty cents" / "doce dólares con cincuenta centavos"."""
    match = _MONEY.match(value)
    if not match:
        return value
    sign, whole, cents = match.group(1), int(match.group(2)), int((match.group(3) or "0").ljust(2, "0"))
    es = lang == "es"
    units = ("dólar", "dólares", "centavo", "centavos") if es else ("dollar", "dollars", "cent", "cents")
    said = f"{number(str(whole), lang)} {units[0] if whole == 1 else units[1]}"
    if cents:
        said += f" {'con' if es else 'and'} {number(str(cents), lang)} {units[2] if cents == 1 else units[3]}"
    return (("menos " if es else "minus ") if sign else "") + said


def time_of_day(value: str, lang: str) -> str:
    """"08:00" -> "8 a.m." / "las 8 de la mañana"; "13:30" -> "1:30 p.m." / "la 1 y 30 de la tarde"."""
    match = _TIME.match(value)
    if not match or int(match.group(1)) > 23 or int(match.group(2) or 0) > 59:
        return value
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    twelve = hour % 12 or 12
    if lang == "es":
        part = "de la mañana" if hour < 12 else "de la tarde" if hour < 20 else "de la noche"
        article = "la" if twelve == 1 else "las"
        return f"{article} {twelve}{f' y {minute}' if minute else ''} {part}"
    return f"{twelve}{f':{minute:02d}' if minute else ''} {'a.m.' if hour < 12 else 'p.m.'}"


def weekday(value: str, lang: str) -> str:
    """"monday" / "mon" / "1" (ISO, Monday = 1) -> "Monday" / "lunes"."""
    key = value.strip().lower()
    index = int(key) - 1 if key.isdigit() and 1 <= int(key) <= 7 else _DAY_NAMES.get(key)
    return value if index is None else _WEEKDAYS.get(lang, _WEEKDAYS["en"])[index]


def date(value: str, lang: str) -> str:
    """ISO "2026-12-07" -> "Monday, December 7" / "lunes 7 de diciembre"."""
    try:
        day = dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return value
    name = _WEEKDAYS.get(lang, _WEEKDAYS["en"])[day.weekday()]
    month = _MONTHS.get(lang, _MONTHS["en"])[day.month - 1]
    return f"{name} {day.day} de {month}" if lang == "es" else f"{name}, {month} {day.day}"


READERS: dict[str, Callable[[str, str], str]] = {
    "number": number, "digits": digits, "money": money, "time": time_of_day, "weekday": weekday, "date": date,
}
"""Reader name (as written after `|` in a say text) -> function(value, lang)."""
