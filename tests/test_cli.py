"""The `ivr` command line as operators run it: a subprocess, its output and its exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[1]
IVR = REPO / ".venv" / "bin" / "ivr"
FIXTURES = Path("tests/config")
ENV = {"PATH": "/usr/bin:/bin", "TRUNK_PASSWORD": "hunter2-secret", "CRM_TOKEN": "tok-secret"}


def ivr(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(IVR)] if IVR.exists() else [sys.executable, "-m", "ivr"]
    return subprocess.run([*command, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)


def expected(path: Path) -> list[str]:
    lines = (REPO / path).read_text().splitlines()
    return [line.removeprefix("# expect: ").replace(f"{path.parent.name}/", f"{path.parent}/", 1)
            for line in lines if line.startswith("# expect: ")]


def test_check_a_valid_config_exits_0() -> None:
    result = ivr("check", str(FIXTURES / "good/minimal.yaml"))
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "tests/config/good/minimal.yaml: valid: 0 errors, 0 warnings\n"


def test_check_the_default_config_without_file_checks() -> None:
    result = ivr("check", "--no-file-checks")
    assert result.returncode == 0, result.stdout
    assert "config/ivr.yaml: valid" in result.stderr


def test_check_prints_every_issue_and_exits_2() -> None:
    path = FIXTURES / "bad/unknown_step.yaml"
    result = ivr("check", str(path))
    assert result.returncode == 2
    assert result.stdout.splitlines() == expected(path)
    assert result.stderr == f"{path}: invalid: 3 errors, 2 warnings\n"


def test_warnings_pass_unless_strict() -> None:
    path = FIXTURES / "good/warnings.yaml"
    relaxed, strict = ivr("check", str(path)), ivr("check", "--strict", str(path))
    assert relaxed.returncode == 0 and strict.returncode == 2
    assert relaxed.stdout.splitlines() == strict.stdout.splitlines() == expected(path)
    assert "hunter2-secret" not in relaxed.stdout and "plain-secret" not in relaxed.stdout


def test_check_a_missing_file_exits_2() -> None:
    result = ivr("check", "no/such.yaml")
    assert result.returncode == 2
    assert result.stdout.startswith("no/such.yaml:1: (file): cannot read the file")


def test_schema_is_a_valid_draft_2020_12_schema(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ivr", "schema"], cwd=REPO, capture_output=True, text=True,
                            timeout=60, check=True)
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"trunks", "numbers", "queues", "flows"} <= set(schema["required"])
    assert "in" in schema["$defs"]["Condition"]["properties"]
    out = tmp_path / "schema.json"
    assert ivr("schema", "--output", str(out)).returncode == 0
    assert json.loads(out.read_text()) == schema


def test_version() -> None:
    result = ivr("--version")
    assert result.returncode == 0 and result.stdout.startswith("ivr ")


@pytest.mark.parametrize("name", ["simulate", "run", "front"])
def test_delegated_commands_are_wired(name: str) -> None:
    result = ivr(name, "--help")
    if "not available yet" in result.stderr:
        assert result.returncode == 2
    else:
        assert result.returncode == 0 and result.stdout.startswith(f"usage: ivr {name}")


def test_no_command_is_a_usage_error() -> None:
    result = ivr()
    assert result.returncode == 2 and "usage: ivr" in result.stderr


def test_a_module_that_does_not_exist_yet_is_not_available(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from ivr import cli

    monkeypatch.setattr(cli, "DELEGATED", (*cli.DELEGATED, ("later", "ivr.no_such_module", "coming soon")))
    assert cli.main(["later", "--anything"]) == 2
    assert capsys.readouterr().err == "ivr later: not available yet\n"
    assert cli.main(["check", str(REPO / FIXTURES / "good/minimal.yaml")]) == 0


def test_every_config_field_is_described_in_the_schema() -> None:
    """House rule 12: field descriptions are the operators' documentation."""
    import json

    from ivr.config.model import IvrConfig

    schema = IvrConfig.model_json_schema()
    missing = [f"{model}.{name}" for model, node in schema["$defs"].items()
               for name, prop in node.get("properties", {}).items() if "description" not in prop]
    missing += [name for name, prop in schema["properties"].items() if "description" not in prop]
    assert missing == [], json.dumps(missing)
