"""`ivr simulate` on the default config: offline fixtures for determinism, then the real demo CRM."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from recordkit import hung_up, transferred

from ivr.prompts import wav_seconds
from ivr.sim_fixtures import load_fixtures
from ivr.simulate import Scenario, SimResult, add_arguments, command

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "ivr.yaml"
MONDAY = "2026-03-02T10:00:00+00:00"


def customer(cid: str, tier: str | None) -> dict[str, Any]:
    return {"data": [{"id": cid, "loyalty": {"tier": tier}, "account_manager": None}]}


def phone(number: str, body: Any, **extra: Any) -> dict[str, Any]:
    return {"endpoint": "crm", "method": "GET", "path": "/api/v1/customers", "query": {"phone": number},
            "status": 200, "body": body, "delay_ms": 20} | extra


CRM = [
    phone("+15551000001", customer("C-1001", "gold")),
    phone("+15552000001", customer("C-2001", "platinum")),
    phone("+15553000001", customer("C-3001", "silver")),
    {"endpoint": "crm", "path": "/api/v1/customers", "query": {"account": "100001"},
     "body": customer("C-1001", "gold"), "delay_ms": 30},
    {"endpoint": "crm", "path": "/api/v1/customers", "body": {"data": []}, "delay_ms": 25},
]


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str, fixtures: list[Any] | None = None,
        as_json: bool = True) -> tuple[int, Any]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    extra = ["--json"] if as_json else []
    if fixtures is not None:
        path = tmp_path / "fixtures.yaml"
        path.write_text(yaml.safe_dump(fixtures))
        extra += ["--http-fixtures", str(path)]
    code = command(parser.parse_args([*argv, *extra]))
    out = capsys.readouterr().out
    return code, json.loads(out) if as_json and code == 0 else out


@pytest.mark.parametrize(("caller", "digits", "queue"), [
    ("+15551000001", "", "gold"),
    ("+15552000001", "", "platinum"),
    ("+15553000001", "", "default"),
    ("+15559999999", "100001#", "gold"),
    ("+15559999999", "0", "default"),
])
def test_default_config_routes_with_fixtures(tmp_path: Path, capsys: pytest.CaptureFixture[str], caller: str,
                                             digits: str, queue: str) -> None:
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "100", "--from", caller, "--digits", digits,
                    "--at", MONDAY, fixtures=CRM)
    assert code == 0
    assert out["outcome"] == transferred(queue, f"sip:{queue}@127.0.0.1:5070")
    assert out["path"][-1] == f"to_{queue}:ok"
    assert out["completed"] is True and out["timeline"]


def test_unknown_caller_account_path_and_variables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "100", "--from", "+15559999999", "--digits",
                    "100001#", "--at", MONDAY, fixtures=CRM)
    assert out["path"] == ["greet:played", "lookup_phone:ok", "known_by_phone:ask_account", "ask_account:ok",
                           "wants_person:lookup_account", "lookup_account:ok", "known_by_account:crm_language",
        "crm_language:greet_by_name",
                           "greet_by_name:route_by_tier", "route_by_tier:to_gold", "to_gold:ok"]
    assert out["variables"] == {"account": "100001", "customer_id": "C-1001", "tier": "gold"}
    assert [e["digit"] for e in out["timeline"] if e["kind"] == "digit"] == list("100001#")


@pytest.mark.parametrize("failure", [{"fail": "timeout"}, {"fail": "connect_error"}, {"status": 503},
                                     {"delay_ms": 5000}])
def test_failing_crm_goes_to_default(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     failure: dict[str, Any]) -> None:
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "100", "--from", "+15551000001", "--at", MONDAY,
                    fixtures=[{"endpoint": "crm"} | failure])
    assert code == 0
    assert out["outcome"]["queue"] == "default"
    assert out["path"][1].startswith("lookup_phone:") and out["path"][1] != "lookup_phone:ok"
    assert out["record"]["variables"]["last_error"]


def test_slow_crm_plays_filler_then_stops_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slow = [phone("+15551000001", customer("C-1001", "gold"), delay_ms=1200)]
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "100", "--from", "+15551000001", "--at", MONDAY,
                    fixtures=slow)
    kinds = [(e["kind"], e.get("prompts")) for e in out["timeline"]]
    assert ("play", ["one_moment"]) in kinds and ("stop", None) in kinds
    assert out["outcome"]["queue"] == "gold"


def test_rejected_transfer_falls_back_to_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "100", "--from", "+15551000001", "--at", MONDAY,
                    fixtures=[*CRM, {"transfer": "gold", "result": 603}])
    assert out["path"][-3:] == ["to_gold:rejected_603", "sorry:played", "to_default:ok"]
    assert out["outcome"]["queue"] == "default"


def test_no_queue_available_hangs_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "100", "--from", "+15553000001", "--at", MONDAY,
                    fixtures=[*CRM, {"transfer": "default", "result": "no_notify"}])
    assert code == 0 and out["outcome"] == hung_up("no_queue_available")
    assert out["path"][-2:] == ["to_default:no_notify", "give_up:hangup"]


def test_support_menu_and_closed_hours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "200", "--from", "+15553000001", "--digits", ".2",
                    "--at", MONDAY, fixtures=[])
    assert out["outcome"]["queue"] == "support"
    assert out["path"] == ["check_hours:open", "main_menu:no_input", "main_menu:2", "to_support:ok"]
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "200", "--from", "+15553000001",
                    "--at", "2026-12-24T18:30:00+01:00", fixtures=[])
    assert code == 0 and out["outcome"] == hung_up("closed")


def test_readable_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(tmp_path, capsys, str(CONFIG), "--to", "100", "--from", "+15551000001", "--at", MONDAY,
                    fixtures=CRM, as_json=False)
    assert code == 0
    assert "greet: play welcome" in out and "HTTP 200 in 20 ms" in out and "set customer_id=C-1001" in out
    assert 'outcome: {"kind": "transfer", "reason": "transferred", "queue": "gold"' in out


def test_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trunks: []\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert command(parser.parse_args([str(bad), "--to", "1", "--from", "2"])) == 2
    assert command(parser.parse_args([str(CONFIG), "--to", "1", "--from", "2", "--trunk", "nope"])) == 2
    assert command(parser.parse_args([str(CONFIG), "--to", "1", "--from", "2", "--at", "yesterday"])) == 2
    fixtures = tmp_path / "f.yaml"
    fixtures.write_text("- {endpoint: crm, fail: maybe}\n")
    with pytest.raises(ValueError, match="fixture"):
        load_fixtures(fixtures)


def test_wav_seconds(tmp_path: Path) -> None:
    assert wav_seconds(tmp_path / "missing.wav") == 1.0
    assert 2.0 < wav_seconds(ROOT / "prompts" / "welcome.wav") < 2.5


# --- the real demo CRM, in-process ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _real(caller: str, digits: str = "", *, crm_up: bool = True, transfers: tuple[Any, ...] = ()) -> SimResult:
    pytest.importorskip("ivr.democrm")
    pytest.importorskip("ivr.crm")
    from ivr.config.load import load_config
    from ivr.flow.session import CallInfo
    from ivr.simulate import _run, parse_at

    loaded = load_config(CONFIG)
    port = _free_port()
    config = loaded.config
    crm = config.http["crm"].model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
    demo = config.demo_crm.model_copy(update={"port": port, "enabled": crm_up})
    config = config.model_copy(update={"demo_crm": demo,
                                       "http": {"crm": crm}})
    call = CallInfo("sim", caller, "100", "demo")
    scenario = Scenario(config, "vip_routing", call, parse_at(MONDAY), digits, loaded.prompts_dir, transfers)
    return asyncio.run(_run(scenario, None, loaded.root))


@pytest.mark.parametrize(("caller", "digits", "queue", "uri"), [
    ("+15551000001", "", "account_managers", "sip:grace.hopper@127.0.0.1:5070"),  # gold with a manager
    ("+15551000002", "", "gold", "sip:gold@127.0.0.1:5070"),                      # gold without one
    ("+15551000003", "", "gold", "sip:gold@127.0.0.1:5070"),                      # manager outside the allow-list
    ("+15552000001", "", "platinum", "sip:platinum@127.0.0.1:5070"),
    ("+15553000001", "", "default", "sip:default@127.0.0.1:5070"),
    ("+15559999999", "100001#", "account_managers", "sip:grace.hopper@127.0.0.1:5070"),
])
def test_real_demo_crm(caller: str, digits: str, queue: str, uri: str) -> None:
    result = _real(caller, digits)
    assert result.completed
    assert result.record.as_dict()["outcome"] == transferred(queue, uri)


def test_manager_outside_the_allow_list_is_logged_with_the_reason() -> None:
    transfers = _real("+15551000003", "").record.transfers
    assert [(t.queue, t.uri, t.result) for t in transfers] == [
        ("account_managers", "sip:annie.easley@pbx.partner.example", "disallowed"),
        ("gold", "sip:gold@127.0.0.1:5070", "ok")]


def test_refusing_manager_ends_in_the_gold_queue(tmp_path: Path) -> None:
    fixtures = tmp_path / "f.yaml"
    fixtures.write_text("- {transfer: account_managers, uri: 'sip:grace.hopper@', result: 603}\n")
    record = _real("+15551000001", transfers=load_fixtures(fixtures).transfers).record
    assert record.as_dict()["outcome"] == transferred("gold", "sip:gold@127.0.0.1:5070")
    assert "to_manager:rejected_603" in record.path


def test_real_crm_down_goes_to_default() -> None:
    result = _real("+15551000001", crm_up=False)
    assert result.record.as_dict()["outcome"] == transferred("default", "sip:default@127.0.0.1:5070")
    assert result.record.as_dict()["path"][1] == "lookup_phone:connect_error"  # type: ignore[index]


def test_a_sensitive_gather_is_masked_in_the_timeline_and_record(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = yaml.safe_load((ROOT / "tests" / "config" / "good" / "minimal.yaml").read_text())
    cfg["prompts_dir"] = str(ROOT / "prompts")
    cfg["flows"]["main"]["steps"][0] = {"id": "ask_pin", "type": "gather", "prompts": ["enter_account"],
                                        "variable": "code", "sensitive": True, "on_exhausted": "to_default"}
    path = tmp_path / "pin.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out = run(tmp_path, capsys, str(path), "--to", "100", "--from", "+15551234", "--digits", "908172#")
    assert code == 0 and out["outcome"] == transferred("default", "sip:default@127.0.0.1:5070")
    assert "908172" not in json.dumps(out)
    assert [e["text"] for e in out["timeline"] if e["kind"] == "digit"][:2] == ["caller presses *"] * 2


QUEUES = Path(__file__).parent / "config" / "good" / "queues.yaml"


def _targets(out: Any) -> list[tuple[str, str]]:
    return [(t["queue"], t["uri"]) for t in out["record"]["transfers"]]


def test_simulate_shows_the_chosen_target_and_the_failover(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = [{"transfer": "managers", "result": 486}, {"transfer": "agents", "uri": "sip:agent2@", "result": 603}]
    code, out = run(tmp_path, capsys, str(QUEUES), "--to", "100", "--from", "+15550001", "--ticket", "1",
                    fixtures=fixtures)
    assert code == 0
    assert _targets(out) == [("managers", "sip:grace@pbx.example.com"), ("agents", "sip:agent2@pbx.example.com"),
                             ("agents", "sip:agent1@pbx.example.com")]  # ticket 1: round robin starts at agent2
    refers = [e["text"] for e in out["timeline"] if e["kind"] == "transfer"]
    assert refers[1] == "to_agents: REFER to agents <sip:agent2@pbx.example.com?X-Customer-Id=C-1>"
    code, text = run(tmp_path, capsys, str(QUEUES), "--to", "100", "--from", "+15550001", fixtures=fixtures,
                     as_json=False)
    assert "transfer target: managers sip:grace@pbx.example.com -> rejected_486" in text
    assert "transfer target: agents sip:agent1@pbx.example.com -> ok" in text


def test_simulate_random_strategy_follows_the_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = [{"transfer": q, "result": 603} for q in ("managers", "agents", "weighted")]
    firsts = set()
    for seed in range(12):
        code, out = run(tmp_path, capsys, str(QUEUES), "--to", "100", "--from", "+1", "--seed", str(seed),
                        fixtures=fixtures)
        spread = [uri for queue, uri in _targets(out) if queue == "spread"]
        again = run(tmp_path, capsys, str(QUEUES), "--to", "100", "--from", "+1", "--seed", str(seed),
                    fixtures=fixtures)[1]
        assert [uri for queue, uri in _targets(again) if queue == "spread"] == spread
        firsts.add(spread[0])
    assert firsts == {"sip:a@pbx.example.com", "sip:b@pbx.example.com"}
