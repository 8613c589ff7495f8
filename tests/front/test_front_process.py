"""KamailioProcess: start, stop, and clear errors; no process left behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from front_harness import FRONT_PORT, HOST, make_config, need_tools

from ivr.front.kamailio import FrontError, KamailioProcess
from ivr.front.probe import options_ping

PORT = FRONT_PORT + 5


def group_members(pgid: int) -> list[int]:
    """PIDs whose process group is pgid (Kamailio runs in its own session)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


async def test_start_answers_options_and_stop_leaves_no_process(tmp_path: Path) -> None:
    need_tools()
    front = KamailioProcess(make_config(workers=2, listen_port=PORT), tmp_path)
    await front.start()
    try:
        assert front.running and front.pid is not None
        assert len(group_members(front.pid)) > 2  # main + receivers + timers
        answer = await options_ping(HOST, PORT, transport="tcp", timeout=1.0)
        assert answer is not None and answer.startswith("SIP/2.0 200 ")
    finally:
        await front.stop()
    assert not front.running and front.returncode is not None
    assert group_members(front.pid) == []


async def test_port_in_use_is_a_clear_error_with_kamailio_stderr(tmp_path: Path) -> None:
    need_tools()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((HOST, PORT + 1))
        front = KamailioProcess(make_config(workers=1, listen_port=PORT + 1), tmp_path, start_timeout=5.0)
        with pytest.raises(FrontError, match="Address already in use"):
            await front.start()
    assert front.pid is not None and not front.running
    assert group_members(front.pid) == []


async def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    config = make_config(workers=1, listen_port=PORT + 2, front={"kamailio": str(tmp_path / "no-kamailio")})
    with pytest.raises(FrontError, match="cannot start"):
        await KamailioProcess(config, tmp_path).start()


async def test_a_relative_run_dir_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ivr run --run-dir run` (the default) hands a relative path; Kamailio runs with its cwd inside it."""
    need_tools()
    monkeypatch.chdir(tmp_path)
    process = KamailioProcess(make_config(workers=2, listen_port=PORT + 2), Path("run") / "front")
    await process.start()
    try:
        assert process.running
    finally:
        await process.stop()


CONTROLLER = """
import asyncio, sys
from pathlib import Path
sys.path.insert(0, {harness!r})
from front_harness import make_config
from ivr.front.kamailio import KamailioProcess

async def main() -> None:
    front = KamailioProcess(make_config(workers=2, listen_port={port}), Path({run_dir!r}))
    await front.start()
    print("front-pid", front.pid, flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_a_killed_controller_takes_its_front_with_it(tmp_path: Path) -> None:
    """SIGKILL of the process that started Kamailio (a crashed `ivr run`) must not leave an orphan front holding
    the public port: the next start would fail with the port in use."""
    need_tools()
    script = CONTROLLER.format(harness=str(Path(__file__).parent), port=PORT, run_dir=str(tmp_path))
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as controller:
        assert controller.stdout is not None
        lines = iter(controller.stdout.readline, "")
        pid = next(int(line.split()[1]) for line in lines if line.startswith("front-pid "))
        assert group_members(pid), "kamailio did not start"
        controller.kill()
        controller.wait(10)
    deadline = time.monotonic() + 10
    while group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(pid) == [], "kamailio outlived the controller that started it"
