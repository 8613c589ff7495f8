"""Richer logic over real SIP: three unknown accounts end in the default queue via a counter, the order count
routes on `gt`, and an operator flips the outage switch on the admin API while the server runs."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import IvrServer
from sippkit import SippRun, sipp

pytestmark = pytest.mark.sip

TOKEN = "test-admin-token-0123456789"
ORDERS_FLOW: dict[str, Any] = {
    "description": "The Bird seed: frequent buyers (more than 10 orders, per the CRM) reach the gold queue.",
    "steps": [
        {"id": "greet", "type": "play", "prompts": ["welcome"]},
        {"id": "lookup", "type": "fetch", "endpoint": "crm", "path": "/api/v1/customers",
         "query": {"phone": "{{caller}}"}, "map": {"orders": "data[0].orders"}, "on_error": "to_default"},
        {"id": "route", "type": "branch", "cases": [{"when": {"var": "orders", "gt": 10}, "goto": "to_gold"}],
         "default": "to_default"},
        {"id": "to_gold", "type": "transfer", "queue": "gold", "on_fail": "to_default"},
        {"id": "to_default", "type": "transfer", "queue": "default"}]}


@pytest.fixture(scope="module")
def logic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrServer]:
    cfg = e2e_config()
    cfg["admin"]["token_env"] = "IVR_TEST_ADMIN_TOKEN"
    os.environ["IVR_TEST_ADMIN_TOKEN"] = TOKEN  # the server inherits the environment
    cfg["flows"]["orders"] = ORDERS_FLOW
    cfg["numbers"]["600"] = "orders"
    srv = start_server(cfg, tmp_path_factory.mktemp("logic"))
    yield srv
    srv.stop()


def place(server: IvrServer, workdir: Path, tag: str, service: str, caller: str, queue: str,
          digits: str = "") -> dict[str, Any]:
    run = sipp(server.sip_port, "dtmf_info_refer.xml", service=service, tag=tag, workdir=workdir,
               variables={"caller": caller, "digits": digits, "expected_refer": f"sip:{queue}@{QUEUE_HOST}"})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    return server.call_ended(f"{tag}-")


def admin(server: IvrServer, method: str, path: str, body: object = None,
          token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{server.config['admin']['port']}{path}"
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:  # the admin auth middleware answers 401 in plain text
            return exc.code, {"text": body.decode(errors="replace")}


def test_three_unknown_account_numbers_end_in_the_default_queue(logic_server: IvrServer, workdir: Path) -> None:
    line = place(logic_server, workdir, "misses", "100", "+15559990011", "default",
                 digits="111111#222222#333333#")
    assert line["variables"]["account_misses"] == "3"
    assert [p for p in line["path"] if p.startswith("count_misses:")] == [
        "count_misses:1", "count_misses:2", "count_misses:limit"]
    assert [f["step"] for f in line["fetches"]] == ["lookup_phone"] + ["lookup_account"] * 3


@pytest.mark.parametrize(("caller", "queue", "orders"), [("+15553000003", "gold", "12"),
                                                          ("+15553000005", "default", "3"),
                                                          ("+15553000001", "default", None)])
def test_order_count_routes_on_gt(logic_server: IvrServer, workdir: Path, caller: str, queue: str,
                                  orders: str | None) -> None:
    line = place(logic_server, workdir, f"orders-{queue}-{caller[-1]}", "600", caller, queue)
    assert line["variables"].get("orders") == orders
    assert line["outcome"]["queue"] == queue


def test_operator_flips_the_outage_switch(logic_server: IvrServer, workdir: Path) -> None:
    assert admin(logic_server, "GET", "/switches") == (200, {"switches": {"outage": False}})
    assert admin(logic_server, "POST", "/switches/outage", {"on": True}, token=None)[0] == 401
    assert admin(logic_server, "POST", "/switches/outage", {"on": True}, token="wrong-token-wrong-token")[0] == 401
    assert admin(logic_server, "POST", "/switches/nope", {"on": True})[0] == 404
    assert admin(logic_server, "POST", "/switches/outage", {"on": "yes"})[0] == 400
    assert admin(logic_server, "POST", "/switches/outage", {"on": True}) == (
        200, {"switch": "outage", "on": True, "previous": False})
    try:
        line = place(logic_server, workdir, "outage-on", "100", "+15551000002", "default")  # a gold caller
        assert line["path"][:2] == ["outage_check:outage_notice", "outage_notice:played"]
        assert line["fetches"] == []
        saved = json.loads((logic_server.workdir / "run" / "switches.json").read_text())
        assert saved == {"outage": True}
        flipped = logic_server.events("switch.flipped")
        assert flipped and flipped[-1]["switch"] == "outage" and flipped[-1]["on"] is True
    finally:
        assert admin(logic_server, "POST", "/switches/outage", {"on": False})[0] == 200
    line = place(logic_server, workdir, "outage-off", "100", "+15551000002", "gold")
    assert line["path"][0] == "outage_check:greet"
