"""What a generated call path expects, as the flow engine itself played it (typed, JSON round-trip)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

CrmClass = Literal["ok", "slow", "down"]
DtmfMethod = Literal["info", "rfc4733"]


@dataclass(frozen=True, slots=True)
class ExpectedTransfer:
    """One REFER the caller receives, and how the caller (as the transferee) answers it."""

    queue: str
    uri: str
    headers: tuple[tuple[str, str], ...]
    answer: int
    """200 accepts (202 + NOTIFY 100 + NOTIFY 200); anything else is the REFER's final response."""
    at: float
    """Seconds after the answer, in the engine's virtual time."""


@dataclass(frozen=True, slots=True)
class Press:
    digit: str
    at: float


@dataclass(frozen=True, slots=True)
class CallPath:
    """One distinct path a caller can take through a flow, with its inputs and the engine's outcome."""

    name: str
    flow: str
    description: str
    dialed: str
    caller: str
    fresh_caller: bool
    """The caller number gets a per-call suffix (a number no CRM cache can know)."""
    crm: CrmClass
    keys: str
    """The simulator's keys ('.' = let one input wait time out)."""
    presses: tuple[Press, ...]
    transfers: tuple[ExpectedTransfer, ...]
    end: Literal["transferred", "hangup"]
    end_reason: str
    end_at: float
    steps: tuple[str, ...]
    prompts: tuple[str, ...]
    at: float
    """Epoch seconds of the simulated start (the hours steps were decided for this time)."""
    reachable_now: bool

    @property
    def digits(self) -> str:
        return "".join(p.digit for p in self.presses)

    @property
    def expected(self) -> str:
        """One line: the REFER targets with their answers, or the hang-up."""
        parts = [f"REFER {t.queue}" + ("" if t.answer == 200 else f" ({t.answer})") for t in self.transfers]
        if self.end == "hangup":
            parts.append(f"hangup {self.end_reason}")
        return " > ".join(parts)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["digits"] = self.digits
        data["expected"] = self.expected
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallPath:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["presses"] = tuple(Press(**p) for p in data["presses"])
        fields["transfers"] = tuple(
            ExpectedTransfer(**{**t, "headers": tuple(tuple(h) for h in t["headers"])}) for t in data["transfers"])
        fields["steps"] = tuple(data["steps"])
        fields["prompts"] = tuple(data["prompts"])
        return cls(**fields)
