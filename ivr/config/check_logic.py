"""Cross-checks of the richer logic: hotkey targets, switch names, sub-flow calls, return steps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from ivr.config.logic_steps import CallStep, ReturnStep
from ivr.config.model import IvrConfig
from ivr.config.steps import BranchStep, Condition

if TYPE_CHECKING:
    from ivr.config.load import YamlPath

Severity = Literal["error", "warning"]


def called_flows(config: IvrConfig) -> set[str]:
    """Flows some `call` step enters as a sub-flow."""
    return {step.flow for flow in config.flows.values() for step in flow.steps if isinstance(step, CallStep)}


def _conditions(step: BranchStep, path: YamlPath) -> Iterator[tuple[YamlPath, Condition]]:
    for i, case in enumerate(step.cases):
        if isinstance(case.when, Condition):
            yield path + ("cases", i, "when"), case.when
        else:
            for j, cond in enumerate(case.when):
                yield path + ("cases", i, "when", j), cond


def logic_issues(config: IvrConfig) -> Iterator[tuple[YamlPath, str, Severity]]:
    """Problems of hotkeys, switch conditions, and return steps outside sub-flows."""
    called = called_flows(config)
    switches = ", ".join(sorted(config.switches)) or "none defined"
    for name, flow in config.flows.items():
        ids = {step.id for step in flow.steps}
        for digit, target in flow.hotkeys.items():
            if target not in ids:
                yield ("flows", name, "hotkeys", digit), f"hotkey '{digit}': unknown step '{target}' in flow " \
                    f"'{name}'", "error"
        for i, step in enumerate(flow.steps):
            path: YamlPath = ("flows", name, "steps", i)
            if isinstance(step, ReturnStep) and name not in called:
                yield path, f"return in flow '{name}', which no call step enters: the call would end " \
                    "(flow_end)", "warning"
            if isinstance(step, BranchStep):
                for where, cond in _conditions(step, path):
                    if cond.switch is not None and cond.switch not in config.switches:
                        yield where + ("switch",), f"unknown switch '{cond.switch}' (known: {switches}); " \
                            "declare it under `switches` with its start state", "error"
