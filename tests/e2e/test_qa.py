"""`ivr qa` against the real server through its Kamailio front (free ports, 2 workers): every generated path
of both default flows passes; breaking one queue's URI in the server's config makes exactly the paths that
reach that queue fail. The office schedule is made always open so the menu paths are reachable now."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import e2e_config, start_server
from ivrkit import ROOT

pytestmark = pytest.mark.sip

FLOWS = ("--flow", "vip_routing", "--flow", "support")


def _config() -> dict[str, Any]:
    cfg = e2e_config(workers=2)
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    cfg["schedules"]["office"] = {"timezone": "Europe/London", "hours": {d: ["00:00-24:00"] for d in days}}
    return cfg


def _qa(config: Path, port: int, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    cmd = [sys.executable, "-m", "ivr", "qa", str(config), "--target", f"127.0.0.1:{port}", "--json", "--slack", "20",
           *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    rows = json.loads(done.stdout) if done.stdout.strip().startswith("[") else []
    failed = [r for r in rows if r["verdict"] == "FAIL"]
    return done.returncode, rows, json.dumps(failed, indent=1) + done.stdout[-2000:] + done.stderr[-2000:]


def test_every_path_passes_then_a_broken_queue_fails_exactly_its_paths(tmp_path: Path) -> None:
    cfg = _config()
    config_file = tmp_path / "qa.yaml"
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    scenarios = tmp_path / "scenarios"
    server = start_server(cfg, tmp_path / "good")
    try:
        code, rows, output = _qa(config_file, server.sip_port, *FLOWS, "--out", str(scenarios))
    finally:
        server.stop()
    assert code == 0, output
    verdicts = {(r["name"], r["method"]): r["verdict"] for r in rows}
    assert verdicts and set(verdicts.values()) == {"PASS"}, output
    names = {name for name, _ in verdicts}
    assert {"vip_routing.gold", "vip_routing.unknown.account_platinum_managed", "vip_routing.unknown.crm_down",
            "vip_routing.unknown.crm_slow", "vip_routing.gold.refused_gold", "support.press_1",
            "support.press_1.refused_sales", "support.invalid"} <= names
    assert ("vip_routing.unknown.account_gold", "rfc4733") in verdicts

    broken = _config() | {"queues": {**cfg["queues"], "platinum": {"uri": "sip:nobody@127.0.0.1:5070"}}}
    broken.update({k: cfg[k] for k in ("sip", "admin", "demo_crm", "http")})
    server = start_server(broken, tmp_path / "broken")
    try:
        code, rows, output = _qa(config_file, server.sip_port, "--scenarios", str(scenarios), "--flow", "vip_routing",
                                 "--dtmf", "info")
    finally:
        server.stop()
    assert code == 1, output
    failed = {r["name"] for r in rows if r["verdict"] == "FAIL"}
    platinum = {r["name"] for r in rows if "platinum" in r["expected"]}
    assert platinum and failed == platinum, output
