"""HttpClient against a real aiohttp fake CRM: success, every failure kind, retries, the budget, secrets."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import jmespath
import pytest
from crmkit import GOLD, FakeCrm, MakeClient, Reply
from structlog.testing import capture_logs

from ivr.config.model import HttpEndpoint
from ivr.crm import HttpClient
from ivr.flow.commands import Fetch
from ivr.flow.events import FetchCompleted, FetchFailed


def lookup(phone: str = "+15551000001", *, method: str = "GET", budget: float = 2.0, body: Any = None,
           headers: tuple[tuple[str, str], ...] = ()) -> Fetch:
    return Fetch(7, "crm", method, "/api/v1/customers", (("phone", phone),), headers, body, budget)


async def test_success_is_mapping_ready(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url)
    result = await client.fetch(lookup())
    assert isinstance(result, FetchCompleted)
    assert (result.request_id, result.status, result.cached) == (7, 200, False)
    assert result.elapsed_ms > 0
    assert jmespath.search("data[0].loyalty.tier", result.body) == "gold"
    assert jmespath.search("data[0].account_manager.name", result.body) == "Grace"
    assert fake_crm.seen[0].method == "GET" and fake_crm.seen[0].path == "/api/v1/customers"


async def test_query_values_are_escaped(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url + "/base/")
    cmd = Fetch(1, "crm", "GET", "/api/v1/customers", (("phone", "+15551000001"), ("q", "a b&c=d/é")))
    assert isinstance(await client.fetch(cmd), FetchCompleted)
    seen = fake_crm.seen[0]
    assert seen.path == "/base/api/v1/customers"
    assert seen.raw_query == "phone=%2B15551000001&q=a%20b%26c%3Dd%2F%C3%A9"
    assert seen.query == {"phone": "+15551000001", "q": "a b&c=d/é"}


async def test_headers_and_json_body(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url, headers={"Authorization": "Bearer ep-token"})
    cmd = lookup(method="POST", body={"caller": "+1555"},
                 headers=(("X-Call", "abc"), ("Authorization", "Bearer step-wins?")))
    assert isinstance(await client.fetch(cmd), FetchCompleted)
    seen = fake_crm.seen[0]
    assert seen.headers["Authorization"] == "Bearer ep-token"  # the endpoint's credentials win
    assert seen.headers["X-Call"] == "abc"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {"caller": "+1555"}


async def test_connect_refused(refused_url: str, make_client: MakeClient) -> None:
    client = await make_client(refused_url, retries=2)
    result = await client.fetch(lookup())
    assert isinstance(result, FetchFailed)
    assert result.reason == "connect_error"
    assert result.elapsed_ms >= 0
    assert client.stats()["crm"]["requests"] == 3  # connect errors are retried


async def test_timeout_ends_near_the_budget(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    fake_crm.default = Reply(delay=2.0)
    client = await make_client(fake_crm.url)
    started = time.monotonic()
    result = await client.fetch(lookup(budget=0.3))
    assert isinstance(result, FetchFailed) and result.reason == "timeout"
    assert 250 <= result.elapsed_ms < 800
    assert time.monotonic() - started < 0.8


async def test_endpoint_timeout_caps_the_budget(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    fake_crm.default = Reply(delay=2.0)
    client = await make_client(fake_crm.url, timeout=0.3)
    result = await client.fetch(lookup(budget=10.0))
    assert isinstance(result, FetchFailed) and result.reason == "timeout"
    assert result.elapsed_ms < 800


@pytest.mark.parametrize(("reply", "reason"), [
    (Reply(404, {"error": "nope"}), "http_404"),
    (Reply(503, {"error": "down"}), "http_503"),
    (Reply(302, {}), "http_302"),
    (Reply(200, raw=b"<html>oops</html>"), "invalid_json"),
    (Reply(drop=True), "disconnected"),
])
async def test_failure_reasons(fake_crm: FakeCrm, make_client: MakeClient, reply: Reply, reason: str) -> None:
    fake_crm.default = reply
    client = await make_client(fake_crm.url)
    result = await client.fetch(lookup())
    assert isinstance(result, FetchFailed)
    assert result.reason == reason
    assert result.elapsed_ms > 0
    assert client.stats()["crm"]["failures"] == {reason: 1}


async def test_empty_2xx_body_is_none(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    fake_crm.default = Reply(204, raw=b"")
    client = await make_client(fake_crm.url)
    result = await client.fetch(lookup(method="DELETE"))
    assert isinstance(result, FetchCompleted) and result.body is None and result.status == 204


async def test_unknown_endpoint(make_client: MakeClient, fake_crm: FakeCrm) -> None:
    client = await make_client(fake_crm.url)
    result = await client.fetch(Fetch(3, "billing", "GET", "/x"))
    assert result == FetchFailed(3, "unknown_endpoint", 0.0)
    assert fake_crm.seen == []


async def test_get_retried_after_503(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    fake_crm.script = [Reply(503, {})]
    client = await make_client(fake_crm.url, retries=1)
    result = await client.fetch(lookup(budget=1.0))
    assert isinstance(result, FetchCompleted) and result.body == GOLD
    assert len(fake_crm.seen) == 2
    assert client.stats()["crm"]["retries"] == 1


async def test_put_is_retried_post_is_not(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url, retries=3)
    fake_crm.script = [Reply(503, {})]
    assert isinstance(await client.fetch(lookup(method="PUT", body={})), FetchCompleted)
    assert len(fake_crm.seen) == 2
    fake_crm.script = [Reply(503, {})]
    result = await client.fetch(lookup(method="POST", body={}))
    assert isinstance(result, FetchFailed) and result.reason == "http_503"
    assert len(fake_crm.seen) == 3


async def test_4xx_is_not_retried(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    fake_crm.default = Reply(404, {})
    client = await make_client(fake_crm.url, retries=3)
    assert isinstance(await client.fetch(lookup()), FetchFailed)
    assert len(fake_crm.seen) == 1


async def test_budget_covers_the_retries(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    fake_crm.default = Reply(503, {}, delay=0.2)
    client = await make_client(fake_crm.url, retries=5)
    started = time.monotonic()
    result = await client.fetch(lookup(budget=0.5))
    assert isinstance(result, FetchFailed) and result.reason in ("timeout", "http_503")
    assert time.monotonic() - started < 0.5 + 0.5
    assert result.elapsed_ms < 1000
    assert 1 <= len(fake_crm.seen) <= 3


async def test_secrets_never_logged(fake_crm: FakeCrm, refused_url: str, caplog: pytest.LogCaptureFixture,
                                    make_client: MakeClient) -> None:
    secret = "s3cr3t-token-value"
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        client = await make_client(fake_crm.url, headers={"Authorization": "Bearer " + secret})
        for reply in (Reply(), Reply(404, {}), Reply(503, {}), Reply(raw=b"x"), Reply(delay=1.0)):
            fake_crm.script = [reply]
            await client.fetch(lookup(budget=0.2))
        down = await make_client(refused_url, headers={"X-Api-Key": secret})
        await down.fetch(lookup())
        stats = repr(client.stats()) + repr(down.stats())
    assert all(s.headers["Authorization"] == "Bearer " + secret for s in fake_crm.seen)
    assert any(entry["event"] == "crm.fetch.failed" for entry in logs)
    assert secret not in repr(logs)
    assert secret not in caplog.text
    assert secret not in stats
    assert "+15551000001" not in repr(logs)  # the caller's number (query) stays out of these logs


async def test_stats_shape(fake_crm: FakeCrm, make_client: MakeClient) -> None:
    client = await make_client(fake_crm.url)
    await client.fetch(lookup())
    stats = client.stats()["crm"]
    assert stats["breaker"] == "closed"
    assert stats["fetches"] == 1 and stats["completed"] == 1 and stats["requests"] == 1
    assert {"failures", "cache_hits", "cache_stale", "cache_misses", "cache_entries"} <= set(stats)


async def test_use_outside_context_is_a_bug() -> None:
    client = HttpClient({"crm": HttpEndpoint(base_url="http://127.0.0.1:9")})
    with pytest.raises(RuntimeError):
        await client.fetch(lookup())
