"""The exceptions of the project: IvrError and ConfigError (with every Issue of a config file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Issue:
    """One problem in a config file, at a line and a dotted path (`flows.main.steps[2].next`)."""

    file: str
    line: int
    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}: {self.path}: {prefix}{self.message}"


class IvrError(Exception):
    """Base of the project's exceptions: start-up and configuration failures, never call-time events."""


class ConfigError(IvrError):
    """A config file is invalid; `issues` holds every error (and the warnings found with them)."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.path, i.message))
        errors = sum(1 for i in self.issues if i.severity == "error")
        first = str(self.issues[0]) if self.issues else "invalid configuration"
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(f"{errors} error(s): {first}{more}")
