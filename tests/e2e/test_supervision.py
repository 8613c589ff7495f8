"""The controller keeps its promises when things go wrong: a worker killed mid-call is recorded and
replaced; SIGTERM drains (503 + Retry-After for new calls, live calls finish, orderly exit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import IvrServer
from sippkit import SippRun, collect, sipp

pytestmark = pytest.mark.sip


def live_calls(server: IvrServer) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{server.config['admin']['port']}/calls"
    with urllib.request.urlopen(url, timeout=5) as resp:
        calls: list[dict[str, object]] = json.load(resp)["calls"]
    return calls


def wait_until(predicate: object, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def hold_in_background(server: IvrServer, workdir: Path, tag: str, ms: int) -> subprocess.Popen[str]:
    proc = sipp(server.sip_port, "long_hold.xml", service="500", tag=tag, workdir=workdir, duration_ms=ms,
                variables={"caller": "+15553000005"}, timeout=30, background=True)
    assert isinstance(proc, subprocess.Popen)
    return proc


def test_worker_killed_mid_call_is_recorded_and_replaced(tmp_path: Path) -> None:
    server = start_server(e2e_config(), tmp_path / "srv")
    try:
        holder = hold_in_background(server, tmp_path, "doomed", 20000)
        wait_until(lambda: len(live_calls(server)) == 1)
        pid = server.wait_for(lambda e: e.get("event") == "worker.ready")["pid"]
        os.kill(pid, signal.SIGKILL)
        lost = server.wait_for(lambda e: e.get("event") == "worker.calls_lost")
        assert lost["worker"] == "w000" and len(lost["calls"]) == 1
        line = server.call_ended("doomed-")
        assert line["end_reason"] == "worker_lost"
        server.wait_for(lambda e: e.get("event") == "worker.ready" and e.get("pid") != pid)
        run = sipp(server.sip_port, "dtmf_info_refer.xml", service="300", tag="next", workdir=tmp_path,
                   variables={"caller": "+15553000005", "digits": "2", "expected_refer": f"sip:support@{QUEUE_HOST}"})
        assert isinstance(run, SippRun)
        assert run.returncode == 0, run.describe()
        # the replacement starts its counter again, but its call ids carry its own start: no id is reused
        assert server.call_ended("next-")["call_id"] not in lost["calls"]
        assert line["call_id"] in lost["calls"]
        holder.kill()
        holder.wait()
    finally:
        server.stop()


def test_sigterm_drains_new_calls_get_503_and_live_calls_finish(tmp_path: Path) -> None:
    server = start_server(e2e_config(), tmp_path / "srv")
    assert server.events("ivr.ready")[0]["event_loop"] == "uvloop"  # the signal handlers below are uvloop's
    holder = hold_in_background(server, tmp_path, "draining", 3000)
    wait_until(lambda: len(live_calls(server)) == 1)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for(lambda e: e.get("event") == "ivr.draining")
    late = sipp(server.sip_port, "front/uac_503.xml", service="100", tag="late", workdir=tmp_path, timeout=10)
    assert isinstance(late, SippRun)
    assert late.returncode == 0, late.describe()
    assert "retry-after 7" in late.log, late.describe()
    rejected = server.wait_for(lambda e: e.get("event") == "call.rejected" and "late-" in str(e.get("sip_call_id")))
    assert rejected["code"] == 503
    out, _ = holder.communicate(timeout=30)
    held = collect(holder.returncode, out, tmp_path, "draining")
    assert held.returncode == 0 and "answered" in held.log, held.describe()
    assert server.call_ended("draining-")["end_reason"] == "caller_hangup"
    assert server.proc.wait(timeout=30) == 0
    assert server.events("ivr.stopping")[0]["live_calls"] == 0


def test_sighup_reloads_flows_for_new_calls_and_rejects_unsafe_changes(tmp_path: Path) -> None:
    server = start_server(e2e_config(), tmp_path / "srv")
    path = server.workdir / "ivr.yaml"
    try:
        assert server.proc is not None
        server.config["numbers"]["600"] = "menu"
        path.write_text(yaml.safe_dump(server.config, sort_keys=False))
        server.proc.send_signal(signal.SIGHUP)
        assert server.wait_for(lambda e: e.get("event") == "config.reloaded")["changed"] == ["numbers"]
        run = sipp(server.sip_port, "dtmf_info_refer.xml", service="600", tag="reloaded", workdir=tmp_path,
                   variables={"caller": "+15553000005", "digits": "2", "expected_refer": f"sip:support@{QUEUE_HOST}"})
        assert isinstance(run, SippRun) and run.returncode == 0, run

        path.write_text(path.read_text() + "\nbogus_section: 1\n")
        server.proc.send_signal(signal.SIGHUP)
        bad = server.wait_for(lambda e: e.get("event") == "config.reload_rejected")
        assert bad["reason"] == "invalid" and any("bogus_section" in i for i in bad["issues"])

        server.config["sip"]["retry_after"] = 99
        path.write_text(yaml.safe_dump(server.config, sort_keys=False))
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(lambda e: e.get("event") == "config.reload_rejected" and e.get("reason") == "restart_needed")
        assert server.events("config.reload_rejected")[-1]["sections"] == ["sip"]
        run = sipp(server.sip_port, "dtmf_info_refer.xml", service="600", tag="still", workdir=tmp_path,
                   variables={"caller": "+15553000005", "digits": "1", "expected_refer": f"sip:sales@{QUEUE_HOST}"})
        assert isinstance(run, SippRun) and run.returncode == 0, run
    finally:
        server.stop()


def test_zygote_killed_workers_follow_and_are_started_again(tmp_path: Path) -> None:
    """Workers are forked from the zygote (ivr/sip/zygote.py): if it dies they get SIGTERM (hang up, exit),
    and the pool starts a new zygote and new workers that take calls."""
    server = start_server(e2e_config(), tmp_path / "srv")
    try:
        zygote = server.wait_for(lambda e: e.get("event") == "zygote.ready")["pid"]
        worker = server.wait_for(lambda e: e.get("event") == "worker.ready")["pid"]
        os.kill(zygote, signal.SIGKILL)
        server.wait_for(lambda e: e.get("event") == "zygote.exited" and e.get("pid") == zygote)
        server.wait_for(lambda e: e.get("event") == "worker.exited" and e.get("pid") == worker)
        assert server.wait_for(lambda e: e.get("event") == "zygote.ready" and e.get("pid") != zygote)
        server.wait_for(lambda e: e.get("event") == "worker.ready" and e.get("pid") != worker)
        run = sipp(server.sip_port, "dtmf_info_refer.xml", service="300", tag="after", workdir=tmp_path,
                   variables={"caller": "+15553000005", "digits": "2", "expected_refer": f"sip:support@{QUEUE_HOST}"})
        assert isinstance(run, SippRun)
        assert run.returncode == 0, run.describe()
    finally:
        server.stop()
