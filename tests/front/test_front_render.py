"""Rendering kamailio.cfg and its tables; `kamailio -c` accepts every variant."""

from __future__ import annotations

import argparse
import importlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from front_harness import FRONT_PORT, KAMAILIO, WORKER_BASE, make_config

from ivr.config.model import Registration
from ivr.front.kamailio import memory_flags, render, ua_pattern, uacreg_table, worker_test, workers

ROOT = Path(__file__).resolve().parents[2]
render_cli = importlib.import_module("ivr.front.command")
REG_TRUNK = {"name": "carrier", "sources": ["192.0.2.0/24", "2001:db8::1"],
             "registration": {"registrar": "sip:sip.example.net:5060;transport=udp", "user": "acme",
                              "password": "s3:cr\\et", "expiry": "10m"}}
VARIANTS: dict[str, dict[str, Any]] = {
    "one_worker": {"workers": 1},
    "four_workers": {"workers": 4, "calls_per_worker": 4},
    "tcp_off": {"workers": 2, "transports": ("udp",)},
    "tcp_only": {"workers": 2, "transports": ("tcp",)},
    "registration": {"workers": 2, "trunks": [{"name": "demo", "sources": ["127.0.0.1/32"]}, REG_TRUNK]},
    "no_blocked_agents": {"workers": 2, "front": {"blocked_user_agents": []}},
    "rpc": {"workers": 2, "front": {"rpc_socket": "/tmp/ivr-render-check-rpc.sock"}},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_kamailio_accepts_the_rendered_cfg(name: str, tmp_path: Path) -> None:
    if not Path(KAMAILIO).exists():
        pytest.fail("kamailio not installed: scripts/bootstrap installs it")
    files = render(make_config(**VARIANTS[name]), tmp_path)
    check = subprocess.run([KAMAILIO, "-c", "-f", str(files.cfg)], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stderr[-3000:]


def test_workers_are_numbered_like_the_controller() -> None:
    config = make_config(workers=3)
    assert workers(config) == [("w000", "127.0.0.1", WORKER_BASE), ("w001", "127.0.0.1", WORKER_BASE + 1),
                               ("w002", "127.0.0.1", WORKER_BASE + 2)]


def test_tables(tmp_path: Path) -> None:
    files = render(make_config(**VARIANTS["registration"]), tmp_path)
    rows = [line for line in files.dispatcher.read_text().splitlines() if not line.startswith("#")]
    assert rows == [f"1 sip:127.0.0.1:{WORKER_BASE} 0 2 duid=w000;maxload=2",
                    f"1 sip:127.0.0.1:{WORKER_BASE + 1} 0 1 duid=w001;maxload=2"]
    address = tmp_path / "trunks.address"
    assert [line for line in address.read_text().splitlines() if not line.startswith("#")] == [
        "1 127.0.0.1 32 0 demo", "1 192.0.2.0 24 0 carrier", "1 [2001:db8::1] 128 0 carrier",
        "101 192.0.2.0 24 0 carrier", "101 [2001:db8::1] 128 0 carrier"]  # the Contact's own group
    uacreg = (tmp_path / "dbtext" / "uacreg").read_text().splitlines()[1]
    assert uacreg == ("1:reg-carrier:acme:sip.example.net\\:5060:acme:sip.example.net\\:5060:sip.example.net:acme:"
                      "s3\\:cr\\\\et::sip\\:sip.example.net\\:5060;transport=udp:600:0:0::")
    assert (tmp_path / "dbtext" / "uacreg").stat().st_mode & 0o077 == 0
    cfg = files.cfg.read_text()
    assert f'reg_contact_addr", "127.0.0.1:{FRONT_PORT}"' in cfg and '$rU == "reg-carrier"' in cfg
    assert 'allow_source_address("101")' in cfg and '$avp(trunk) = "carrier"' in cfg
    assert 'modparam("uac", "reg_retry_interval", 60)' in cfg and 'modparam("uac", "reg_timer_interval", 10)' in cfg
    assert "jsonrpcs" not in cfg  # an external front without front.rpc_socket has no RPC
    with_rpc = render(make_config(workers=2, front={"rpc_socket": "/run/ivr-rpc/front.sock"}), tmp_path / "r").cfg
    assert 'modparam("jsonrpcs", "dgram_socket", "/run/ivr-rpc/front.sock")' in with_rpc.read_text()
    assert 'modparam("statistics", "variable", "refused_403_nontrunk")' in cfg
    assert f"{tmp_path.absolute()}/trunks.address" in cfg


def test_cfg_choices(tmp_path: Path) -> None:
    cfg = render(make_config(workers=2, transports=("udp",)), tmp_path).cfg.read_text()
    assert "disable_tcp=yes" in cfg and f"listen=udp:127.0.0.1:{FRONT_PORT}" in cfg and "listen=tcp" not in cfg
    assert "dns=off" in cfg and 'modparam("tm", "fr_timer", 1500)' in cfg
    assert "Retry-After: 17" in cfg and 'ds_select_dst("1", "10")' in cfg and "uac.so" not in cfg
    assert "X-IVR-Front" not in cfg  # only a managed start adds the instance token
    tcp_only = render(make_config(workers=1, transports=("tcp",)), tmp_path / "t").dispatcher.read_text()
    assert ";transport=tcp " in tcp_only


def test_worker_test_is_a_port_range_on_a_node_and_the_dispatcher_list_elsewhere() -> None:
    """A node's workers are one IPv4 address and a port range: request_route and topoh's event route test that
    (no scan of the dispatcher list per message); a tier's nodes (reloadable) and IPv6 workers keep
    ds_is_from_list. The calls in test_front_calls and tests/security prove both tests pick the right side."""
    config = make_config(workers=3)
    last = WORKER_BASE + 2
    assert worker_test(config, "10", "$si", "$sp", "") == f'$si == "127.0.0.1" && $sp >= {WORKER_BASE} && $sp <= {last}'
    assert worker_test(config, "4", "$si", "$sp", "") == 'ds_is_from_list("1", "2")'
    v6 = config.model_copy(update={"sip": config.sip.model_copy(update={"worker_host": "::1"})})
    assert worker_test(v6, "10", "$sndto(ip)", "$sndto(port)", ', "sip:$sndto(ip):$sndto(port)"') == (
        'ds_is_from_list("1", "2", "sip:$sndto(ip):$sndto(port)")')
    assert worker_test(v6, "10", "$si", "$sp", "") == 'ds_is_from_list("1", "2")'


def test_the_node_cfg_tests_workers_by_address_and_port(tmp_path: Path) -> None:
    cfg = render(make_config(workers=3), tmp_path).cfg.read_text()
    assert f'if ($si == "127.0.0.1" && $sp >= {WORKER_BASE} && $sp <= {WORKER_BASE + 2}) {{' in cfg
    assert (f'if ($sndto(ip) == "127.0.0.1" && $sndto(port) >= {WORKER_BASE} && $sndto(port) <= {WORKER_BASE + 2}) {{'
            in cfg)
    assert "ds_is_from_list" not in cfg


def test_user_agent_pattern_is_safe_and_lower_case() -> None:
    assert ua_pattern(("Friendly-Scanner", 'x"y\\z(', "")) == 'friendly-scanner|x.y.z.'


def test_memory_flags_come_from_the_front_config() -> None:
    assert memory_flags(make_config(workers=2)) == ["-m", "256", "-M", "8", "-x", "tlsf"]
    assert memory_flags(make_config(workers=2, front={"shared_memory_mb": 512}))[1] == "512"


def test_cli_renders_the_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IVR_WORKERS", "3")
    parser = argparse.ArgumentParser()
    render_cli.add_arguments(parser)
    args = parser.parse_args(["render", str(ROOT / "config" / "ivr.yaml"), "--out", str(tmp_path),
                              "--base-dir", "/etc/kamailio/ivr"])
    assert render_cli.command(args) == 0
    cfg = (tmp_path / "kamailio.cfg").read_text()
    assert '"/etc/kamailio/ivr/dispatcher.list"' in cfg
    assert len((tmp_path / "dispatcher.list").read_text().splitlines()) == 2 + 3
    assert str(tmp_path / "kamailio.cfg") in capsys.readouterr().out


def test_a_registration_contact_goes_into_its_record() -> None:
    reg = Registration(registrar="sip:sip.example.net", user="acme", password="pw", contact="198.51.100.7:5080")
    row = uacreg_table([("carrier", reg)]).splitlines()[1]
    assert row.endswith(":300:0:0:198.51.100.7\\:5080:")  # contact_addr, then an empty socket
