"""Step kinds for richer logic: counters and sub-flows that return (part of the `Step` union in steps.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ivr.config.base import Strict
from ivr.config.types import Name


class CounterStep(Strict):
    """Add to a numeric variable; past `limit` go to `on_limit` (e.g. "ask again up to 3 times")."""

    id: Name = Field(description="Step id, unique in its flow; other steps refer to it.")
    type: Literal["counter"] = Field(description="Step kind: counter.")
    var: Name = Field(description="The counter variable; unset or not a whole number counts as 0.")
    add: int = Field(1, description="Added on every pass (negative to count down).")
    reset: bool = Field(False, description="Set the counter to `add` instead of adding (start a new round).")
    limit: int | None = Field(None, description="When the new value is greater than this, go to on_limit.")
    on_limit: Name | None = Field(None, description="Step taken when the counter went past `limit`.")
    next: Name | None = Field(None, description="Next step; default: the following step.")

    @model_validator(mode="after")
    def _limit_pair(self) -> CounterStep:
        if (self.limit is None) != (self.on_limit is None):
            raise ValueError("limit and on_limit go together")
        return self


class CallStep(Strict):
    """Run another flow as a sub-flow; its `return` step (or its end) comes back to `next`."""

    id: Name = Field(description="Step id, unique in its flow; other steps refer to it.")
    type: Literal["call"] = Field(description="Step kind: call.")
    flow: Name = Field(description="The flow called, entered at its first step; variables are shared.")
    next: Name | None = Field(None, description="Step after the sub-flow returns; default: the following step.")


class ReturnStep(Strict):
    """End a sub-flow: back to the calling step's `next`. In a flow that was not called, the call ends."""

    id: Name = Field(description="Step id, unique in its flow; other steps refer to it.")
    type: Literal["return"] = Field(description="Step kind: return.")
