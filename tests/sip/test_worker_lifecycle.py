"""The worker's life: hang-ups, capacity, answer timeout, controller loss, SIGTERM, torture messages."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sip_harness import HOST, SCENARIOS, Worker, ivr_script, sipp

from ivr.flow import commands, events

pytestmark = pytest.mark.sip
TORTURE = Path("/work/shared/sip-torture")


def _sipp_log(worker: Worker, scenario: str) -> str:
    logs = sorted(worker.stderr_path.parent.glob(f"{scenario}_*_logs.log"))
    return "".join(p.read_text(errors="replace") for p in logs)


def _hold_calls(worker: Worker, calls: int, hold_ms: int = 2000) -> str:
    sipp(worker, "long_hold.xml", "-d", str(hold_ms), calls=calls, rate="100", timeout=20)
    return _sipp_log(worker, "long_hold")


def test_caller_hangup_during_prompt_frees_the_slot(spawn_worker):
    worker = spawn_worker(ivr_script(prompts=("main_menu",)))
    sipp(worker, "hangup_during_prompt.xml")
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallEnded), 5)
    assert ctl.of(events.CallEnded) == [events.CallEnded(reason="caller_hangup", code=200)]
    assert not ctl.of(events.PlaybackFinished)
    log = _hold_calls(worker, 4)  # every slot is free again: four calls at once are answered
    assert log.count("answered") == 4, log


def test_tcp_call(spawn_worker):
    worker = spawn_worker(ivr_script(prompts=("main_menu",)))
    sipp(worker, "hangup_during_prompt.xml", transport="t1")
    assert worker.ctl.wait_for(lambda: worker.ctl.of(events.CallEnded), 5)
    assert worker.ctl.of(events.CallEnded)[0].reason == "caller_hangup"


def test_fifth_call_on_a_full_worker_gets_486_before_python(spawn_worker):
    worker = spawn_worker(ivr_script(prompts=("hold_music",)))
    log = _hold_calls(worker, 5, hold_ms=2500)
    assert log.count("answered") == 4, log
    assert log.count("rejected 486") == 1, log
    assert len(worker.ctl.calls()) == 4  # pjsua refused the fifth inside pjsip: no CallOffered


def test_unanswered_call_is_rejected_503_with_retry_after(spawn_worker):
    worker = spawn_worker(ivr_script(answer=False), answer_timeout=1.0)
    started = time.monotonic()
    log = _hold_calls(worker, 1)
    assert "rejected 503" in log, log
    assert 0.9 < time.monotonic() - started < 5
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallEnded), 5)
    assert ctl.of(events.CallEnded) == [events.CallEnded(reason="answer_timeout", code=503)]


def test_reject_command_sends_that_status(spawn_worker):
    def script(ctl, call, event):
        if isinstance(event, events.CallOffered):
            ctl.send(call, commands.Reject(code=486, reason="Busy Here", retry_after=30))

    worker = spawn_worker(script)
    assert "rejected 486" in _hold_calls(worker, 1)
    assert worker.ctl.wait_for(lambda: worker.ctl.of(events.CallEnded), 5)
    assert worker.ctl.of(events.CallEnded)[0].reason == "rejected"


def _start_call_then(worker: Worker, stop) -> subprocess.CompletedProcess[str]:
    """A caller who waits for the server's BYE (no_input.xml) while `stop` takes the worker down."""
    argv = ["sipp", f"{HOST}:{worker.ports.sip}", "-sf", str(SCENARIOS / "no_input.xml"), "-i", HOST,
            "-p", str(worker.ports.sipp), "-mi", HOST, "-mp", str(worker.ports.sipp_media), "-m", "1",
            "-s", "100", "-set", "caller", "5551234", "-nostdin", "-timeout", "20s", "-timeout_error"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=worker.stderr_path.parent)
    ctl = worker.ctl
    assert ctl.wait_for(lambda: ctl.of(events.CallConnected), 10), worker.stderr()
    stop()
    assert worker.proc.wait(10) == 0, worker.stderr()
    out, err = proc.communicate(timeout=25)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _clean_exit(worker: Worker) -> None:
    text = worker.stderr()
    assert "Traceback" not in text and "Assertion" not in text and "Segmentation" not in text, text
    assert '"sip.worker.stopped"' in text, text


def test_controller_gone_hangs_up_and_exits_0(spawn_worker):
    worker = spawn_worker(ivr_script(prompts=("hold_music",)))
    result = _start_call_then(worker, worker.close_control)
    assert result.returncode == 0, result.stdout[-2000:]
    _clean_exit(worker)


def test_sigterm_hangs_up_and_exits_0(spawn_worker):
    worker = spawn_worker(ivr_script(prompts=("hold_music",)))
    result = _start_call_then(worker, lambda: worker.proc.send_signal(signal.SIGTERM))
    assert result.returncode == 0, result.stdout[-2000:]
    assert worker.ctl.wait_for(lambda: worker.ctl.of(events.CallEnded), 2)
    assert worker.ctl.of(events.CallEnded)[0].reason == "worker_stopping"
    _clean_exit(worker)


def _options_answered(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        s.settimeout(2)
        me = s.getsockname()[1]
        s.sendto((f"OPTIONS sip:w000@{HOST}:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP {HOST}:{me};rport;branch=z9hG4bK-opt-{time.monotonic_ns()}\r\n"
                  f"From: <sip:probe@{HOST}>;tag=probe\r\nTo: <sip:w000@{HOST}>\r\n"
                  f"Call-ID: probe-{time.monotonic_ns()}@{HOST}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                  "Content-Length: 0\r\n\r\n").encode(), (HOST, port))
        try:
            return s.recv(65535).startswith(b"SIP/2.0 200")
        except TimeoutError:
            return False


@pytest.mark.skipif(not TORTURE.is_dir(), reason="RFC 4475 messages not available")
def test_survives_rfc4475_torture_messages(spawn_worker):
    def script(ctl, call, event):
        if isinstance(event, events.CallOffered):
            ctl.send(call, commands.Reject(code=488, reason="Not Here"))

    worker = spawn_worker(script)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for path in sorted(TORTURE.glob("*.dat")):
            s.sendto(path.read_bytes()[:65000], (HOST, worker.ports.sip))
            time.sleep(0.02)
            assert worker.proc.poll() is None, f"worker died on {path.name}:\n{worker.stderr()[-3000:]}"
            assert _options_answered(worker.ports.sip), f"no OPTIONS answer after {path.name}"
    ctl = worker.ctl
    offered = ctl.calls()
    assert ctl.wait_for(lambda: len(ctl.of(events.CallEnded)) == len(offered), 5)
    worker.ctl.script = ivr_script(prompts=("hold_music",))
    log = _hold_calls(worker, 4)  # no leaked slot: four normal calls at once still answered
    assert log.count("answered") == 4, log
