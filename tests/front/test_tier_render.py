"""The tier (ivr/front/tier.py): the front's template rendered over nodes; `kamailio -c` accepts it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from front_harness import KAMAILIO, make_config

from ivr.config.model import IvrConfig
from ivr.config.tier import TierConfig
from ivr.front.kamailio import render
from ivr.front.tier import NoTier, tier_view

NODES = [{"name": "n1", "address": "127.0.12.11:5060"}, {"name": "n2", "address": "127.0.12.12:5070"}]


def tier_config(**tier: object) -> IvrConfig:
    base = make_config(workers=2)
    section = TierConfig.model_validate({"listen_host": "127.0.12.10", "listen_port": 5080, "nodes": NODES, **tier})
    return base.model_copy(update={"tier": section})


@pytest.mark.parametrize("algorithm,number", [("round_robin", "4"), ("hash_callid", "0"), ("priority", "8")])
def test_tier_cfg_dispatches_over_the_nodes_and_kamailio_accepts_it(algorithm: str, number: str,
                                                                      tmp_path: Path) -> None:
    files = render(tier_view(tier_config(algorithm=algorithm, probe_interval=3)), tmp_path, tier=True)
    rows = [line for line in files.dispatcher.read_text().splitlines() if not line.startswith("#")]
    assert rows == ["1 sip:127.0.12.11:5060 0 2 duid=n1", "1 sip:127.0.12.12:5070 0 1 duid=n2"]
    cfg = files.cfg.read_text()
    assert f'ds_select_dst("1", "{number}")' in cfg
    assert "listen=udp:127.0.12.10:5080" in cfg and "listen=tcp:127.0.12.10:5080" in cfg
    assert 'modparam("dispatcher", "ds_ping_interval", 3)' in cfg
    assert "ds_load_update()" not in cfg and "ds_load_unset()" not in cfg  # no call-load records to keep
    check = subprocess.run([KAMAILIO, "-c", "-f", str(files.cfg)], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stderr[-3000:]


def test_a_node_front_keeps_call_load_and_answers_503_while_draining(tmp_path: Path) -> None:
    cfg = render(make_config(workers=2), tmp_path).cfg.read_text()
    assert 'ds_select_dst("1", "10")' in cfg
    assert cfg.count("ds_load_update();") == 3 and cfg.count("ds_load_unset();") == 2  # CANCEL, BYE, 2xx; failures
    assert 'modparam("pv", "shvset", "draining=i:0")' in cfg
    dispatch = cfg[cfg.index("route[DISPATCH]"):]
    assert dispatch.index("$shv(draining) == 1") < dispatch.index("ds_select_dst")


def test_a_config_without_tier_section_is_refused() -> None:
    with pytest.raises(NoTier):
        tier_view(make_config(workers=2))
