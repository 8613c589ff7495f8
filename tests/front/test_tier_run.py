"""`ivr tier run` as a process: its admin endpoint (/healthz, /metrics: the tier's Kamailio and each node's
dispatcher state) and the SIGHUP reload path. The nodes are SIPp stand-ins answering the tier's OPTIONS probe
(127.0.0.1:16101) or nothing at all (16102); the tier listens on 127.0.0.1:16002."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from front_harness import HOST, WORKER_BASE, Uas, make_config, need_tools, wait_until

pytestmark = pytest.mark.sip

TIER_PORT = 16002
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class TierProcess:
    def __init__(self, tmp: Path, raw: dict[str, Any]) -> None:
        self.path = tmp / "tier.yaml"
        self.raw = raw
        self.run_dir = tmp / "run"
        self.lines: list[str] = []
        self.write()
        self.proc = subprocess.Popen([sys.executable, "-m", "ivr", "tier", "run", str(self.path), "--run-dir",
                                      str(self.run_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.raw, sort_keys=False))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            if f'"{name}"' in line:
                found.append(json.loads(line))
        return found

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://{HOST}:{self.raw['tier']['admin_port']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def health(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/healthz")
        return status, json.loads(body)

    def states(self) -> dict[str, str]:
        return {name: node["state"] for name, node in self.health()[1]["nodes"].items()}


@pytest.fixture
def tier(tmp_path: Path) -> Any:
    need_tools()
    raw = make_config(workers=1).model_dump(mode="json", exclude_none=True)
    raw["tier"] = {"listen_host": HOST, "listen_port": TIER_PORT, "probe_interval": 1, "admin_port": free_port(),
                   "nodes": [{"name": "n1", "address": f"{HOST}:{WORKER_BASE}"}]}
    node = Uas(0, tmp_path)
    node.start()
    started = TierProcess(tmp_path, raw)
    try:
        wait_until(lambda: started.events("tier.ready") or started.proc.poll() is not None, 20, "tier.ready")
        assert started.proc.poll() is None, "".join(started.lines)[-3000:]
        yield started, node
    finally:
        if started.proc.poll() is None:
            started.proc.send_signal(signal.SIGTERM)
            try:
                started.proc.wait(20)
            except subprocess.TimeoutExpired:
                started.proc.kill()
                started.proc.wait()
        node.kill()


def test_admin_reports_the_nodes_states_and_sighup_reloads_the_node_list(tier: Any) -> None:
    proc, node = tier
    wait_until(lambda: proc.states() == {"n1": "active"}, 10, "n1 active")
    status, health = proc.health()
    assert status == 200 and health["ok"] is True and health["kamailio"] == {"running": True, "up": True}
    _, metrics = proc.get("/metrics")
    assert 'ivr_tier_node_state{node="n1",state="active"} 1' in metrics
    assert 'ivr_tier_node_state{node="n1",state="inactive"} 0' in metrics and "ivr_tier_up 1" in metrics
    assert proc.get("/calls")[0] == 404  # the tier has no calls of its own

    # SIGHUP: a node added to the YAML (nobody answers there) joins the list without a restart
    proc.raw["tier"]["nodes"].append({"name": "n2", "address": f"{HOST}:{WORKER_BASE + 1}"})
    proc.write()
    proc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: proc.events("tier.reloaded"), 10, "tier.reloaded")
    assert proc.events("tier.reloaded")[-1]["nodes"] == ["n1", "n2"]
    wait_until(lambda: proc.states() == {"n1": "active", "n2": "inactive"}, 15, "n2 inactive, n1 active")
    assert proc.health()[0] == 200  # one active node is enough
    _, metrics = proc.get("/metrics")
    assert 'ivr_tier_node_state{node="n2",state="inactive"} 1' in metrics

    # SIGHUP with a changed listen port: refused (a restart is needed), the running list stays
    proc.raw["tier"]["listen_port"] = TIER_PORT + 1
    proc.raw["tier"]["nodes"] = proc.raw["tier"]["nodes"][:1]
    proc.write()
    proc.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: proc.events("tier.reload_rejected"), 10, "tier.reload_rejected")
    assert proc.events("tier.reload_rejected")[-1]["reason"] == "restart_needed"
    assert len(proc.events("tier.reloaded")) == 1 and set(proc.states()) == {"n1", "n2"}

    # the last active node stops answering its probe: unhealthy
    node.kill()
    wait_until(lambda: proc.health()[0] == 503, 15, "healthz 503 with no active node")
    assert proc.health()[1]["active_nodes"] == 0 and proc.proc.poll() is None
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(20) == 0
