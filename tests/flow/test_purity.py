"""House rule 1: the flow engine does no I/O and reads no clock."""

from __future__ import annotations

import ast
from pathlib import Path

FLOW = Path(__file__).resolve().parents[2] / "ivr" / "flow"
FORBIDDEN_MODULES = {"asyncio", "aiohttp", "pjsua2", "time", "socket", "subprocess", "threading", "requests"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _modules(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def _clock_calls(tree: ast.AST) -> list[str]:
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in FORBIDDEN_CALLS:
                calls.append(f"{ast.unparse(node.func)} (line {node.lineno})")
    return calls


def test_flow_modules_exist() -> None:
    assert {"session.py", "steps.py", "template.py", "hours.py"} <= {p.name for p in FLOW.glob("*.py")}


def test_no_io_or_clock_imports() -> None:
    for path in sorted(FLOW.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        bad = _modules(tree) & FORBIDDEN_MODULES
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_no_clock_reads() -> None:
    for path in sorted(FLOW.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        assert not _clock_calls(tree), f"{path.name} reads a clock: {_clock_calls(tree)}"


def test_scanner_catches_offenders() -> None:
    tree = ast.parse("import time\nfrom asyncio import sleep\nimport datetime\nx = datetime.datetime.now()\n")
    assert _modules(tree) & FORBIDDEN_MODULES == {"time", "asyncio"}
    assert _clock_calls(tree) == ["datetime.datetime.now (line 4)"]
