"""The console in a real browser (headless Debian Chromium via Selenium): calls placed by SIPp appear live,
move to the recent list with their queue, fill the charts; the flow diagram renders with every step; with a
token, the page opens through `?token=` and an HttpOnly cookie, and nothing opens without it."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import available, chromium, wait_for
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import IvrServer
from sippkit import collect, sipp

pytestmark = [pytest.mark.sip, pytest.mark.skipif(available() is not None, reason=str(available()))]

CALLS = 4
CALLER = "+15557770001"
DEMO_FLOW: dict[str, Any] = {
    "description": "Console test: a gold caller waits through hold music, then the gold queue.",
    "steps": [
        {"id": "mark_gold", "type": "set", "values": {"tier": "gold"}},
        {"id": "hold", "type": "play", "prompts": ["hold_music", "hold_music"], "interruptible": False},
        {"id": "to_gold", "type": "transfer", "queue": "gold", "notify_timeout": "5s", "on_fail": "bye"},
        {"id": "bye", "type": "hangup", "prompts": ["goodbye"]}],
}


def _config() -> dict[str, Any]:
    cfg = e2e_config()
    cfg["flows"]["console_demo"] = DEMO_FLOW
    cfg["numbers"]["700"] = "console_demo"
    return cfg


@pytest.fixture(scope="module")
def chromium_driver() -> Iterator[Any]:
    """One headless Chromium for the module's tests (its start-up is seconds on a loaded machine)."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def browser(chromium_driver: Any) -> Any:
    """The module's browser with no cookies left from the previous test (its servers are all 127.0.0.1)."""
    chromium_driver.delete_all_cookies()
    return chromium_driver


def _url(server: IvrServer, path: str) -> str:
    return f"http://127.0.0.1:{server.config['admin']['port']}{path}"


def _rows(driver: Any, table: str) -> list[dict[str, str]]:
    script = """return [...document.querySelectorAll(arguments[0] + ' tbody tr:not(.details)')].map(r => {
        const h = [...r.closest('table').querySelectorAll('thead th')].map(th => th.textContent.toLowerCase());
        return Object.fromEntries([...r.children].map((td, i) => [h[i], td.textContent]));});"""
    return list(driver.execute_script(script, f"#{table}"))


def _shot(driver: Any, path: Path) -> None:
    driver.save_screenshot(str(path))
    print(f"console screenshot: {path}")


def test_calls_appear_live_then_in_recent_with_their_queue_and_in_the_charts(tmp_path: Path, browser: Any) -> None:
    server = start_server(_config(), tmp_path / "ivr")
    try:
        browser.get(_url(server, "/console"))
        wait_for(lambda: browser.find_element("id", "feed").text == "live", what="the SSE feed open")
        caller = sipp(server.sip_port, "dtmf_info_refer.xml", service="700", tag="console", workdir=tmp_path,
                      calls=CALLS, concurrency=CALLS, rate=10, background=True, timeout=90,
                      variables={"caller": CALLER, "digits": "", "expected_refer": f"sip:gold@{QUEUE_HOST}"})
        assert isinstance(caller, subprocess.Popen)
        _while_up(browser, tmp_path)
        output, _ = caller.communicate(timeout=120)
        run = collect(caller.returncode, output, tmp_path, "console")
        assert run.returncode == 0, run.describe()
        _after_the_calls(browser, tmp_path)
    finally:
        server.stop()  # and every call's log line = its stored row


def _while_up(browser: Any, tmp_path: Path) -> None:
    """All the calls are up at once (8 s of hold music each): the live table and the diagram show them."""
    live = wait_for(lambda: [r for r in _rows(browser, "live") if r["caller"] == CALLER and r["step"] == "hold"]
                    if len(_rows(browser, "live")) >= CALLS else None, timeout=60, what=f"{CALLS} live calls on hold")
    assert all(r["flow"] == "console_demo" and "mark_gold:" in r["path"] for r in live), live
    browser.find_element("css selector", "#flow-tabs button[data-flow='console_demo']").click()
    wait_for(lambda: browser.find_elements("css selector", "#flow-diagram svg[data-flow='console_demo']"),
             what="the console_demo diagram")
    titles = browser.execute_script(
        "return [...document.querySelectorAll('#flow-diagram svg g.node title')].map(t => t.textContent)")
    assert {s["id"] for s in DEMO_FLOW["steps"]} <= set(titles), titles
    wait_for(lambda: browser.find_elements("css selector", "#flow-diagram [id='step-hold'].live"),
             what="the hold step highlighted as live")
    _shot(browser, tmp_path / "console-live.png")


