"""The admin port's guard: open on loopback without a token; a token is required off loopback; with one, every
path needs the bearer header or the console cookie, which only `/console?token=` hands out (HttpOnly, Strict)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from ivr.admin import make_app
from ivr.config.load import load_config
from ivr.config.model import AdminConfig
from ivr.console.auth import COOKIE, admin_token, session_value
from ivr.console.views import ConsoleSources
from ivr.errors import IvrError
from ivr.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-admin-token"
PATHS = ("/healthz", "/metrics", "/calls", "/console", "/console/events", "/console/api/recent",
         "/console/api/series", "/console/api/flows", "/console/graph/menu.svg", "/console/static/console.js")
CONFIG = load_config(ROOT / "config" / "ivr.yaml", check_files=False).config


def _app(token: str | None) -> Any:
    sources = ConsoleSources(config=lambda: CONFIG, live=lambda: [{"call_id": "w000-1", "step": "greet"}],
                             status=lambda: {"health": {"ok": True}}, store=None)
    return make_app(Metrics(), lambda: {"ok": True}, lambda: [], lambda: {}, console=sources, token=token)


@pytest.mark.parametrize(("host", "env", "expected"), [
    ("127.0.0.1", {}, None), ("::1", {}, None), ("localhost", {}, None), ("127.0.9.1", {"T": TOKEN}, TOKEN)])
def test_loopback_is_open_unless_a_token_is_set(host: str, env: dict[str, str], expected: str | None) -> None:
    config = AdminConfig(host=host, token_env="T" if env else None)
    assert admin_token(config, env) == expected


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "admin.example"])
def test_off_loopback_without_token_env_is_a_config_error(host: str) -> None:
    with pytest.raises(ValidationError, match="not loopback: set token_env"):
        AdminConfig(host=host)
    assert AdminConfig(host=host, enabled=False).host == host  # a disabled admin port binds nothing


@pytest.mark.parametrize(("host", "env"), [("0.0.0.0", {}), ("127.0.0.1", {"T": ""})])
def test_an_unset_token_is_a_start_up_error(host: str, env: dict[str, str]) -> None:
    with pytest.raises(IvrError, match="T, which is not set"):
        admin_token(AdminConfig(host=host, token_env="T"), env)


async def test_every_path_needs_the_token() -> None:
    async with TestClient(TestServer(_app(TOKEN))) as client:
        for path in PATHS:
            resp = await client.get(path)
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status == 401, path
        ok = await client.get("/calls", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status == 200 and await ok.json() == {"calls": []}
        forged = await client.get("/calls", cookies={COOKIE: TOKEN})  # the token itself is not the cookie
        assert forged.status == 401


async def test_console_token_is_exchanged_for_an_httponly_strict_cookie() -> None:
    async with TestClient(TestServer(_app(TOKEN))) as client:
        assert (await client.get("/console", params={"token": "nope"}, allow_redirects=False)).status == 401
        resp = await client.get("/console", params={"token": TOKEN}, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/console"
        cookie = resp.headers["Set-Cookie"]
        assert f"{COOKIE}={session_value(TOKEN)}" in cookie and TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        page = await client.get("/console")  # the client kept the cookie
        assert page.status == 200 and "<title>IVR console</title>" in await page.text()
        events = await client.get("/console/events")
        assert events.status == 200 and events.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(events.content.readuntil(b"\n\n"), 5)
        assert first.startswith(b"event: live\ndata: {") and b'"step":"greet"' in first
        events.close()


async def test_open_without_a_token_and_no_store_says_so() -> None:
    async with TestClient(TestServer(_app(None))) as client:
        assert (await client.get("/console")).status == 200
        slash = await client.get("/console/", allow_redirects=False)
        assert slash.status == 308 and slash.headers["Location"] == "/console"
        recent = await client.get("/console/api/recent")
        assert recent.status == 404 and "records.store is none" in await recent.text()
        flows = await (await client.get("/console/api/flows")).json()
        assert [f["name"] for f in flows["flows"]] == list(CONFIG.flows)
        assert (await client.get("/console/graph/nope.svg")).status == 404
        svg = await client.get("/console/graph/support.svg")
        assert svg.status == 200 and svg.content_type == "image/svg+xml" and "check_hours" in await svg.text()


def test_ivr_run_refuses_to_start_while_the_token_variable_is_unset(tmp_path: Path) -> None:
    """Checked before anything starts (no worker, no front, no port bound): exit 1 and a clear log line."""
    data = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    data["prompts_dir"] = str(ROOT / "prompts")
    data["demo_crm"]["customers"] = str(ROOT / "config" / "customers.yaml")
    data["admin"] = {"host": "127.0.0.1", "port": 9, "token_env": "IVR_TEST_UNSET_ADMIN_TOKEN"}
    data["logging"] = {"format": "json"}
    config = tmp_path / "ivr.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if k != "IVR_TEST_UNSET_ADMIN_TOKEN"}
    proc = subprocess.run([sys.executable, "-m", "ivr", "run", str(config), "--run-dir", str(tmp_path / "run")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in lines] == ["ivr.start_failed"], proc.stderr
    assert "IVR_TEST_UNSET_ADMIN_TOKEN, which is not set" in lines[0]["error"]
