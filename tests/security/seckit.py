"""Test seam of the adversarial suite: config and addresses of its real `ivr run` (managed front, 2 workers).

Addresses (all in 127.0.1.0/24, so no stray answer can reach another test's server on 127.0.0.1):
the front and the workers on FRONT, the one trunk on TRUNK, the attacker on ATTACKER, would-be relay targets
on VICTIM. The User-Agent block list is empty (SIPVicious announces itself) and pike is set far above the
flood test's rate: the attacker is never banned, so every "refused" or "silent" below is the routing logic's
doing, not a ban's.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from ivrkit import ROOT, IvrServer, default_config, free_span  # noqa: E402

__all__ = ["ROOT", "IvrServer"]  # re-exported for the tests

FRONT = "127.0.1.1"
TRUNK = "127.0.1.2"
ATTACKER = "127.0.1.66"
VICTIM = "127.0.1.77"
WORKERS = 2

HOLD_FLOW: dict[str, Any] = {
    "description": "Hold music until the caller hangs up.",
    "steps": [
        {"id": "hold", "type": "menu", "prompts": ["hold_music"], "options": {"9": "bye"}, "timeout": "60s",
         "attempts": 1, "on_exhausted": "bye"},
        {"id": "bye", "type": "hangup", "prompts": ["goodbye"]}]}

TRANSFER_FLOW: dict[str, Any] = {
    "description": "Straight to the default queue: the worker sends the caller a REFER.",
    "steps": [{"id": "out", "type": "transfer", "queue": "default", "notify_timeout": "2s", "on_fail": "bye"},
              {"id": "bye", "type": "hangup"}]}


def free_port(host: str, span: int = 1) -> int:
    """A port free on `host` for UDP and TCP, with `span - 1` free ports after it."""
    return free_span(span, host, range(21000, 29000))


def security_config() -> dict[str, Any]:
    cfg = default_config()
    cfg["sip"].update(listen_host=FRONT, listen_port=free_port(FRONT), worker_host=FRONT, media_address=FRONT,
                      workers=WORKERS, worker_base_port=free_port(FRONT, WORKERS),
                      rtp_port_start=33000 + 40 * random.randrange(0, 150), max_call_duration="120s",
                      drain_timeout="2s", retry_after=7)
    cfg["front"] = {"mode": "managed", "pike": {"sampling_time": 2, "reqs_density": 100000, "remove_latency": 2},
                    "blocked_user_agents": []}  # SIPVicious says "friendly-scanner": let the routing decide
    cfg["admin"] = {"enabled": True, "host": "127.0.0.1", "port": free_port("127.0.0.1")}
    demo_port = free_port("127.0.0.1")
    cfg["demo_crm"].update(enabled=True, port=demo_port)
    cfg["http"]["crm"]["base_url"] = f"http://127.0.0.1:{demo_port}"
    cfg["trunks"] = [{"name": "demo", "sources": [f"{TRUNK}/32"], "dtmf": "both", "refer": True}]
    cfg["flows"]["hold"] = HOLD_FLOW
    cfg["flows"]["transfer"] = TRANSFER_FLOW
    # no catch-all: a torture INVITE to any other user is refused, never answered (no RTP to its SDP address)
    cfg["numbers"] = {"500": "hold", "600": "transfer"}
    cfg["logging"] = {"level": "info", "format": "json"}
    return cfg


def front_addr(server: IvrServer) -> tuple[str, int]:
    return FRONT, server.sip_port


def worker_addrs(server: IvrServer) -> list[tuple[str, int]]:
    base = int(server.config["sip"]["worker_base_port"])
    return [(FRONT, base + i) for i in range(WORKERS)]
