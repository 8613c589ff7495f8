"""Defensive parsing of an incoming INVITE's text into the fields of `CallOffered` (pure, no pjsua2)."""

from __future__ import annotations

import re

from ivr.flow.events import CallOffered

_COMPACT = {"f": "from", "t": "to", "i": "call-id", "m": "contact", "v": "via", "l": "content-length"}
_SELECTED = {
    "user-agent",
    "p-asserted-identity",
    "remote-party-id",
    "diversion",
    "history-info",
    "subject",
}
"""Headers (besides every X-IVR-*) that `CallOffered.headers` carries."""
_MAX_HEADERS = 32
_MAX_VALUE = 512
_URI = re.compile(r"^\s*(sips?|tel):(\S*)", re.IGNORECASE)


def _unfold(head: str) -> list[str]:
    lines: list[str] = []
    for line in head.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def parse_headers(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The start line and the (name, value) header pairs of a SIP message; never raises."""
    head = text.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    lines = _unfold(head)
    start = lines[0].strip() if lines else ""
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers.append((name.strip(), value.strip()))
    return start, headers


def _canonical(name: str) -> str:
    lower = name.lower()
    return _COMPACT.get(lower, lower)


def uri_user(value: str) -> str:
    """User part of the URI in a name-addr or addr-spec ("Bob" <sip:123@host>;tag=x -> "123")."""
    if "<" in value:
        value = value.split("<", 1)[1].split(">", 1)[0]
    else:
        value = value.split(";", 1)[0]
    match = _URI.match(value)
    if not match:
        return ""
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme != "tel":
        if "@" not in rest:
            return ""
        rest = rest.split("@", 1)[0]
    return rest.split(";", 1)[0].split("?", 1)[0][:_MAX_VALUE]


def call_offered(source: str, whole_msg: str) -> CallOffered:
    """Build the offer from the INVITE's source address and text; missing parts become ""."""
    start, headers = parse_headers(whole_msg)
    parts = start.split()
    dialed = uri_user(parts[1]) if len(parts) >= 2 else ""
    first: dict[str, str] = {}
    selected: list[tuple[str, str]] = []
    for name, value in headers:
        canonical = _canonical(name)
        first.setdefault(canonical, value)
        if (canonical in _SELECTED or canonical.startswith("x-ivr-")) and len(selected) < _MAX_HEADERS:
            selected.append((name, value[:_MAX_VALUE]))
    return CallOffered(
        source=source,
        caller=uri_user(first.get("from", "")),
        dialed=dialed,
        sip_call_id=first.get("call-id", "")[:_MAX_VALUE],
        headers=tuple(selected),
    )
