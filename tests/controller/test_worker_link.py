"""The controller's end of a worker link: lines split across reads, several lines in one read, a bad line
skipped, commands written back, EOF ends the link; a line that never ends cuts the link."""

from __future__ import annotations

import asyncio
import socket

from ivr.config.model import SipConfig
from ivr.flow import commands, events
from ivr.sip import wire
from ivr.workers import MAX_LINE, WorkerPool, WorkerSpec

SPEC = WorkerSpec(name="w000", sip_host="127.0.0.1", sip_port=0, rtp_port=0, rtp_port_count=0)


def pool_with_sink() -> tuple[WorkerPool, list[tuple[str, str, events.WorkerEvent]]]:
    got: list[tuple[str, str, events.WorkerEvent]] = []
    pool = WorkerPool([SPEC], prompts_dir="", sip=SipConfig(), on_event=lambda *a: got.append(a),
                      on_lost=lambda name: None)
    return pool, got


async def test_lines_in_any_chunking_reach_the_sink_and_commands_go_back() -> None:
    pool, got = pool_with_sink()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(pool._serve(pool.workers["w000"], ours))
    ready = wire.encode("", events.WorkerReady(worker="w000", pid=1, sip_port=5, max_calls=4))
    digit = wire.encode("c1", events.DigitReceived(digit="5", method="info"))
    ended = wire.encode("c1", events.CallEnded(reason="caller_hangup"))
    for i in range(0, len(ready + digit), 17):  # lines split across reads
        await loop.sock_sendall(theirs, (ready + digit)[i:i + 17])
        await asyncio.sleep(0.005)
    await loop.sock_sendall(theirs, b"not json\n" + ended)  # several lines in one read, a bad one skipped
    for _ in range(100):
        if len(got) == 2:
            break
        await asyncio.sleep(0.01)
    assert pool.workers["w000"].ready.is_set()
    assert got == [("w000", "c1", events.DigitReceived(digit="5", method="info")),
                   ("w000", "c1", events.CallEnded(reason="caller_hangup"))]
    pool.send("w000", "c1", commands.HangUp(reason="done"))
    line = await asyncio.wait_for(loop.sock_recv(theirs, 4096), 5)
    assert wire.decode(line) == ("c1", commands.HangUp(reason="done"))
    theirs.close()
    await asyncio.wait_for(serving, 5)


async def test_a_line_that_never_ends_cuts_the_link() -> None:
    pool, got = pool_with_sink()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    serving = asyncio.create_task(pool._serve(pool.workers["w000"], ours))
    await asyncio.get_running_loop().sock_sendall(theirs, b"x" * (MAX_LINE + 10))
    await asyncio.wait_for(serving, 10)
    assert got == []
    theirs.close()
