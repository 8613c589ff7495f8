"""The workers' zygote (ivr/sip/zygote.py, ivr/zygote_link.py): a forked worker is a real worker (it says
WorkerReady, its title names ivr.sip.worker), shares the zygote's imported pages, has its exit code
reported, and everything dies with the controller."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from sip_harness import HOST, PROMPTS, ROOT, next_ports

from ivr.zygote_link import Zygote


def worker_argv(fd: int, tmp: Path) -> list[str]:
    ports = next_ports()
    return ["--name", "w000", "--control-fd", str(fd), "--sip-host", HOST, "--sip-port", str(ports.sip),
            "--rtp-port", str(ports.rtp), "--rtp-port-count", "20", "--media-address", HOST,
            "--prompts", str(PROMPTS), "--recordings", str(tmp / "rec"), "--log-level", "warning"]


def rollup(pid: int) -> dict[str, int]:
    lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    return {line.split(":")[0]: int(line.split()[1]) for line in lines}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_forked_worker_is_ready_shares_the_imports_and_its_exit_is_reported(tmp_path: Path) -> None:
    async def scenario() -> None:
        zygote = Zygote()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child = await zygote.spawn(worker_argv(theirs.fileno(), tmp_path), theirs.fileno())
            theirs.close()
            reader, writer = await asyncio.open_unix_connection(sock=ours)
            async with asyncio.timeout(20):
                ready = json.loads(await reader.readline())
            assert ready["t"] == "WorkerReady" and ready["pid"] == child.pid
            cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
            assert b"ivr.sip.worker" in cmdline and b"--sip-port" in cmdline
            assert os.getsid(child.pid) == child.pid  # its own session, as start_new_session gave it
            # the imported modules are the zygote's pages: shared, not copied (a started worker has ~0)
            assert rollup(child.pid)["Shared_Dirty"] > 4096, rollup(child.pid)
            os.kill(child.pid, signal.SIGKILL)
            async with asyncio.timeout(10):
                assert await child.wait() == -signal.SIGKILL
            writer.close()
            # the next worker comes from the same zygote
            ours2, theirs2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            second = await zygote.spawn(worker_argv(theirs2.fileno(), tmp_path), theirs2.fileno())
            theirs2.close()
            reader2, writer2 = await asyncio.open_unix_connection(sock=ours2)
            async with asyncio.timeout(20):
                assert json.loads(await reader2.readline())["pid"] == second.pid
            writer2.close()  # EOF: the worker hangs up and exits on its own
            async with asyncio.timeout(15):
                assert await second.wait() == 0
        finally:
            await zygote.close()

    asyncio.run(scenario())


CONTROLLER = """
import asyncio, socket, sys
from ivr.zygote_link import Zygote
argv = sys.argv[1:]

async def main():
    zygote = Zygote()
    ours, theirs = socket.socketpair()
    argv[argv.index("--control-fd") + 1] = str(theirs.fileno())
    child = await zygote.spawn(argv, theirs.fileno())
    reader, _ = await asyncio.open_unix_connection(sock=ours)
    await reader.readline()
    print("PIDS", zygote.pid, child.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_zygote_and_workers_die_with_a_killed_controller(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CONTROLLER, *worker_argv(0, tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = ""
        while not line.startswith("PIDS"):
            line = proc.stdout.readline()
            assert line, "controller exited before its worker was ready"
        zygote, worker = (int(x) for x in line.split()[1:])
        assert alive(zygote) and alive(worker)
        proc.kill()
        proc.wait(10)
        assert wait_gone([zygote, worker]) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_more_requests_than_the_socket_queues_wait_their_turn() -> None:
    """~170 spawn requests fill the SOCK_SEQPACKET queue; the rest wait for room instead of failing. A
    stopped zygote makes the queue fill; each child exits at once (bad argv: argparse's exit code 2)."""
    async def scenario() -> None:
        zygote = Zygote()
        await zygote._ensure_started()
        os.kill(zygote.pid, signal.SIGSTOP)
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(220)]
        try:
            spawns = [asyncio.create_task(zygote.spawn(["--not-an-option"], fd)) for fd in fds]
            await asyncio.sleep(1.0)
            assert not any(t.done() for t in spawns)  # all queued or waiting for room, none failed
            os.kill(zygote.pid, signal.SIGCONT)
            children = await asyncio.gather(*spawns)
            async with asyncio.timeout(60):
                codes = await asyncio.gather(*(c.wait() for c in children))
            assert codes == [2] * len(fds)
        finally:
            os.kill(zygote.pid, signal.SIGCONT)
            for fd in fds:
                os.close(fd)
            await zygote.close()

    asyncio.run(scenario())
