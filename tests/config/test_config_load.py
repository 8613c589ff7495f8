"""load_config details the fixtures do not show: env expansion, secrets, positions, the default config."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr.config.load import LoadedConfig, load_config, render_path
from ivr.errors import ConfigError, Issue

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """\
trunks:
  - name: demo
    sources: [127.0.0.1]
numbers:
  "100": main
queues:
  default: {uri: "sip:default@127.0.0.1:5070"}
flows:
  main:
    steps:
      - {id: to_default, type: transfer, queue: default}
"""


def write(tmp_path: Path, text: str, name: str = "ivr.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> LoadedConfig:
    return load_config(write(tmp_path, text), env or {}, check_files=False)


def issues(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return [f"{i.line}: {i.path}: {i.message}" for i in info.value.issues]


def test_the_default_config_is_valid() -> None:
    loaded = load_config(REPO / "config/ivr.yaml", {}, check_files=False)
    assert loaded.warnings == ()
    assert loaded.config.sip.workers == 2
    assert loaded.root == REPO / "config"
    assert loaded.prompts_dir == REPO / "prompts"


def test_env_expansion_gives_the_value_as_written(tmp_path: Path) -> None:
    text = MINIMAL + "sip: {workers: '${WORKERS:-3}', listen_host: '$${NOT_ENV}', media_address: 'x${IP}y'}\n"
    sip = load(tmp_path, text, {"IP": "10.0.0.1"}).config.sip
    assert (sip.workers, sip.listen_host, sip.media_address) == (3, "${NOT_ENV}", "x10.0.0.1y")


def test_env_values_never_become_yaml(tmp_path: Path) -> None:
    text = MINIMAL.replace('sources: [127.0.0.1]', 'sources: ["${SOURCES}"]')
    assert issues(tmp_path, text, {"SOURCES": "[10.0.0.1, 10.0.0.2]"}) == [
        "3: trunks[0].sources[0]: not an IP address or CIDR network: '[10.0.0.1, 10.0.0.2]'"]


def test_yaml_errors_and_model_errors_are_reported_together(tmp_path: Path) -> None:
    text = MINIMAL + "admin: {port: 0, host: '${ADMIN_HOST}'}\nlogging: {level: info, level: debug}\n"
    assert issues(tmp_path, text) == [
        "12: admin.host: environment variable 'ADMIN_HOST' is not set (write ${ADMIN_HOST:-default} to give "
        "a default)",
        "12: admin.port: Input should be greater than or equal to 1",
        "13: logging.level: duplicate key 'level' (first defined at line 13)",
    ]


def test_a_password_is_never_printed(tmp_path: Path) -> None:
    registration = "    registration: {registrar: 'pbx.example', user: u, password: %s}\n"
    text = MINIMAL.replace("    sources: [127.0.0.1]\n", "    sources: [127.0.0.1]\n" + registration)
    for password, env in (("${PW}", {"PW": "registrar"}), ("987654", {}), ("'pbx.example'", {})):
        found = issues(tmp_path, text % password, env)
        assert found and all("987654" not in m for m in found)
        if password != "${PW}":
            assert all("pbx.example" not in m for m in found if "password" in m)


def test_a_password_of_digits_is_never_echoed(tmp_path: Path) -> None:
    registration = "    registration: {registrar: 'sip:p', user: u, password: 987654}\n"
    text = MINIMAL.replace("    sources: [127.0.0.1]\n", "    sources: [127.0.0.1]\n" + registration)
    found = issues(tmp_path, text)
    assert found == ["4: trunks[0].registration.password: expected a string, got ***: put the value in quotes (YAML "
                     "reads yes/no/on/off as booleans and digits as numbers)"]


def test_a_password_from_the_environment_gives_no_warning(tmp_path: Path) -> None:
    registration = "    registration: {registrar: 'sip:p', user: u, password: '%s'}\n"
    text = MINIMAL.replace("    sources: [127.0.0.1]\n", "    sources: [127.0.0.1]\n" + registration)
    text += "front: {mode: external}\n"  # registration needs the front
    assert load(tmp_path, text % "${PW}", {"PW": "x"}).warnings == ()
    assert [w.path for w in load(tmp_path, text % "plain", {}).warnings] == ["trunks[0].registration.password"]


def test_unquoted_yaml_keys_and_dates_keep_their_text(tmp_path: Path) -> None:
    text = MINIMAL.replace('"100": main', "+15550100: main\n  on: main").replace(
        "flows:", "schedules:\n  s: {timezone: UTC, hours: {}, closed_dates: [2026-12-24]}\nflows:")
    config = load(tmp_path, text).config
    assert list(config.numbers) == ["+15550100", "on"]
    assert config.schedules["s"].closed_dates == ("2026-12-24",)


def test_unsupported_tags_are_errors(tmp_path: Path) -> None:
    text = MINIMAL + "prompts_dir: !!python/name:os.system\n"
    assert issues(tmp_path, text) == ["12: prompts_dir: unsupported YAML tag 'tag:yaml.org,2002:python/name:os.system'"]


def test_a_missing_file_is_an_issue(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert [str(i) for i in info.value.issues] == [
        f"{tmp_path / 'nope.yaml'}:1: (file): cannot read the file: No such file or directory"]


def test_a_missing_prompts_dir_is_one_error(tmp_path: Path) -> None:
    text = MINIMAL + "      - {id: p, type: play, prompts: [a, b]}\nprompts_dir: sounds\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {})
    assert [f"{i.line}: {i.message}" for i in info.value.issues if i.severity == "error"] == [
        "13: prompts directory not found: sounds"]


def test_issue_strings() -> None:
    assert str(Issue("a.yaml", 3, "flows.main", "bad")) == "a.yaml:3: flows.main: bad"
    assert str(Issue("a.yaml", 3, "flows.main", "odd", "warning")) == "a.yaml:3: flows.main: warning: odd"
    assert render_path(("numbers", "+1 555", "x")) == 'numbers["+1 555"].x'
    assert render_path(("flows", "main", "steps", 3, "on_error")) == "flows.main.steps[3].on_error"
    assert render_path(()) == "(root)"


def test_the_first_error_is_in_the_exception_text(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"1 error\(s\): .*:1: \(yaml\): the file is empty"):
        load_config(write(tmp_path, ""))


def test_recursive_and_exploding_aliases_are_errors(tmp_path: Path) -> None:
    assert "12: x[0]: aliases that refer to themselves or expand too far" in issues(tmp_path, MINIMAL + "x: &a [*a]\n")
    bomb = "".join(f"b{i}: &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]\n" for i in range(1, 8))
    found = issues(tmp_path, MINIMAL + "b0: &b0 [x]\n" + bomb)
    assert sum(m.endswith("aliases that refer to themselves or expand too far") for m in found) == 1


def test_the_default_config_fixture_is_a_copy_of_the_default_config() -> None:
    original = (REPO / "config/ivr.yaml").read_text()
    original = original.replace("customers: customers.yaml", "customers: ../data/customers.yaml")
    copy = (Path(__file__).parent / "good/default.yaml").read_text()
    assert copy.split("\nsip:\n", 1)[1] == original.split("\nsip:\n", 1)[1], "refresh tests/config/good/default.yaml"
