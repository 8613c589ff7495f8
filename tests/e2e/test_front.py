"""The single-machine topology of `scripts/run`: `ivr run` with several workers behind its managed Kamailio.
More calls than one worker holds are all answered and transferred; a killed worker is taken out of rotation
and its replacement put back; calls beyond total capacity get 503 + Retry-After; non-trunk and scanner
INVITEs never reach a worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import IVR, ROOT, IvrServer
from recordkit import transferred
from sippkit import SippRun, sipp

pytestmark = pytest.mark.sip

WORKERS = 3  # x 4 calls = 12 slots


@pytest.fixture(scope="module")
def fronted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrServer]:
    srv = start_server(e2e_config(workers=WORKERS), tmp_path_factory.mktemp("front"))
    assert srv.wait_for(lambda e: e.get("event") == "ivr.ready")["front"] == "managed"
    yield srv
    srv.stop()


def gold_calls(server: IvrServer, workdir: Path, tag: str, calls: int) -> list[dict[str, object]]:
    run = sipp(server.sip_port, "dtmf_info_refer.xml", service="100", tag=tag, workdir=workdir, calls=calls,
               concurrency=calls, rate=100, variables={"caller": "+15551000003", "digits": "",
                                                       "expected_refer": f"sip:gold@{QUEUE_HOST}"})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    return [server.call_ended(f"{tag}-{i}-") for i in range(1, calls + 1)]


def test_more_calls_than_one_worker_holds_are_all_answered_and_transferred(fronted: IvrServer,
                                                                            workdir: Path) -> None:
    lines = gold_calls(fronted, workdir, "burst", 8)
    assert all(line["outcome"] == transferred("gold", f"sip:gold@{QUEUE_HOST}") for line in lines)
    assert len({line["worker"] for line in lines}) >= 2
    assert all(line["trunk"] == "demo" for line in lines)  # named by the front's X-IVR-Trunk


def test_calls_beyond_total_capacity_get_503_with_retry_after(fronted: IvrServer, workdir: Path) -> None:
    slots = WORKERS * 4
    run = sipp(fronted.sip_port, "long_hold.xml", service="500", tag="full", workdir=workdir, calls=slots + 2,
               concurrency=slots + 2, rate=50, duration_ms=5000, variables={"caller": "+15553000004"})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert run.log.count("answered") == slots, run.log
    assert run.log.count("rejected 503") == 2, run.log


def test_killed_worker_leaves_rotation_and_its_replacement_returns(fronted: IvrServer, workdir: Path) -> None:
    ready = {e["worker"]: e["pid"] for e in fronted.events("worker.ready")}
    os.kill(ready["w000"], signal.SIGKILL)
    fronted.wait_for(lambda e: e.get("event") == "worker.exited" and e.get("worker") == "w000")
    lines = gold_calls(fronted, workdir, "during", 4)  # dispatcher fails over while w000 is down
    assert all(line["outcome"]["queue"] == "gold" for line in lines)  # type: ignore[index]
    fronted.wait_for(lambda e: e.get("event") == "worker.ready" and e.get("worker") == "w000"
                     and e.get("pid") != ready["w000"])
    fronted.wait_front_active("w000")  # at the front's next OPTIONS probe (every 2 s) that the new w000 answers
    lines = gold_calls(fronted, workdir, "after", 10)
    assert "w000" in {line["worker"] for line in lines}


def test_non_trunk_invite_gets_no_answer_from_the_front_and_reaches_no_worker(fronted: IvrServer) -> None:
    invite = ("INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5999;branch=z9hG4bK-out1;rport\r\n"
              "From: <sip:100@127.0.0.2>;tag=out\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: outsider-1@127.0.0.2\r\n"
              "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.2", 0))
        sock.settimeout(2.0)
        sock.sendto(invite.encode(), ("127.0.0.1", fronted.sip_port))
        with pytest.raises(TimeoutError):
            sock.recv(65535)
    assert not [e for e in fronted.lines if "outsider-" in str(e.get("sip_call_id"))]


def test_scanner_user_agent_gets_no_answer_and_reaches_no_worker(fronted: IvrServer) -> None:
    invite = ("INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-scan1\r\n"
              "From: <sip:100@127.0.0.1>;tag=scan\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: scanner-1@127.0.0.1\r\n"
              "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        sock.sendto(invite.encode(), ("127.0.0.1", fronted.sip_port))
        with pytest.raises(TimeoutError):
            sock.recvfrom(4096)
    assert not [e for e in fronted.lines if "scanner-1" in str(e.get("sip_call_id"))]


def test_external_front_rendered_by_ivr_front_render(tmp_path: Path) -> None:
    """front.mode external (docker-compose): `ivr run` starts only the workers; an operator's Kamailio runs
    the cfg that `ivr front render` wrote, and calls flow through it."""
    cfg = e2e_config(workers=2)
    cfg["front"] = {"mode": "external"}
    server = start_server(cfg, tmp_path / "srv")
    try:
        assert server.wait_for(lambda e: e.get("event") == "ivr.ready")["front"] == "external"
        out = tmp_path / "front"
        rendered = subprocess.run([*IVR, "front", "render", str(server.workdir / "ivr.yaml"), "--out", str(out)],
                                  capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert rendered.returncode == 0, rendered.stderr
        kamailio = subprocess.Popen(["kamailio", "-DD", "-E", "-f", str(out / "kamailio.cfg")], cwd=out,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(1.0)
            lines = gold_calls(server, tmp_path, "external", 2)
            assert all(line["trunk"] == "demo" for line in lines)
        finally:
            os.killpg(kamailio.pid, signal.SIGTERM)
            kamailio.wait(timeout=10)
    finally:
        server.stop()
