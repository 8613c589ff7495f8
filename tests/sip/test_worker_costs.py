"""What an idle worker costs and how fast a command is acted on (the loop blocks in pjsip's poll and is
woken by a keep-alive datagram; see ivr/sip/worker.py). Bounds are generous: these catch a polling loop
or a lost wake-up, not a few percent."""

from __future__ import annotations

import os
import statistics
import subprocess
import time

import pytest
from sip_harness import HOST, SCENARIOS

from ivr.flow import commands, events

pytestmark = pytest.mark.sip


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_worker_costs_under_two_percent_of_a_core(spawn_worker):
    worker = spawn_worker(lambda ctl, call, event: None)
    time.sleep(0.5)
    before, start = cpu_seconds(worker.proc.pid), time.monotonic()
    time.sleep(4)
    share = (cpu_seconds(worker.proc.pid) - before) / (time.monotonic() - start)
    print(f"idle worker: {share * 100:.2f}% of a core")
    assert share < 0.02


def test_command_round_trip_is_prompt(spawn_worker):
    """Play of a missing prompt answers with PlaybackFinished at once: controller -> worker -> controller."""

    def answer(ctl, call, event):
        if isinstance(event, events.CallOffered):
            ctl.send(call, commands.Answer())

    worker = spawn_worker(answer, log_level="info")
    argv = ["sipp", f"{HOST}:{worker.ports.sip}", "-sf", str(SCENARIOS / "no_input.xml"), "-i", HOST,
            "-p", str(worker.ports.sipp), "-mi", HOST, "-mp", str(worker.ports.sipp_media), "-m", "1",
            "-s", "100", "-set", "caller", "5551234", "-nostdin", "-timeout", "30s"]
    sipp = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=worker.stderr_path.parent)
    try:
        ctl = worker.ctl
        assert ctl.wait_for(lambda: ctl.of(events.CallConnected), 10)
        (call,) = ctl.calls()
        time.sleep(1.5)  # let the worker settle into its blocking wait
        samples = []
        for play_id in range(1000, 1100):
            sent = time.monotonic()
            ctl.send(call, commands.Play(play_id, ("no-such-prompt",)))
            assert ctl.wait_for(lambda p=play_id: events.PlaybackFinished(p) in ctl.of(events.PlaybackFinished), 2)
            samples.append((time.monotonic() - sent) * 1000)
            time.sleep(0.02)
        samples.sort()
        p50, p99 = statistics.median(samples), samples[98]
        print(f"command round trip: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {samples[-1]:.2f} ms")
        assert p50 < 20 and p99 < 100
        ctl.send(call, commands.HangUp(reason="done"))
        assert sipp.wait(15) == 0
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait()
