"""The reason the product exists, end to end: the default VIP flow with the built-in demo CRM, over real SIP.
Gold and platinum customers reach their own queues; everyone else, unknown callers who give no valid account,
a CRM that is down and a CRM slower than its budget all reach the default queue, never silence."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import IvrServer, free_port
from recordkit import transferred
from sippkit import SippRun, sipp

pytestmark = pytest.mark.sip


def vip_call(server: IvrServer, workdir: Path, tag: str, caller: str, queue: str, digits: str = "") -> dict[str, Any]:
    run = sipp(server.sip_port, "dtmf_info_refer.xml", service="100", tag=tag, workdir=workdir,
               variables={"caller": caller, "digits": digits, "expected_refer": f"sip:{queue}@{QUEUE_HOST}"})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    return server.call_ended(f"{tag}-")


@pytest.mark.parametrize(("caller", "queue", "tier"), [
    ("+15551000002", "gold", "gold"),  # +15551000001 has an account manager (test_queues.py)
    ("+15552000001", "platinum", "platinum"),
    ("+15553000001", "default", "silver"),
])
def test_known_callers_are_routed_by_tier(server: IvrServer, workdir: Path, caller: str, queue: str,
                                          tier: str) -> None:
    line = vip_call(server, workdir, f"tier-{queue}", caller, queue)
    assert line["outcome"] == transferred(queue, f"sip:{queue}@{QUEUE_HOST}")
    assert line["variables"]["tier"] == tier
    assert line["fetches"][0]["outcome"] == "ok"


def test_unknown_number_then_account_number_reaches_the_gold_queue(server: IvrServer, workdir: Path) -> None:
    line = vip_call(server, workdir, "account", "+15559990001", "gold", digits="100002#")
    path = line["path"]
    assert "known_by_phone:ask_account" in path
    assert line["variables"]["account"] == "100002"
    assert [f["step"] for f in line["fetches"]] == ["lookup_phone", "lookup_account"]


def test_unknown_number_and_unknown_account_reach_the_default_queue(server: IvrServer, workdir: Path) -> None:
    line = vip_call(server, workdir, "noaccount", "+15559990002", "default", digits="999999#")
    assert "not_found:played" in line["path"]


def test_press_zero_for_a_person(server: IvrServer, workdir: Path) -> None:
    line = vip_call(server, workdir, "person", "+15559990003", "default", digits="0#")
    assert "wants_person:to_default" in line["path"]


def _demo_behaviour(server: IvrServer, body: dict[str, object]) -> None:
    url = f"http://127.0.0.1:{server.config['demo_crm']['port']}/_demo/behaviour"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def test_crm_slower_than_its_budget_still_reaches_the_default_queue(server: IvrServer, workdir: Path) -> None:
    _demo_behaviour(server, {"latency_ms": 4000})
    try:
        line = vip_call(server, workdir, "slowcrm", "+15551000004", "default")  # a gold caller, not yet cached
    finally:
        _demo_behaviour(server, {})
    fetch = line["fetches"][0]
    assert fetch["outcome"] == "failed" and fetch["reason"] == "timeout"
    budget_ms = 1500
    assert fetch["elapsed_ms"] < budget_ms + 1000  # the budget held (loosely: this machine is shared)
    assert line["outcome"]["queue"] == "default"


@pytest.fixture(scope="module")
def server_without_crm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrServer]:
    """A server whose CRM endpoint points at a port nobody listens on."""
    srv = start_server(e2e_config(crm_url=f"http://127.0.0.1:{free_port()}"), tmp_path_factory.mktemp("nocrm"))
    yield srv
    srv.stop()


def test_crm_down_reaches_the_default_queue(server_without_crm: IvrServer, workdir: Path) -> None:
    line = vip_call(server_without_crm, workdir, "crmdown", "+15551000002", "default")
    fetch = line["fetches"][0]
    assert (fetch["outcome"], fetch["reason"]) == ("failed", "connect_error")
    assert line["variables"]["last_error"] == "connect_error"
