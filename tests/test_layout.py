"""House rules that can be checked mechanically: where pjsua2 may be imported, module sizes, the layout."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ivr"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_sip_workers_import_pjsua2() -> None:
    offenders = [p.relative_to(ROOT) for p in PACKAGE.rglob("*.py")
                 if "pjsua2" in _imports(p) and p.parent.name != "sip"]
    assert offenders == []


def test_no_grab_bag_modules() -> None:
    assert [p for p in PACKAGE.rglob("*.py") if p.stem in {"utils", "helpers", "misc", "common"}] == []


def test_modules_stay_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert big == {}


def test_top_level_layout() -> None:
    for name in ("ivr", "config", "prompts", "tests", "sipp-scenarios", "pyproject.toml", "docker-compose.yml",
                 "README.md", ".ci/run"):
        assert (ROOT / name).exists(), name
