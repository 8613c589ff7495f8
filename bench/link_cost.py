"""The controller's CPU per worker-link round trip: one event read from a worker + one command written back.

The controller end is the product's own code (`WorkerPool._serve` -> sink -> `WorkerPool.send`, `ivr/sip/wire.py`)
on a Unix socketpair; the worker end is a small blocking peer process that sends the events of the bench's
full-flow call in turn and waits for each command (ping-pong, so every event wakes the controller's loop, as
on a quiet worker). Reported: the controller process's CPU seconds (user + sys, `time.process_time`) per
round trip, so the machine's load changes the figure much less than wall time would.

    .venv/bin/python bench/link_cost.py --loop uvloop --rounds 20000 --repeat 3
    .venv/bin/python bench/link_cost.py --loop asyncio --rounds 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import uvloop

from ivr.config.model import SipConfig
from ivr.flow import commands, events
from ivr.sip import wire
from ivr.workers import WorkerPool, WorkerSpec

CALL = "c1a2b3c4"
EVENTS: tuple[events.WorkerEvent, ...] = (
    events.CallOffered(source="127.0.0.1:5060", caller="+15553000005", dialed="100",
                       sip_call_id="1-2345@127.0.0.1", headers=(("X-IVR-Trunk", "demo"),)),
    events.CallConnected(),
    *(events.DigitReceived(digit=d, method="info", received_at=1764590000.123) for d in "1234567"),
    events.PlaybackFinished(play_id=3),
    events.TransferProgress(code=200, final=True),
    events.CallEnded(reason="caller_hangup"),
)
REPLY = commands.Play(play_id=3, prompts=("welcome", "menu"), interruptible=True)


def _peer(fd: int, rounds: int) -> None:
    """The worker end: send an event line, wait for the command line, `rounds` times."""
    sock = socket.socket(fileno=fd)
    lines = [wire.encode(CALL, e) for e in EVENTS]
    reader = sock.makefile("rb")
    for i in range(rounds):
        sock.sendall(lines[i % len(lines)])
        if not reader.readline():
            return
    sock.close()


async def _controller(fd: int, rounds: int) -> tuple[float, float]:
    sip = SipConfig()
    spec = WorkerSpec(name="w000", sip_host="127.0.0.1", sip_port=0, rtp_port=0, rtp_port_count=0)
    done = asyncio.get_running_loop().create_future()
    seen = 0
    pool: WorkerPool

    def sink(worker: str, call: str, event: events.WorkerEvent) -> None:
        nonlocal seen
        seen += 1
        pool.send(worker, call, REPLY)
        if seen == rounds and not done.done():
            done.set_result(None)

    lost: Callable[[str], None] = lambda name: None  # noqa: E731
    pool = WorkerPool([spec], prompts_dir="", sip=sip, on_event=sink, on_lost=lost)
    w = pool.workers["w000"]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    task = asyncio.create_task(pool._serve(w, socket.socket(fileno=fd)))
    await done
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert w.writer is not None
    w.writer.close()
    await task
    return cpu, wall


def run_once(loop_name: str, rounds: int) -> dict[str, float]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    peer = subprocess.Popen([sys.executable, __file__, "--peer-fd", str(theirs.fileno()), "--rounds", str(rounds)],
                            pass_fds=(theirs.fileno(),))
    theirs.close()
    runner = uvloop.run if loop_name == "uvloop" else asyncio.run
    cpu, wall = runner(_controller(ours.detach(), rounds))
    peer.wait(timeout=60)
    return {"cpu_us_per_round": cpu / rounds * 1e6, "wall_us_per_round": wall / rounds * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_fd is not None:
        _peer(args.peer_fd, args.rounds)
        return
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(20))  # info, as the product runs
    results = [run_once(args.loop, min(args.rounds, 200_000)) for _ in range(args.repeat)]
    print(json.dumps({"loop": args.loop, "rounds": args.rounds, "load": os.getloadavg()[0],
                      "cpu_us_per_round": [round(r["cpu_us_per_round"], 1) for r in results],
                      "wall_us_per_round": [round(r["wall_us_per_round"], 1) for r in results]}))


if __name__ == "__main__":
    main()
