"""Field types shared by the config models: durations, names, digits, SIP URIs."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Accept 1.5, "1.5s", "500ms", "2m", "1h", "90d"; a bare number is seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '500ms', '2s', '1m'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(f"invalid duration {value!r}: use seconds or a string like '500ms', '2s', '1m'")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
"""Seconds; YAML may say 1.5, "1500ms", "2s", "1m"."""

Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$", max_length=64)]
"""An identifier: a step id, flow, queue, endpoint, schedule or variable name."""

Digit = Annotated[str, Field(pattern=r"^[0-9*#A-D]$")]


def _sip_uri(value: str) -> str:
    if not re.match(r"^sips?:[^\s<>\"]+$", value):
        raise ValueError(f"not a SIP URI: {value!r} (expected e.g. sip:queue@pbx.example.com)")
    return value


SipUri = Annotated[str, AfterValidator(_sip_uri)]

PromptName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]+$")]
"""A prompt is the name of `<prompts dir>/<name>.wav`."""
