"""Reads back what a generated scenario's calls observed (their `QA ...` log lines) and judges each call
against the path the engine played."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ivr.scenarios.model import CallPath

_LINE = re.compile(r"^QA (\S+) (\S+)(.*)$")
_FIELD = re.compile(r"(?:^| )([\w.\-]+)=(.*?)(?= [\w.\-]+=|$)")
"""key=value; a value may hold '=' and '&' (a Refer-To with URI headers) but no ' word='."""


@dataclass(frozen=True, slots=True)
class ObservedRefer:
    uri: str
    headers: tuple[tuple[str, str], ...]
    tick: int
    refused: str = ""


@dataclass
class ObservedCall:
    """One call as the caller saw it (ticks are SIPp's millisecond clock)."""

    call_id: str
    answered: int | None = None
    refers: list[ObservedRefer] = field(default_factory=list)
    sent: str = ""
    bye: int | None = None
    early_bye: bool = False
    rejected: str | None = None
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.rejected:
            return f"rejected {self.rejected}"
        parts = [f"REFER {_queue_of(r.uri)}" + (f" ({r.refused})" if r.refused else "") for r in self.refers]
        if self.bye is not None and (not self.refers or self.early_bye or self.refers[-1].refused):
            parts.append("hangup")
        return " > ".join(parts) or "nothing"

    def refer_ms(self) -> int | None:
        if self.answered is None or not self.refers:
            return None
        return self.refers[0].tick - self.answered

    def end_ms(self) -> int | None:
        return None if self.answered is None or self.bye is None else self.bye - self.answered


def _queue_of(uri: str) -> str:
    return uri.split(":", 1)[-1].split("@", 1)[0] if uri else "?"


def parse(text: str) -> dict[str, ObservedCall]:
    """The calls in a `-trace_logs` file, by Call-ID, in order of appearance."""
    calls: dict[str, ObservedCall] = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        call_id, what, rest = match.groups()
        fields = {k: v.strip() for k, v in _FIELD.findall(rest)}
        _apply(calls.setdefault(call_id, ObservedCall(call_id)), what, fields)
    return calls


def _apply(call: ObservedCall, what: str, fields: dict[str, str]) -> None:
    tick = int(fields["tick"]) if fields.get("tick", "").isdigit() else None
    match what:
        case "answered":
            call.answered = tick
        case "refer":
            headers = tuple((k[2:], v) for k, v in fields.items() if k.startswith("h."))
            call.refers.append(ObservedRefer(fields.get("uri", ""), headers, tick or 0))
            call.sent = fields.get("sent", call.sent)
        case "digit":
            call.sent += fields.get("d", "")
        case "bye":
            call.bye, call.early_bye = tick, "early" in fields
        case "rejected":
            call.rejected = fields.get("code")
        case "fail":
            call.failures.append(fields.get("why", "fail"))
        case "refused" if call.refers:
            call.refers[-1] = replace(call.refers[-1], refused=fields.get("code", "?"))
        case "refer_unexpected":
            call.refers.append(ObservedRefer(fields.get("uri", ""), (), tick or 0))


def judge(path: CallPath, call: ObservedCall, method: str) -> list[str]:
    """What differs from the engine's path (empty: the call passed)."""
    problems: list[str] = []
    if call.rejected:
        return [f"call rejected with {call.rejected}"]
    if call.answered is None:
        return ["not answered"]
    want = [t.uri for t in path.transfers]
    got = [r.uri for r in call.refers]
    if got != want[: len(got)] or len(got) != len(want):
        problems.append(f"Refer-To {got or 'none'}, expected {want or 'none'}")
    for expected, seen in zip(path.transfers, call.refers, strict=False):
        headers = dict(seen.headers)
        for name, value in expected.headers:
            if headers.get(name, "") != value:
                problems.append(f"REFER {name}: {headers.get(name, '')!r}, expected {value!r}")
    if method == "info" and path.transfers and call.sent != path.digits:
        problems.append(f"REFER after digits {call.sent!r}, expected after {path.digits!r}")
    if call.bye is None:
        problems.append("no BYE from the IVR")
    elif path.transfers and call.early_bye:
        problems.append("BYE before the expected REFER")
    problems += call.failures
    return problems
