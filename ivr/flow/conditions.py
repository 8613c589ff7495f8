"""Branch conditions: structured tests on call variables (no expression language)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ivr.config.steps import Condition


def holds(condition: Condition, variables: Mapping[str, str]) -> bool:
    """One condition. An unset variable equals nothing, is in nothing and matches nothing."""
    value = variables.get(condition.var)
    if condition.exists is not None:
        return bool(value) == condition.exists
    if value is None:
        return False
    if condition.equals is not None:
        return value == condition.equals
    if condition.in_ is not None:
        return value in condition.in_
    if condition.matches is not None:
        return re.fullmatch(condition.matches, value) is not None
    return False


def all_hold(when: Condition | tuple[Condition, ...], variables: Mapping[str, str]) -> bool:
    """A case's `when`: one condition, or a list that must all hold."""
    if isinstance(when, Condition):
        return holds(when, variables)
    return all(holds(condition, variables) for condition in when)
