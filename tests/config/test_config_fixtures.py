"""Every fixture in tests/config/good and tests/config/bad loads with exactly the issues its `# expect:` lines name.

A fixture is a config file whose first line says what it shows, followed by one `# expect: DIR/FILE:LINE: PATH:
MESSAGE` line per issue (errors and warnings, in line order). Adding a fixture needs no code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config.load import load_config
from ivr.errors import ConfigError, Issue

HERE = Path(__file__).parent
ENV = {"TRUNK_PASSWORD": "hunter2-secret", "CRM_TOKEN": "tok-secret"}
GOOD = sorted((HERE / "good").glob("*.yaml"))
BAD = sorted((HERE / "bad").glob("*.yaml"))


def expected(path: Path) -> list[str]:
    prefix = "# expect: "
    return [line[len(prefix):] for line in path.read_text().splitlines() if line.startswith(prefix)]


def rendered(issues: tuple[Issue, ...] | list[Issue], path: Path) -> list[str]:
    assert all(i.file == str(path) for i in issues)
    return [str(i).replace(str(path), f"{path.parent.name}/{path.name}", 1) for i in issues]


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_fixture_loads_with_only_the_expected_warnings(path: Path) -> None:
    loaded = load_config(path, ENV)
    assert rendered(loaded.warnings, path) == expected(path)
    assert all(w.severity == "warning" for w in loaded.warnings)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_fixture_reports_exactly_the_expected_issues(path: Path) -> None:
    assert expected(path), f"{path.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV)
    assert rendered(info.value.issues, path) == expected(path)
    assert any(i.severity == "error" for i in info.value.issues)


def test_there_are_enough_fixtures() -> None:
    assert len(BAD) >= 20
    assert {"default.yaml", "minimal.yaml", "every_step.yaml"} <= {p.name for p in GOOD}


@pytest.mark.parametrize("path", GOOD + BAD, ids=lambda p: p.name)
def test_no_message_prints_a_secret(path: Path) -> None:
    try:
        issues = list(load_config(path, ENV).warnings)
    except ConfigError as exc:
        issues = exc.issues
    for issue in issues:
        for secret in (*ENV.values(), "plain-secret", "plain-token"):
            assert secret not in str(issue)
