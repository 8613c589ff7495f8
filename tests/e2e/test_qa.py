"""`ivr qa` against the real server through its Kamailio front (free ports, 2 workers), the focused cases.

The full sweep of every default path against `scripts/run`'s configuration is the docs test's `ivr qa` block
(tests/test_docs.py); it sees the office as the clock has it. Here the office schedule is forced open, then
closed (SIGHUP reload of the same server), so both branches of the support flow pass whatever the time of day,
with digits by SIP INFO and RFC 4733; a bounded load run puts several calls of one path up at once; and a broken
queue URI in the server's config fails exactly the paths that reach that queue. A server with fewer free slots
than `--parallel` (a call of someone else's held up) gets each path only when it has room (its admin API).
"""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import e2e_config, start_server
from ivrkit import ROOT, IvrServer
from sippkit import sipp

pytestmark = pytest.mark.sip

ALWAYS_OPEN = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
ALWAYS_CLOSED: dict[str, list[str]] = {}  # a missing day is closed


def _config(hours: dict[str, list[str]]) -> dict[str, Any]:
    cfg = e2e_config(workers=2)
    cfg["schedules"]["office"] = {"timezone": "Europe/London", "hours": hours}
    return cfg


def _qa(config: Path, port: int, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    code, rows, output, _ = _qa_run(config, port, *extra)
    return code, rows, output


def _qa_run(config: Path, port: int, *extra: str) -> tuple[int, list[dict[str, Any]], str, str]:
    cmd = [sys.executable, "-m", "ivr", "qa", str(config), "--target", f"127.0.0.1:{port}", "--json", "--slack", "20",
           *extra]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    rows = json.loads(done.stdout) if done.stdout.strip().startswith("[") else []
    failed = [r for r in rows if r["verdict"] == "FAIL"]
    return (done.returncode, rows, json.dumps(failed, indent=1) + done.stdout[-2000:] + done.stderr[-2000:],
            done.stderr)


def _verdicts(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(r["name"], r["method"]): r["verdict"] for r in rows}


def _reload(server: IvrServer, hours: dict[str, list[str]]) -> None:
    assert server.proc is not None
    server.config["schedules"]["office"]["hours"] = hours
    (server.workdir / "ivr.yaml").write_text(yaml.safe_dump(server.config, sort_keys=False))
    before = len(server.events("config.reloaded"))
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for(lambda e: e.get("event") == "config.reloaded" and len(server.events("config.reloaded")) > before)


def test_support_passes_with_the_office_open_and_closed_and_a_load_run(tmp_path: Path) -> None:
    server = start_server(_config(ALWAYS_OPEN), tmp_path / "srv")
    config = server.workdir / "ivr.yaml"
    try:
        code, open_rows, output = _qa(config, server.sip_port, "--flow", "support")
        assert code == 0, output
        seen = _verdicts(open_rows)  # an office never closed has no closed branch to walk
        assert set(seen.values()) == {"PASS"} and all(n.startswith("support.open.") for n, _ in seen), output
        assert {("support.open.press_1", "info"), ("support.open.press_1", "rfc4733"),
                ("support.open.press_1.refused_sales", "rfc4733"), ("support.open.invalid", "info")} <= set(seen)

        code, load_rows, output = _qa(config, server.sip_port, "--flow", "vip_routing", "--path", "vip_routing.gold",
                                      "--dtmf", "info", "--calls", "5", "--rate", "2")
        assert code == 0 and [(r["name"], r["verdict"]) for r in load_rows] == [("vip_routing.gold", "PASS")], output
        assert load_rows[0]["observed"].startswith("5/5 ok: REFER gold"), output

        _reload(server, ALWAYS_CLOSED)
        code, closed_rows, output = _qa(config, server.sip_port, "--flow", "support")
    finally:
        server.stop()
    assert code == 0, output
    after = _verdicts(closed_rows)
    assert set(after.values()) == {"PASS"} and all(n.startswith("support.closed.") for n, _ in after), output
    assert ("support.closed.press_1", "rfc4733") in after  # after hours: the closed message, then voicemail


def test_a_broken_queue_uri_fails_exactly_the_paths_that_reach_it(tmp_path: Path) -> None:
    cfg = _config(ALWAYS_OPEN)
    config_file = tmp_path / "qa.yaml"  # the good config: the scenarios expect the platinum queue's real URI
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    broken = copy.deepcopy(cfg)
    broken["queues"]["platinum"] = {"uri": "sip:nobody@127.0.0.1:5070"}
    server = start_server(broken, tmp_path / "broken")
    out = tmp_path / "out"
    try:
        code, rows, output = _qa(config_file, server.sip_port, "--flow", "vip_routing", "--dtmf", "info",
                                 "--out", str(out))
    finally:
        server.stop()
    assert code == 1, output
    platinum = {r["name"] for r in rows if "platinum" in r["expected"]}
    failed = {r["name"] for r in rows if r["verdict"] == "FAIL"}
    assert platinum and failed == platinum, output
    others = {r["verdict"] for r in rows if r["name"] not in platinum}
    assert others == {"PASS"}, output  # every other vip_routing path, CRM faults included, still passes
    assert {"vip_routing.gold", "vip_routing.unknown.crm_down", "vip_routing.unknown.crm_slow",
            "vip_routing.gold.refused_gold"} <= {r["name"] for r in rows}
    # the paths ran side by side, but a CRM-fault path (a global switch on the demo CRM) never beside another
    ran = _sipp_runs(out)
    ordinary = [r for r in ran if "crm_" not in r[0]]
    slow = [r for r in ran if r[0].endswith(".crm_slow")]
    down = [r for r in ran if r[0].endswith(".crm_down")]
    assert slow and down and len(ordinary) + len(slow) + len(down) == len(ran)
    assert any(_overlap(a, b) for a in ordinary for b in ordinary if a is not b), ran
    for fault in slow + down:
        assert not any(_overlap(fault, other) for other in ran if other[0] != fault[0]), (fault, ran)


def _sipp_runs(out: Path) -> list[tuple[str, float, float]]:
    """(path, start, end) of every SIPp run of `ivr qa --out DIR`: its log is named PATH.METHOD.START_MS.log
    and last written when the run ends."""
    runs = []
    for log in out.glob("*.log"):
        name, _method, start_ms, _ = log.name.rsplit(".", 3)
        runs.append((name, int(start_ms) / 1000, log.stat().st_mtime))
    return runs


def _overlap(a: tuple[str, float, float], b: tuple[str, float, float]) -> bool:
    return a[1] < b[2] and b[1] < a[2]



def _live_calls(server: IvrServer) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.config['admin']['port']}/healthz", timeout=5) as resp:
        return int(json.load(resp)["live_calls"])


