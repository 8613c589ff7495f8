"""A generated caller scenario against a SIPp UAS that plays the IVR's awkward moments on purpose: an
in-dialog OPTIONS and a re-INVITE before the REFER, and the BYE overtaking the 200 to the final NOTIFY.
The real server does these only sometimes (the front reorders; pjsip may refresh the session), so a scripted
SIP peer forces them here; real SIPp both sides, loopback only."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from ivr.config.load import load_config
from ivr.scenarios import command
from ivr.scenarios.verdict import judge, parse

pytestmark = pytest.mark.sip
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_generated_caller_tolerates_options_reinvite_and_a_bye_before_the_notify_answer(tmp_path: Path) -> None:
    assert shutil.which("sipp"), "sipp is not installed: scripts/bootstrap installs Debian's sip-tester"
    data = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    data["prompts_dir"] = str(ROOT / "prompts")
    data["demo_crm"]["customers"] = str(ROOT / "config" / "customers.yaml")
    (tmp_path / "ivr.yaml").write_text(yaml.safe_dump(data))
    loaded = load_config(tmp_path / "ivr.yaml")
    at = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC).timestamp()
    gold = next(p for p in command.generate(loaded, ["vip_routing"], at) if p.name == "vip_routing.gold")
    command.write([gold], tmp_path, loaded, 10_000)
    port = _free_udp()
    headers = dict(gold.transfers[0].headers)
    uas = subprocess.Popen(["sipp", "-sf", str(HERE / "edge_ivr_uas.xml"), "-i", "127.0.0.1", "-p", str(port),
                            "-set", "refer_to", gold.transfers[0].uri, "-set", "cid", headers["X-Customer-Id"],
                            "-set", "tier", headers["X-Customer-Tier"],
                            "-mi", "127.0.0.1", "-mp", str(_free_udp()), "-m", "1", "-nostdin", "-timeout", "40s",
                            "-timeout_error", "-trace_err", "-error_file", str(tmp_path / "uas.err")],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        caller = subprocess.run(
            ["sipp", f"127.0.0.1:{port}", "-sf", "vip_routing.gold.info.xml", "-inf", "vip_routing.gold.csv",
             "-i", "127.0.0.1", "-p", str(_free_udp()), "-mi", "127.0.0.1", "-mp", str(_free_udp()), "-m", "1",
             "-nostdin", "-timeout", "40s", "-timeout_error", "-trace_logs", "-log_file", str(tmp_path / "c.log"),
             "-trace_err", "-error_file", str(tmp_path / "c.err")],
            cwd=tmp_path, capture_output=True, text=True, timeout=70)
        uas_out, _ = uas.communicate(timeout=60)
    finally:
        if uas.poll() is None:
            uas.kill()
    errors = (tmp_path / "c.err").read_text() if (tmp_path / "c.err").exists() else ""
    assert caller.returncode == 0, caller.stdout[-2000:] + errors
    assert uas.returncode == 0, uas_out[-2000:]
    log = (tmp_path / "c.log").read_text()
    assert " reinvite " in log
    (call,) = parse(log).values()
    assert judge(gold, call, "info") == []