def _after_the_calls(browser: Any, tmp_path: Path) -> None:
    """The calls left the live table; each is in the recent list with its queue; the charts count them."""
    wait_for(lambda: not [r for r in _rows(browser, "live") if r["caller"] == CALLER], what="live table emptied")
    recent = wait_for(lambda: [r for r in _rows(browser, "recent") if r["caller"] == CALLER]
                      if len([r for r in _rows(browser, "recent") if r["caller"] == CALLER]) >= CALLS else None,
                      what=f"{CALLS} calls in the recent list")
    assert len(recent) == CALLS, recent
    for row in recent:
        assert (row["flow"], row["tier"], row["queue"]) == ("console_demo", "gold", "gold"), row
        assert row["outcome"].startswith("transfer"), row
        assert row["path"] == "mark_gold:set → hold:played → to_gold:ok", row
    browser.find_element("css selector", "#recent tbody tr.record").click()  # the whole stored record
    shown = json.loads(wait_for(lambda: browser.find_element("css selector", "#recent tr.details pre").text))
    assert shown["transfers"][0]["queue"] == "gold" and shown["variables"]["tier"] == "gold"
    for chart in ("queue", "tier"):
        selector = f"#chart-{chart} rect.bar[data-series='gold']"
        bars = wait_for(lambda s=selector: browser.find_elements("css selector", s), what=f"gold bars: {selector}")
        assert sum(int(b.get_attribute("data-count")) for b in bars) >= CALLS
    _shot(browser, tmp_path / "console-recent.png")


def test_a_token_guards_every_path_and_the_page_opens_through_an_httponly_cookie(
        tmp_path: Path, browser: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "console-test-token-5f1c"
    monkeypatch.setenv("IVR_TEST_ADMIN_TOKEN", token)
    cfg = _config()
    cfg["admin"]["token_env"] = "IVR_TEST_ADMIN_TOKEN"
    server = start_server(cfg, tmp_path / "ivr")
    try:
        for path in ("/healthz", "/metrics", "/calls", "/console", "/console/events", "/console/api/recent",
                     "/console/api/series", "/console/api/flows", "/console/graph/menu.svg",
                     "/console/static/console.js", "/console?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(_url(server, path), timeout=5)
            assert denied.value.code == 401, path
        request = urllib.request.Request(_url(server, "/calls"), headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.loads(resp.read()) == {"calls": []}
        browser.get(_url(server, "/console"))
        assert "401" in browser.find_element("tag name", "body").text
        browser.get(_url(server, f"/console?token={token}"))
        assert browser.current_url == _url(server, "/console")  # the token left the address bar
        wait_for(lambda: browser.find_element("id", "feed").text == "live", what="the SSE feed open")
        wait_for(lambda: browser.find_elements("css selector", "#flow-diagram svg g.node"), what="a diagram")
        assert browser.execute_script("return document.cookie") == ""  # HttpOnly: scripts cannot read it
        _hostile_strings_stay_text(browser)
        _shot(browser, tmp_path / "console-token.png")
    finally:
        server.stop()


HOSTILE = '<img src=x onerror="window.pwned=1">'


def _hostile_strings_stay_text(browser: Any) -> None:
    """A caller is a stranger: what they put in From or the digits they type is shown as text, never markup."""
    browser.execute_script("""
        const evil = arguments[0];
        renderLive([{worker: "w", call_id: "x", caller: evil, dialed: evil, flow: evil, step: evil, age_s: 1,
                     path: [evil]}]);
        renderRecent([{uid: evil, caller: evil, dialed: evil, flow: evil, started_at: 0, variables: {tier: evil},
                       outcome: {kind: evil, reason: evil, queue: evil}, path: [evil], timings: {}}]);""", HOSTILE)
    cells = browser.execute_script("return [...document.querySelectorAll('#live td, #recent td')]"
                                   ".map(td => td.textContent)")
    assert HOSTILE in cells
    assert browser.execute_script("return document.querySelectorAll('#live img, #recent img').length") == 0
    assert browser.execute_script("return window.pwned === undefined")
