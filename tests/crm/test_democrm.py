"""The demo CRM: shipped data, lookups through the real HttpClient, errors, token, demo controls, bad data."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jmespath
import pytest
from crmkit import serve

from ivr import democrm
from ivr.config.model import CacheConfig, DemoCrmConfig, HttpEndpoint
from ivr.crm import HttpClient
from ivr.flow.commands import Fetch
from ivr.flow.events import FetchCompleted, FetchFailed

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
CUSTOMERS = CONFIG_DIR / "customers.yaml"
MAP = {"customer_id": "data[0].id", "tier": "data[0].loyalty.tier", "manager": "data[0].account_manager.name"}


@pytest.fixture
async def demo_url() -> AsyncIterator[str]:
    runner, url = await serve(democrm.make_app(CUSTOMERS))
    yield url
    await runner.cleanup()


@pytest.fixture
async def crm(demo_url: str) -> AsyncIterator[HttpClient]:
    endpoint = HttpEndpoint(base_url=demo_url, retries=0, cache=CacheConfig(max_entries=0),
                            headers={"Authorization": "Bearer demo-token"})
    async with HttpClient({"crm": endpoint}) as client:
        yield client


async def find(client: HttpClient, name: str, value: str, budget: float = 2.0) -> FetchCompleted | FetchFailed:
    return await client.fetch(Fetch(1, "crm", "GET", "/api/v1/customers", ((name, value),), budget_s=budget))


def mapped(result: FetchCompleted | FetchFailed) -> dict[str, Any]:
    assert isinstance(result, FetchCompleted), result
    return {var: jmespath.search(expr, result.body) for var, expr in MAP.items()}


def test_shipped_data() -> None:
    customers = democrm.load_customers(CUSTOMERS)
    tiers = Counter(c.loyalty.tier for c in customers)
    assert tiers["gold"] >= 4 and tiers["platinum"] >= 4
    assert sum(n for tier, n in tiers.items() if tier not in ("gold", "platinum")) >= 6
    by_phone = {p: c.loyalty.tier for c in customers for p in c.phones}
    for i in range(1, 5):
        assert by_phone["+1555100000" + str(i)] == "gold"
        assert by_phone["+1555200000" + str(i)] == "platinum"
    for i in range(1, 7):
        assert by_phone["+1555300000" + str(i)] not in ("gold", "platinum")
    assert any(c.account_manager for c in customers) and any(not c.account_manager for c in customers)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("phone", "+15551000001", {"customer_id": "C-1001", "tier": "gold", "manager": "Grace Hopper"}),
    ("phone", "15552000002", {"customer_id": "C-2002", "tier": "platinum", "manager": "Edsger Dijkstra"}),
    ("phone", "+15557000003", {"customer_id": "C-2003", "tier": "platinum", "manager": "Donald Knuth"}),
    ("account", "100002", {"customer_id": "C-1002", "tier": "gold", "manager": None}),
    ("account", "300005", {"customer_id": "C-3005", "tier": None, "manager": None}),
    ("phone", "+15559999999", {"customer_id": None, "tier": None, "manager": None}),
    ("account", "999999", {"customer_id": None, "tier": None, "manager": None}),
])
async def test_lookups(crm: HttpClient, name: str, value: str, expected: dict[str, Any]) -> None:
    result = await find(crm, name, value)
    assert mapped(result) == expected
    assert isinstance(result, FetchCompleted) and result.body["meta"]["count"] == (expected["tier"] is not None
                                                                                   or expected["customer_id"]
                                                                                   is not None)


@pytest.mark.parametrize("query", ["", "?phone=abc", "?account=12a", "?phone=%2B1555&account=100001", "?x=1"])
async def test_bad_query_is_400(demo_url: str, query: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(demo_url + "/api/v1/customers" + query) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "invalid_query"


async def test_customer_by_id_and_health(demo_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(demo_url + "/api/v1/customers/C-2001") as resp:
            assert resp.status == 200 and (await resp.json())["data"]["loyalty"]["tier"] == "platinum"
        async with session.get(demo_url + "/api/v1/customers/C-0000") as resp:
            assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
        async with session.get(demo_url + "/api/v2/nothing") as resp:
            assert resp.status == 404 and "error" in await resp.json()
        async with session.get(demo_url + "/healthz") as resp:
            assert await resp.json() == {"status": "ok", "customers": 14}


async def test_token_required_when_configured() -> None:
    runner, url = await serve(democrm.make_app(CUSTOMERS, token="t0ken"))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/api/v1/customers?account=100001") as resp:
                assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
            headers = {"Authorization": "Bearer t0ken"}
            async with session.get(url + "/api/v1/customers?account=100001", headers=headers) as resp:
                assert resp.status == 200
            async with session.get(url + "/healthz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


async def behave(url: str, **behaviour: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/_demo/behaviour", json=behaviour) as resp:
            assert resp.status == 200, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result


async def test_behaviour_failures_for_n_requests(demo_url: str, crm: HttpClient) -> None:
    state = await behave(demo_url, status=503, for_requests=2)
    assert state["status"] == 503 and state["remaining"] == 2
    assert [getattr(await find(crm, "account", "100001"), "reason", "ok") for _ in range(3)] == [
        "http_503", "http_503", "ok"]
    async with aiohttp.ClientSession() as session:
        async with session.get(demo_url + "/_demo/behaviour") as resp:
            assert (await resp.json())["status"] is None
        async with session.get(demo_url + "/_demo/stats") as resp:
            stats = await resp.json()
    assert stats["requests"] == 3 and stats["by_status"] == {"200": 1, "503": 2}


async def test_behaviour_latency_and_invalid_json(demo_url: str, crm: HttpClient) -> None:
    await behave(demo_url, latency_ms=1000)
    result = await find(crm, "phone", "+15551000001", budget=0.2)
    assert isinstance(result, FetchFailed) and result.reason == "timeout"
    await behave(demo_url, invalid_json=True)
    assert getattr(await find(crm, "phone", "+15551000001"), "reason", None) == "invalid_json"
    await behave(demo_url)  # {} restores normal service
    assert mapped(await find(crm, "phone", "+15551000001"))["tier"] == "gold"


async def test_bad_behaviour_is_400(demo_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(demo_url + "/_demo/behaviour", json={"status": 42, "colour": "red"}) as resp:
            assert resp.status == 400
            message = (await resp.json())["error"]["message"]
            assert "status" in message and "colour" in message
        async with session.post(demo_url + "/_demo/behaviour", data=b"{") as resp:
            assert resp.status == 400


@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read"),
    ("customers: [", "not valid YAML"),
    ("customers: []", "customers: "),
    ("customers:\n  - {id: C-1, account_number: '123456', name: A, phones: [15551000001]}",
     "customers[0].phones: Value error, phone '15551000001' is not E.164"),
    ("customers:\n  - {id: C-1, account_number: '12', name: A, phones: ['+15551000001']}",
     "customers[0].account_number"),
    ("customers:\n  - {id: C-1, account_number: '123456', name: A, phones: ['+15551000001'], vip: true}",
     "customers[0].vip: Extra inputs"),
    ("customers:\n  - {id: C-1, account_number: '123456', name: A, phones: ['+15551000001']}\n"
     "  - {id: C-1, account_number: '123457', name: B, phones: ['+15551000002']}", "duplicate id: C-1"),
])
def test_bad_data_is_a_clear_error(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "customers.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(democrm.CustomerDataError) as info:
        democrm.make_app(path)
    assert str(info.value).startswith(str(path) + ": ")
    assert expected in str(info.value)


def test_main_refuses_bad_data(tmp_path: Path) -> None:
    path = tmp_path / "customers.yaml"
    path.write_text("customers: 3")
    run = subprocess.run([sys.executable, "-m", "ivr.democrm", "--customers", str(path)],
                         capture_output=True, text=True, timeout=30, cwd=CONFIG_DIR.parent)
    assert run.returncode == 2
    assert "democrm.bad_data" in run.stderr and str(path) in run.stderr


async def test_start_listens_on_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_CRM_TOKEN", "env-token")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    runner = await democrm.start(DemoCrmConfig(enabled=True, port=port, latency=0.0), CONFIG_DIR)
    try:
        url = "http://127.0.0.1:" + str(port) + "/api/v1/customers?phone=%2B15552000001"
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers={"Authorization": "Bearer env-token"}) as resp:
                assert (await resp.json())["data"][0]["loyalty"]["tier"] == "platinum"
            async with session.get(url) as resp:
                assert resp.status == 401
    finally:
        await runner.cleanup()


async def test_concurrent_slow_answers_do_not_serialise(demo_url: str, crm: HttpClient) -> None:
    await behave(demo_url, latency_ms=300)
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(find(crm, "account", "100001") for _ in range(10)))
    assert all(isinstance(r, FetchCompleted) for r in results)
    assert asyncio.get_running_loop().time() - started < 2.0
