"""Smoke test of the bench's full-flow caller (sipp-scenarios/bench/full_flow.xml) against the real server:
a few calls through the Kamailio front to 3 workers, every one must pass. No timing assertions: timings
belong to bench/capacity.py. Ports are free ones on 127.0.0.1; SIPp echoes the server's RTP (-rtp_echo).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import e2e_config, start_server
from ivrkit import ROOT, free_port

pytestmark = pytest.mark.sip

CALLS = 5
GOLD = "sip:gold@127.0.0.1:5070"


def test_bench_full_flow_calls_all_pass(tmp_path: Path) -> None:
    if shutil.which("sipp") is None or not Path("/usr/sbin/kamailio").exists():
        pytest.skip("sipp or kamailio not installed")
    cfg = e2e_config(workers=3)
    cfg["front"] = {"mode": "managed", "pike": {"reqs_density": 10000}}  # one caller IP sends every request
    server = start_server(cfg, tmp_path / "server")
    try:
        media = free_port()
        ports = tmp_path / "rtp_ports.csv"
        ports.write_text(f"SEQUENTIAL\n{media};\n")
        argv = ["sipp", f"127.0.0.1:{server.sip_port}", "-sf", str(ROOT / "sipp-scenarios/bench/full_flow.xml"),
                "-inf", str(ports), "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(media),
                "-rtp_echo", "-s", "100", "-m", str(CALLS), "-r", "2", "-l", "10", "-d", "300",
                "-set", "caller", "+15559999999", "-set", "digits", "100002#", "-set", "expected_refer", GOLD,
                "-trace_stat", "-stf", str(tmp_path / "stat.csv"), "-fd", "1", "-trace_err",
                "-nostdin", "-timeout", "25s", "-timeout_error"]
        done = subprocess.run(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=40)
        with (tmp_path / "stat.csv").open() as f:
            rows = list(csv.reader(f, delimiter=";"))
        stats = dict(zip(rows[0], rows[-1], strict=False))
        errors = "".join(p.read_text(errors="replace")[:2000] for p in tmp_path.glob("*_errors.log"))
        assert (done.returncode, stats["SuccessfulCall(C)"], stats["FailedCall(C)"]) == (0, str(CALLS), "0"), errors
        server.wait_for(lambda e: len(server.events("call.ended")) >= CALLS, 10, what=f"{CALLS} call.ended")
        outcomes = [e.get("outcome") for e in server.events("call.ended")]
        assert outcomes == [{"kind": "transfer", "reason": "transferred", "queue": "gold", "uri": GOLD}] * CALLS
    finally:
        server.stop()
