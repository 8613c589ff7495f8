"""End-to-end fixtures: the real server (`ivr run`) on 127.0.0.1 with a test copy of the default config."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ivrkit import IvrServer, default_config, free_port, free_span

QUEUE_HOST = "127.0.0.1:5070"

TEST_FLOWS: dict[str, Any] = {
    "menu": {"description": "The support menu without business hours, so tests do not depend on the clock.",
             "steps": [
                 {"id": "main_menu", "type": "menu", "prompts": ["main_menu"],
                  "options": {"1": "to_sales", "2": "to_support", "0": "to_default"}, "timeout": "2s",
                  "attempts": 3, "invalid_prompts": ["invalid"], "no_input_prompts": ["no_input"],
                  "variable": "choice", "on_exhausted": "goodbye"},
                 {"id": "to_sales", "type": "transfer", "queue": "sales", "notify_timeout": "3s",
                  "on_fail": "to_default"},
                 {"id": "to_support", "type": "transfer", "queue": "support", "notify_timeout": "3s",
                  "on_fail": "to_default"},
                 {"id": "to_default", "type": "transfer", "queue": "default", "notify_timeout": "3s",
                  "on_fail": "goodbye"},
                 {"id": "goodbye", "type": "hangup", "prompts": ["goodbye"], "reason": "menu_exhausted"}]},
    "short_menu": {"description": "The menu with a 0.5 s prompt: what happens with no input, without 6 s of "
                                  "main_menu.wav per attempt.",
                   "steps": [
                       {"id": "main_menu", "type": "menu", "prompts": ["beep"],
                        "options": {"1": "to_sales", "2": "to_support", "0": "to_default"}, "timeout": "2s",
                        "attempts": 3, "invalid_prompts": ["invalid"], "no_input_prompts": ["no_input"],
                        "variable": "choice", "on_exhausted": "goodbye"},
                       {"id": "to_sales", "type": "transfer", "queue": "sales", "on_fail": "goodbye"},
                       {"id": "to_support", "type": "transfer", "queue": "support", "on_fail": "goodbye"},
                       {"id": "to_default", "type": "transfer", "queue": "default", "on_fail": "goodbye"},
                       {"id": "goodbye", "type": "hangup", "prompts": ["goodbye"], "reason": "menu_exhausted"}]},
    "hold": {"description": "Hold music until the caller hangs up (for concurrency and crash tests).",
             "steps": [
                 {"id": "hold", "type": "menu", "prompts": ["hold_music"], "options": {"9": "bye"}, "timeout": "60s",
                  "attempts": 1, "on_exhausted": "bye"},
                 {"id": "bye", "type": "hangup", "prompts": ["goodbye"]}]},
    "digits": {"description": "Collects digits and hands them to a queue as a Refer-To parameter.",
               "steps": [
                   {"id": "ask", "type": "gather", "prompts": ["enter_account"], "variable": "entered",
                    "max_digits": 8, "terminator": "#", "inter_digit_timeout": "3s", "on_exhausted": "bye"},
                   {"id": "hand_over", "type": "transfer", "queue": "digits", "on_fail": "bye"},
                   {"id": "bye", "type": "hangup", "prompts": ["goodbye"]}]},
}


def e2e_config(*, workers: int = 1, crm_url: str | None = None) -> dict[str, Any]:
    cfg = default_config()
    workers_at = free_span(workers) if workers > 1 else 5100  # a range of ports: each one of them must be free
    listen_port = free_port()
    rtp = 33000 + 40 * random.randrange(0, 150)
    while rtp <= listen_port < rtp + 40 * (workers + 1):  # `ivr check` refuses an RTP range over the SIP port
        rtp = 33000 + 40 * random.randrange(0, 150)
    cfg["sip"].update(listen_port=listen_port, workers=workers, worker_base_port=workers_at,
                      rtp_port_start=rtp, max_call_duration="120s", drain_timeout="5s", retry_after=7)
    cfg["front"] = {"mode": "auto"}
    cfg["admin"] = {"enabled": True, "host": "127.0.0.1", "port": free_port()}
    demo_port = free_port()
    cfg["demo_crm"].update(enabled=True, port=demo_port)
    cfg["http"]["crm"]["base_url"] = crm_url or f"http://127.0.0.1:{demo_port}"
    cfg["http"]["crm"]["headers"] = {"Authorization": "Bearer demo-token"}
    cfg["flows"].update(TEST_FLOWS)
    cfg["numbers"].update({"300": "menu", "301": "short_menu", "400": "digits", "500": "hold"})
    cfg["queues"]["digits"] = {"uri": f"sip:digits@{QUEUE_HOST}", "uri_params": {"entered": "{{entered}}"}}
    cfg["logging"] = {"level": "info", "format": "json"}
    return cfg


def start_server(cfg: dict[str, Any], workdir: Path) -> IvrServer:
    workdir.mkdir(parents=True, exist_ok=True)
    return IvrServer(cfg, workdir).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrServer]:
    """One single-worker server (the development mode: the worker on the public address) per test module."""
    srv = start_server(e2e_config(), tmp_path_factory.mktemp("ivr"))
    yield srv
    srv.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
