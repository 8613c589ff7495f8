"""The controller's view of a real Kamailio front over its jsonrpcs socket: every kind of refusal counted by code
and source class, one `front.refusals` line per poll with the increases, a dead front as a logged state."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import StartFront
from front_harness import FRONT_PORT, REGISTRAR_PORT, ROOT, Uas, sip_request, uac_argv, wait_until
from structlog.testing import capture_logs

from ivr.front.monitor import FrontMonitor
from ivr.front.rpc import KamailioRpc, RpcUnavailable
from ivr.metrics import Metrics

pytestmark = pytest.mark.sip

TRUNK, STRANGER, FLOODER = "127.0.0.1", "127.0.0.2", "127.0.0.3"


def refusals(metrics: Metrics) -> dict[str, float]:
    """Non-zero ivr_front_refusals_total as {"403_nontrunk": n}."""
    return {f"{dict(labels)['code']}_{dict(labels)['source']}": value
            for (name, labels), value in metrics.counters.items() if name == "ivr_front_refusals_total" and value}


def in_dialog_stray(source: str) -> str | None:
    """A BYE with a To-tag that belongs to no dialog and carries no Route: nothing to follow."""
    return sip_request("BYE", source=source, headers={"To": f"<sip:100@127.0.0.1:{FRONT_PORT}>;tag=nodialog"})


async def refuse_everything(worker: Uas) -> None:
    """One refusal of each kind; the one slot held by a call so the next INVITE finds the front full."""
    held = subprocess.Popen(uac_argv("uac_call.xml", calls=1, hold_ms=5000), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(wait_until, worker.calls, 10.0, "the held call at the worker")
        answers = {
            "503_trunk": sip_request("INVITE", source=TRUNK),
            "403_nontrunk": sip_request("INVITE", source=STRANGER),
            "483_nontrunk": sip_request("INVITE", source=STRANGER, headers={"Max-Forwards": "0"}),
            "405_trunk": sip_request("MESSAGE", source=TRUNK),
            "400_trunk": sip_request("INVITE", source=TRUNK, headers={"CSeq": "1 OPTIONS"}),
            "481_trunk": in_dialog_stray(TRUNK),  # a dialog the front never made
            "stranger_nontrunk": sip_request("OPTIONS", source=STRANGER, wait=0.3),  # silence
            "scanner_nontrunk": sip_request("INVITE", source=STRANGER, headers={"User-Agent": "friendly-scanner"},
                                            wait=0.3),
        }
    finally:
        held.wait(20)
    for key, answer in answers.items():
        code = key.split("_")[0]
        silent = code in ("scanner", "stranger")
        assert (answer is None) if silent else (answer or "").startswith(f"SIP/2.0 {code} "), (key, answer)
    flood = [sip_request("OPTIONS", source=FLOODER, wait=0.05) for _ in range(16)]  # silence: no wait for answers
    assert flood[-1] is None  # banned


async def test_every_refusal_is_counted_by_code_and_source_class(front: StartFront, tmp_path: Path) -> None:
    kamailio, uas = await front(["uas.xml"], calls_per_worker=1,
                              front={"pike": {"sampling_time": 2, "reqs_density": 6, "remove_latency": 5},
                                     "stranger_invite_reply": "403"})
    metrics = Metrics()
    monitor = FrontMonitor(KamailioRpc(kamailio.rpc_socket), metrics, interval=1.0)
    with capture_logs() as logs:
        await monitor.poll()
        await refuse_everything(uas[0])
        await monitor.poll()
        await monitor.poll()  # nothing new: no second summary line
    counted = refusals(metrics)
    pike = counted.pop("pike_nontrunk")
    silenced = counted.pop("stranger_nontrunk")  # the stranger's OPTIONS and the flood before its ban
    assert counted == {"403_nontrunk": 1, "483_nontrunk": 1, "405_trunk": 1, "400_trunk": 1, "481_trunk": 1,
                       "503_trunk": 1, "scanner_nontrunk": 1}
    assert pike >= 4 and silenced >= 1
    summaries = [e for e in logs if e["event"] == "front.refusals"]
    assert len(summaries) == 1 and summaries[0]["refused"]["403_nontrunk"] == 1
    assert summaries[0]["total"] == 7 + pike + silenced
    assert metrics.gauges[("ivr_front_up", ())] == 1.0
    assert 'ivr_front_refusals_total{code="403",source="worker"} 0' in metrics.render()  # every series exported


async def test_a_dead_front_is_a_logged_state_and_its_return_is_noticed(front: StartFront) -> None:
    kamailio, _ = await front(["uas.xml"], front={"stranger_invite_reply": "403"})
    metrics = Metrics()
    rpc = KamailioRpc(kamailio.rpc_socket, timeout=0.5)
    monitor = FrontMonitor(rpc, metrics, interval=0.1)
    with capture_logs() as logs:
        await monitor.poll()
        assert kamailio.pid is not None
        os.killpg(kamailio.pid, signal.SIGKILL)  # the whole front dies at once, sockets left behind
        for _ in range(3):
            await monitor.poll()
        await kamailio.stop()
        await kamailio.start()
        assert sip_request("INVITE", source=STRANGER) is not None
        await monitor.poll()
    events = [e["event"] for e in logs if e["event"] in ("front.reachable", "front.unreachable", "front.refusals")]
    assert events == ["front.reachable", "front.unreachable", "front.reachable", "front.refusals"]
    assert monitor.up is True and metrics.gauges[("ivr_front_up", ())] == 1.0
    assert refusals(metrics) == {"403_nontrunk": 1}  # the new process counts from 0: nothing lost, nothing doubled


async def test_rpc_to_a_missing_socket_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RpcUnavailable):
        await KamailioRpc(tmp_path / "nothing.sock", timeout=0.2).call("core.version")


async def test_ivr_front_rpc_prints_the_answer_with_passwords_masked(front: StartFront) -> None:
    carrier = {"name": "carrier", "sources": ["127.0.0.9/32"],
               "registration": {"registrar": f"sip:127.0.0.9:{REGISTRAR_PORT - 1}", "user": "acme",
                                "password": "pw-not-printed"}}
    kamailio, _ = await front(["uas.xml"], trunks=[{"name": "demo", "sources": ["127.0.0.1/32"]}, carrier])

    def ivr_rpc(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "ivr", "front", "rpc", *args, "--socket", str(kamailio.rpc_socket)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)

    stats = ivr_rpc("stats.get_statistics", "script:")
    assert stats.returncode == 0 and '"script:refused_403_nontrunk = 0"' in stats.stdout, stats.stdout + stats.stderr
    dump = ivr_rpc("uac.reg_dump")
    assert dump.returncode == 0 and '"l_uuid": "reg-carrier"' in dump.stdout, dump.stdout + dump.stderr
    assert "pw-not-printed" not in dump.stdout and '"auth_password": "***"' in dump.stdout
    await kamailio.stop()
    dead = ivr_rpc("core.version")
    assert dead.returncode == 1 and "ivr front rpc:" in dead.stdout


async def test_a_503_after_the_last_worker_refused_is_counted_once(front: StartFront) -> None:
    """The failure route's 503 (every worker answered 503), not the stateless one of a full front."""
    kamailio, uas = await front(["uas_reject.xml"])
    metrics = Metrics()
    monitor = FrontMonitor(KamailioRpc(kamailio.rpc_socket), metrics, interval=1.0)
    await monitor.poll()
    answer = sip_request("INVITE", source=TRUNK, wait=3.0)
    assert (answer or "").startswith("SIP/2.0 503 "), answer
    await monitor.poll()
    assert refusals(metrics) == {"503_trunk": 1}
    # it did reach the worker (SIPp logs through an asynchronous exec: wait for the line, do not race it)
    await asyncio.to_thread(wait_until, lambda: len(uas[0].calls()) == 1, 5.0, "the INVITE at the worker")
