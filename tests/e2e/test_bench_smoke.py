"""Smoke test of the bench's full-flow caller (sipp-scenarios/bench/full_flow.xml) against the real server:
a few calls through the Kamailio front to 3 workers, every one must pass. No timing assertions: timings
belong to bench/capacity.py. Ports are free ones on 127.0.0.1; SIPp echoes the server's RTP (-rtp_echo).
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest
import yaml
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


BENCH = ROOT / "bench"


def _bench_module(name: str) -> ModuleType:
    """A bench/ module (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_peer_kit_call_passes_and_every_call_is_recorded_once(tmp_path: Path) -> None:
    """The ladder's call (bench/peer/ivr_uac.xml on the bench-only flow bench_ivr, its CRM stub) against the real
    server through the front; and the soak's records check: every Call-ID SIPp placed is in the store once."""
    if shutil.which("sipp") is None or not Path("/usr/sbin/kamailio").exists():
        pytest.skip("sipp or kamailio not installed")
    peer = yaml.safe_load((BENCH / "peer" / "peer.yaml").read_text())
    stub_port = free_port()
    peer["http"]["stub"]["base_url"] = f"http://127.0.0.1:{stub_port}"
    cfg = e2e_config(workers=3)
    cfg["front"] = {"mode": "managed", "pike": {"reqs_density": 10000}}
    for section in ("http", "queues", "numbers", "flows"):
        cfg[section].update(peer[section])
    stub = subprocess.Popen([sys.executable, str(BENCH / "peer" / "crm_stub.py"), str(stub_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = start_server(cfg, tmp_path / "server")
    try:
        media = free_port()
        argv = ["sipp", f"127.0.0.1:{server.sip_port}", "-sf", str(BENCH / "peer" / "ivr_uac.xml"),
                "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(media), "-rtp_echo",
                "-s", "700", "-m", str(CALLS), "-r", "2", "-l", "10", "-d", "500",
                "-trace_stat", "-stf", str(tmp_path / "stat.csv"), "-fd", "1", "-trace_err",
                "-nostdin", "-timeout", "25s", "-timeout_error"]
        sipp = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert sipp.wait(40) == 0, "".join(p.read_text(errors="replace")[:2000] for p in tmp_path.glob("*_errors.log"))
        server.wait_for(lambda e: len(server.events("call.ended")) >= CALLS, 10, what=f"{CALLS} call.ended")
        queues = [(e.get("outcome") or {}).get("queue") for e in server.events("call.ended")]
        assert queues == ["q_sales"] * CALLS  # digit 1 -> the stub answers "sales"
        placed = {f"{n}-{sipp.pid}@127.0.0.1" for n in range(1, CALLS + 1)}
        records = _bench_module("soak").records_check(server.workdir / "run" / "records.sqlite3", placed)
        assert (records["recorded_once"], records["missing"], records["more_than_once"]) == (CALLS, 0, 0), records
        with urllib.request.urlopen(f"http://127.0.0.1:{cfg['admin']['port']}/metrics", timeout=5) as r:
            assert "\nivr_live_calls 0\n" in "\n" + r.read().decode()  # the soak's live-call gauge, back to 0
    finally:
        server.stop()
        stub.terminate()
        stub.wait(10)


def test_plot_draws_every_role_of_a_results_file(tmp_path: Path) -> None:
    """bench/plot.py on the committed baseline: one line per process role, with the file's points."""
    out = tmp_path / "bench.svg"
    plot = _bench_module("plot")
    assert plot.main([str(BENCH / "results" / "baseline-20261201.json"), "--out", str(out)]) == 0
    svg = out.read_text()
    ET.fromstring(svg)  # well-formed
    for role in ("all server processes", "workers", "Kamailio", "controller"):
        assert f"{role} (baseline-20261201): 35 -> " in svg
    assert "Asterisk 23.4.1, recorded 2026-11-30" in svg
