"""The admin endpoint's bearer token: without it, or with a wrong one, no data leaves (401)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from ivr.admin import make_app
from ivr.metrics import Metrics

TOKEN = "0123456789abcdef-test-token"


def app(token: str = "") -> Any:
    return make_app(Metrics(), lambda: {"ok": True}, lambda: [{"call_id": "w000-1"}], lambda: {}, token=token)


async def test_with_a_token_every_path_needs_it(aiohttp_client: Any) -> None:
    client: TestClient = await aiohttp_client(app(TOKEN))
    for path in ("/healthz", "/metrics", "/calls", "/nowhere"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Basic {TOKEN}"}):
            response = await client.get(path, headers=headers)
            assert response.status == 401, (path, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "w000-1" not in await response.text()
    response = await client.get("/calls", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200 and (await response.json())["calls"] == [{"call_id": "w000-1"}]
    assert (await client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200


async def test_without_a_token_loopback_admin_answers_as_before(aiohttp_client: Any) -> None:
    client: TestClient = await aiohttp_client(app())
    assert (await client.get("/healthz")).status == 200
