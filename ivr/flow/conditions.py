"""Branch conditions: structured tests on call variables and run-time switches (no expression language)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ivr.config.steps import Condition

NO_SWITCHES: Mapping[str, bool] = {}


def number(value: str | None) -> float | None:
    """A variable's numeric value: a finite decimal number ('3', ' 4.5 ', '-1'); anything else is None."""
    if value is None:
        return None
    try:
        parsed = float(value.strip())
    except ValueError:
        return None
    return parsed if math.isfinite(parsed) else None


def _numeric(condition: Condition, value: str | None) -> bool | None:
    """The numeric test's result, or None when the condition is not numeric. A non-number compares false."""
    bounds = (condition.eq, condition.gt, condition.ge, condition.lt, condition.le)
    if all(b is None for b in bounds):
        return None
    n = number(value)
    if n is None:
        return False
    if condition.eq is not None:
        return n == condition.eq
    if condition.gt is not None:
        return n > condition.gt
    if condition.ge is not None:
        return n >= condition.ge
    if condition.lt is not None:
        return n < condition.lt
    return condition.le is not None and n <= condition.le


def holds(condition: Condition, variables: Mapping[str, str],
          switches: Mapping[str, bool] = NO_SWITCHES) -> bool:
    """One condition. An unset variable equals nothing, is in nothing and matches nothing; an unknown
    switch is off."""
    if condition.switch is not None:
        return switches.get(condition.switch, False) == condition.on
    value = variables.get(condition.var or "")
    if condition.exists is not None:
        return bool(value) == condition.exists
    numeric = _numeric(condition, value)
    if numeric is not None:
        return numeric
    if value is None:
        return False
    if condition.equals is not None:
        return value == condition.equals
    if condition.in_ is not None:
        return value in condition.in_
    if condition.matches is not None:
        return re.fullmatch(condition.matches, value) is not None
    return False


def all_hold(when: Condition | tuple[Condition, ...], variables: Mapping[str, str],
             switches: Mapping[str, bool] = NO_SWITCHES) -> bool:
    """A case's `when`: one condition, or a list that must all hold."""
    if isinstance(when, Condition):
        return holds(when, variables, switches)
    return all(holds(condition, variables, switches) for condition in when)
