"""Flow steps: a closed tagged union on `type` (house rule 6), and the flow that holds them."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ivr.config.base import Strict
from ivr.config.jsonpath import jsonpath_hint
from ivr.config.logic_steps import CallStep, CounterStep, ReturnStep
from ivr.config.record_steps import RecordStep
from ivr.config.speech import Prompt, SayStep
from ivr.config.types import Digit, Duration, Name, PromptName

# --- Steps: a closed tagged union (house rule 6) -------------------------------------------------------


class StepBase(Strict):
    id: Name = Field(description="Step id, unique in its flow; other steps refer to it.")


class PlayStep(StepBase):
    type: Literal["play"] = Field(description="Step kind: play.")
    prompts: tuple[Prompt, ...] = Field(min_length=1, description="Prompts played in order.")
    interruptible: bool = Field(True, description="A digit stops the prompt; the digit is kept for the "
                                "next menu or gather (type-ahead).")
    next: Name | None = Field(None, description="Next step; default: the following step in the list.")


class MenuStep(StepBase):
    type: Literal["menu"] = Field(description="Step kind: menu.")
    prompts: tuple[Prompt, ...] = Field(min_length=1, description="The menu's prompts (barge-in on).")
    options: dict[Digit, Name] = Field(min_length=1, description="Digit -> step id.")
    timeout: Duration = Field(5.0, gt=0, description="Wait for a digit after the prompts end.")
    attempts: int = Field(3, ge=1, le=10, description="Tries before on_exhausted.")
    invalid_prompts: tuple[Prompt, ...] = Field((), description="Played after a digit with no option.")
    no_input_prompts: tuple[Prompt, ...] = Field((), description="Played after a timeout.")
    on_exhausted: Name = Field(description="Step taken when the attempts run out.")
    variable: Name | None = Field(None, description="Variable that stores the chosen digit.")


class GatherStep(StepBase):
    type: Literal["gather"] = Field(description="Step kind: gather.")
    prompts: tuple[Prompt, ...] = Field(min_length=1, description="Prompts asking for the digits.")
    variable: Name = Field(description="Variable that receives the digits (terminator excluded).")
    min_digits: int = Field(1, ge=1, le=64, description="Fewest digits accepted.")
    max_digits: int = Field(16, ge=1, le=64, description="Input ends when this many digits are in.")
    terminator: Digit | None = Field("#", description="Digit that ends input early (not stored).")
    first_digit_timeout: Duration = Field(6.0, gt=0, description="Wait for the first digit after the "
                                          "prompts end.")
    inter_digit_timeout: Duration = Field(3.0, gt=0, description="Wait between digits; input ends then.")
    pattern: str | None = Field(None, description="Regular expression the whole input must match.")
    sensitive: bool = Field(False, description="The digits are a secret (PIN, card number): masked in every "
                            "log line, record, webhook and /calls; the variable too, and any set from it.")
    attempts: int = Field(3, ge=1, le=10, description="Tries before on_exhausted.")
    invalid_prompts: tuple[Prompt, ...] = Field((), description="Played after invalid input.")
    no_input_prompts: tuple[Prompt, ...] = Field((), description="Played after no input.")
    next: Name | None = Field(None, description="Step after valid input; default: the following step.")
    on_exhausted: Name = Field(description="Step taken when the attempts run out.")

    @model_validator(mode="after")
    def _digits_and_pattern(self) -> GatherStep:
        if self.min_digits > self.max_digits:
            raise ValueError("min_digits is greater than max_digits")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        return self


class Filler(Strict):
    after: Duration = Field(0.8, description="Start the filler when the fetch has not answered by then.")
    prompts: tuple[PromptName, ...] = Field(min_length=1, description="Prompts looped until the answer.")


class FetchStep(StepBase):
    type: Literal["fetch"] = Field(description="Step kind: fetch.")
    endpoint: Name = Field(description="A key of `http`.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field("GET", description="HTTP method.")
    path: str = Field(description="Path template appended to the endpoint's base URL, e.g. "
                      "/customers?phone={{caller}} or /accounts/{{account}}; values are URL-escaped.")
    query: dict[str, str] = Field(default_factory=dict, description="Query parameters (templates).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers (templates).")
    body: dict[str, object] | None = Field(None, description="JSON body; string leaves are templates.")
    map: dict[Name, str] = Field(default_factory=dict, description="Variable -> JMESPath expression on the "
                                 "JSON response, e.g. tier: data[0].loyalty.tier.")
    required: tuple[Name, ...] = Field((), description="Mapped variables that must be present; a missing "
                                       "one sends the call to on_error (reason missing_field).")
    timeout: Duration | None = Field(None, gt=0, le=30, description="Latency budget of this step; default: "
                                     "the endpoint's timeout.")
    filler: Filler | None = Field(None, description="'One moment' prompts if the answer is slow.")
    next: Name | None = Field(None, description="Step after success; default: the following step.")
    on_error: Name = Field(description="Step taken on timeout, refusal, 4xx/5xx, invalid JSON, open "
                           "circuit or a missing required field.")

    @field_validator("map")
    @classmethod
    def _compiles(cls, value: dict[str, str]) -> dict[str, str]:
        import jmespath
        from jmespath.exceptions import JMESPathError

        for var, expr in value.items():
            hint = jsonpath_hint(expr)
            if hint is not None:
                raise ValueError(f"{var}: {expr!r} is JSONPath; maps are JMESPath: write {hint!r}")
            try:
                jmespath.compile(expr)
            except JMESPathError as exc:
                raise ValueError(f"{var}: invalid JMESPath {expr!r}: {exc}") from exc
        return value


class Condition(Strict):
    var: Name | None = Field(None, description="The variable tested (or `switch`).")
    switch: Name | None = Field(None, description="A run-time switch (a key of `switches`, flipped with POST "
                                "/switches/<name>) tested instead of a variable: true when it is on (with "
                                "`on: false`, when it is off).")
    on: bool = Field(True, description="With `switch`: the state that makes the condition true.")
    equals: str | None = Field(None, description="True when the variable equals this string.")
    eq: float | None = Field(None, description="True when the variable is a number equal to this one "
                             "('3', '3.0' and ' 3' all equal 3).")
    gt: float | None = Field(None, description="True when the variable is a number greater than this.")
    ge: float | None = Field(None, description="True when the variable is a number greater than or equal.")
    lt: float | None = Field(None, description="True when the variable is a number less than this.")
    le: float | None = Field(None, description="True when the variable is a number less than or equal.")
    in_: tuple[str, ...] | None = Field(None, alias="in", description="True when the variable is one of "
                                        "these.")
    exists: bool | None = Field(None, description="True when the variable is set and non-empty (or, with "
                                "false, when it is not).")
    matches: str | None = Field(None, description="True when the regular expression matches the whole "
                                "value.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one_test(self) -> Condition:
        tests = [t for t in (self.equals, self.in_, self.exists, self.matches, self.eq, self.gt, self.ge,
                             self.lt, self.le) if t is not None]
        if self.switch is not None:
            if self.var is not None or tests:
                raise ValueError("a switch condition has only `switch` and `on` (no var, no test)")
            return self
        if self.var is None:
            raise ValueError("a condition needs `var` (or `switch`)")
        if len(tests) != 1:
            raise ValueError("a condition has exactly one of: equals, in, exists, matches, eq, gt, ge, lt, le")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"matches is not a valid regular expression: {exc}") from exc
        return self


class BranchCase(Strict):
    when: Condition | tuple[Condition, ...] = Field(description="A condition, or a list that must all hold.")
    goto: Name = Field(description="Step taken when it holds.")


class BranchStep(StepBase):
    type: Literal["branch"] = Field(description="Step kind: branch.")
    cases: tuple[BranchCase, ...] = Field(min_length=1, description="Tested in order; the first that "
                                          "holds wins.")
    default: Name = Field(description="Step taken when no case holds.")


class HoursStep(StepBase):
    type: Literal["hours"] = Field(description="Step kind: hours.")
    schedule: Name = Field(description="A key of `schedules`.")
    open: Name = Field(description="Step taken during opening hours.")
    closed: Name = Field(description="Step taken outside them, on holidays and closed dates.")


class SetStep(StepBase):
    type: Literal["set"] = Field(description="Step kind: set.")
    values: dict[Name, str] = Field(min_length=1, description="Variable -> template.")
    next: Name | None = Field(None, description="Next step; default: the following step.")


class TransferStep(StepBase):
    type: Literal["transfer"] = Field(description="Step kind: transfer.")
    queue: Name = Field(description="A key of `queues`: its targets, strategy, allow-list and headers.")
    target: str | None = Field(None, description="A target built from variables, tried before the queue's own "
                               "targets, e.g. 'sip:{{account_manager_user}}@pbx.example.com' or "
                               "'{{account_manager_sip}}'; only used when it renders to a SIP URI inside the "
                               "queue's `allow` patterns, skipped (and logged) otherwise.")
    notify_timeout: Duration = Field(10.0, gt=0, description="The transfer fails if no final NOTIFY "
                                     "arrives by then.")
    ring_timeout: Duration = Field(20.0, gt=0, description="Bridged transfer (a trunk with `refer: false`): "
                                   "how long the queue's target may ring before the step fails (no_answer).")
    on_fail: Name | None = Field(None, description="Step taken when every target failed (REFER rejected, final "
                                 "NOTIFY >= 300, or none in time; a variable target outside the allow-list; "
                                 "bridged, for a trunk with `refer: false`: busy, no answer, any failure of the "
                                 "leg); none: hang up.")


class HangupStep(StepBase):
    type: Literal["hangup"] = Field(description="Step kind: hangup.")
    prompts: tuple[Prompt, ...] = Field((), description="Played (not interruptible) before hanging up.")
    reason: str = Field("flow_hangup", description="End reason recorded in the call's log line.")


class GotoStep(StepBase):
    type: Literal["goto"] = Field(description="Step kind: goto.")
    step: Name | None = Field(None, description="A step of the same flow.")
    flow: Name | None = Field(None, description="Another flow, entered at its first step.")

    @model_validator(mode="after")
    def _one_target(self) -> GotoStep:
        if (self.step is None) == (self.flow is None):
            raise ValueError("goto needs exactly one of: step, flow")
        return self


Step = Annotated[
    PlayStep | MenuStep | GatherStep | FetchStep | BranchStep | HoursStep | SetStep | TransferStep
    | HangupStep | GotoStep
    | CounterStep | CallStep | ReturnStep
    | RecordStep | SayStep,
    Field(discriminator="type"),
]


class Flow(Strict):
    description: str = Field("", description="What the flow is for.")
    steps: tuple[Step, ...] = Field(min_length=1, description="Steps; the first is the entry.")
    hotkeys: dict[Digit, Name] = Field(default_factory=dict, description="Digit -> step of this flow, taken from "
                                       "any play, menu or fetch of the flow (\"0 for a person\" anywhere); a "
                                       "menu's own option for the digit wins; gather, record and transfer "
                                       "steps keep their digits.")
