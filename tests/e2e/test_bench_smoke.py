"""Smoke test of the bench's full-flow caller (sipp-scenarios/bench/full_flow.xml) against the real server:
a few calls through the Kamailio front to 3 workers, every one must pass. No timing assertions: timings
belong to bench/capacity.py.

Ports: front 26060, workers 26100-26102, worker RTP 48000-48119, SIPp 26010 (media 26020, echoed by SIPp).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest
from server import ROOT, IvrServer, default_config, free_port

pytestmark = pytest.mark.sip

CALLS = 5
GOLD = "sip:gold@127.0.0.1:5070"


@pytest.fixture
def server(tmp_path: Path):
    if shutil.which("sipp") is None or not Path("/usr/sbin/kamailio").exists():
        pytest.skip("sipp or kamailio not installed")
    config = default_config()
    crm = free_port()
    config["sip"].update(listen_host="127.0.0.1", listen_port=26060, media_address="127.0.0.1", workers=3,
                         worker_base_port=26100, rtp_port_start=48000, drain_timeout="1s")
    config["front"] = {"mode": "managed", "pike": {"reqs_density": 10000}}  # one caller IP sends every call
    config["demo_crm"].update(enabled=True, port=crm)
    config["http"]["crm"]["base_url"] = f"http://127.0.0.1:{crm}"
    config["admin"] = {"enabled": True, "host": "127.0.0.1", "port": free_port()}
    config["logging"] = {"level": "info", "format": "json"}
    srv = IvrServer(config, tmp_path).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_bench_full_flow_calls_all_pass(server: IvrServer, tmp_path: Path) -> None:
    ports = tmp_path / "rtp_ports.csv"
    ports.write_text("SEQUENTIAL\n26020;\n")
    argv = ["sipp", f"127.0.0.1:{server.sip_port}", "-sf", str(ROOT / "sipp-scenarios" / "bench" / "full_flow.xml"),
            "-inf", str(ports), "-i", "127.0.0.1", "-p", "26010", "-mi", "127.0.0.1", "-mp", "26020", "-rtp_echo",
            "-s", "100", "-m", str(CALLS), "-r", "2", "-l", "10", "-d", "300",
            "-set", "caller", "+15559999999", "-set", "digits", "100001#", "-set", "expected_refer", GOLD,
            "-trace_stat", "-stf", str(tmp_path / "stat.csv"), "-fd", "1", "-trace_err",
            "-nostdin", "-timeout", "25s", "-timeout_error"]
    done = subprocess.run(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=40)
    with (tmp_path / "stat.csv").open() as f:
        rows = list(csv.reader(f, delimiter=";"))
    stats = dict(zip(rows[0], rows[-1], strict=False))
    errors = "".join(p.read_text(errors="replace")[:2000] for p in tmp_path.glob("*_errors.log"))
    assert (done.returncode, stats["SuccessfulCall(C)"], stats["FailedCall(C)"]) == (0, str(CALLS), "0"), errors
    for _ in range(CALLS):
        server.wait_for(lambda e: len(server.events("call.ended")) >= CALLS, 10, what=f"{CALLS} call.ended")
    outcomes = [e.get("outcome") for e in server.events("call.ended")]
    assert outcomes == [{"transfer": {"queue": "gold", "uri": GOLD}}] * CALLS