def test_paths_wait_for_free_slots_when_the_target_holds_other_calls(tmp_path: Path) -> None:
    """A 2-slot server with one call held up by someone else, `--parallel 2`, three paths: started together two
    of them would meet a full server (486/503, a FAIL caused by the sweep's own scheduling). `ivr qa` reads the
    target's live calls from its admin API and starts a path only when it has room, so every path passes and
    the server never has more calls up than its slots."""
    cfg = e2e_config(workers=1)
    cfg["schedules"]["office"] = {"timezone": "Europe/London", "hours": ALWAYS_OPEN}
    cfg["sip"]["calls_per_worker"] = 2
    server = start_server(cfg, tmp_path / "srv")
    config = server.workdir / "ivr.yaml"
    try:
        held = sipp(server.sip_port, "long_hold.xml", service="500", tag="held", workdir=tmp_path, duration_ms=15000,
                    variables={"caller": "+15553000005"}, timeout=40, background=True)
        assert isinstance(held, subprocess.Popen)
        end = time.monotonic() + 15
        while _live_calls(server) < 1:
            assert time.monotonic() < end and held.poll() is None, "the held call did not come up"
            time.sleep(0.1)
        code, rows, output, stderr = _qa_run(config, server.sip_port, "--flow", "support", "--dtmf", "info",
                                             "--parallel", "2", "--path", "support.open.press_[012]")
        held.communicate(timeout=40)
    finally:
        server.stop()
    assert code == 0, output
    assert [(r["name"], r["verdict"]) for r in rows] == [
        ("support.open.press_1", "PASS"), ("support.open.press_2", "PASS"), ("support.open.press_0", "PASS")], output
    assert "waited for free call slots" in stderr, stderr  # the held call left one slot: a path had to wait
    assert not server.events("call.rejected"), output
    ended = [(e["started_at"], e["ended_at"]) for e in server.events("call.ended")]
    assert len(ended) == 4, ended  # the held call and the three paths, none refused by pjsua either
    most = max(sum(1 for s, e in ended if s <= at < e) for at, _ in ended)
    assert most <= 2, ended
