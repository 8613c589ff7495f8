"""The controller's CPU per full-flow call in the call router and flow engine, without SIP or sockets.

The product's own `CallRouter`, `HttpClient` (against the in-process demo CRM, cache as configured, so after
the first call both lookups are cache hits, as on the capacity bench), `Metrics` and structlog set-up (info,
JSON, to /dev/null) on uvloop; a scripted worker answers each command with the event a SIPp caller of
`bench/capacity.py` would cause (`sipp-scenarios/bench/full_flow.xml`: caller +15559999999 on 100, greeting
played out, account 100002# keyed over the prompt, REFER accepted, the caller hangs up). Every event reaches
the router from its own loop callback, as a worker link's read callback delivers it. Reported: this process's
CPU seconds (`time.process_time`) per call; `--profile` prints cProfile's top functions instead.

    .venv/bin/python bench/router_cost.py --calls 2000 --repeat 3
    .venv/bin/python bench/router_cost.py --calls 2000 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import time
from pathlib import Path

import uvloop

from ivr import democrm, logs
from ivr.calls import CallRouter
from ivr.config.load import load_config
from ivr.crm import HttpClient
from ivr.flow import commands, events
from ivr.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
CALLER, DIALED, DIGITS = "+15559999999", "100", "100002#"
CONCURRENT = 8
"""Calls in progress at once, on as many workers (the controller sees many workers' calls)."""


class ScriptedWorker:
    """Turns each command the router sends into the event the bench's SIPp call causes, one loop turn later."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.router: CallRouter | None = None
        self.plays: dict[str, int] = {}
        self.ended: dict[str, asyncio.Future[None]] = {}
        self.workers: dict[str, str] = {}
        self.events = 0

    def deliver(self, call_id: str, event: events.WorkerEvent) -> None:
        assert self.router is not None
        self.events += 1
        self.loop.call_soon(self.router.on_event, self.workers[call_id], call_id, event)

    def send(self, worker: str, call_id: str, cmd: commands.WorkerCommand) -> None:
        self.plays[call_id] = self.plays.get(call_id, 0) + isinstance(cmd, commands.Play)
        if isinstance(cmd, commands.Answer):
            self.deliver(call_id, events.CallConnected())
        elif isinstance(cmd, commands.Play) and self.plays[call_id] == 1:  # the greeting is heard out
            self.deliver(call_id, events.PlaybackFinished(cmd.play_id))
        elif isinstance(cmd, commands.Play):  # the account prompt: keyed over it (barge-in)
            for digit in DIGITS:
                self.deliver(call_id, events.DigitReceived(digit, "info", received_at=time.time()))
        elif isinstance(cmd, commands.Transfer):
            self.deliver(call_id, events.TransferProgress(200, final=True))
        elif isinstance(cmd, commands.HangUp):
            self.deliver(call_id, events.CallEnded("local_hangup"))
        elif isinstance(cmd, commands.Reject):
            raise RuntimeError(f"call {call_id} rejected: {cmd}")

    def offer(self, call_id: str, worker: str) -> asyncio.Future[None]:
        self.ended[call_id] = self.loop.create_future()
        self.workers[call_id] = worker
        self.deliver(call_id, events.CallOffered(source="127.0.0.1:5070", caller=CALLER, dialed=DIALED,
                                                 sip_call_id=call_id + "@127.0.0.1"))
        return self.ended[call_id]


async def run(calls: int, profile: bool) -> dict[str, float]:
    loaded = load_config(ROOT / "config" / "ivr.yaml")
    config = loaded.config
    demo = config.demo_crm.model_copy(update={"port": 0})
    runner = await democrm.start(demo, loaded.root)
    host, port = runner.addresses[0][:2]
    crm = config.http["crm"].model_copy(update={"base_url": f"http://{host}:{port}"})
    config = config.model_copy(update={"http": {**config.http, "crm": crm}})
    loop = asyncio.get_running_loop()
    worker = ScriptedWorker(loop)
    async with HttpClient(config.http) as client:
        router = CallRouter(config, worker.send, client, Metrics(), seed=1)
        worker.router = router
        router.on_record = lambda record, *data: worker.ended[record.call_id].set_result(None)
        await worker.offer("warm-up", "w000")  # fills the CRM cache
        sem = asyncio.Semaphore(CONCURRENT)

        async def one(i: int) -> None:
            async with sem:
                await worker.offer(f"c{i}", f"w{i % CONCURRENT:03d}")

        profiler = cProfile.Profile() if profile else None
        worker.events = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        await asyncio.gather(*(one(i) for i in range(calls)))
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await runner.cleanup()
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
    return {"ms_cpu_per_call": round(cpu * 1000 / calls, 3), "ms_wall_per_call": round(wall * 1000 / calls, 3),
            "events_per_call": round(worker.events / calls, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls per repeat (at most 50,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="one repeat under cProfile; prints its top functions")
    args = parser.parse_args()
    logs.configure("info", "json", stream=open(os.devnull, "w"))  # noqa: SIM115  # the product's set-up
    calls = min(args.calls, 50_000)
    results = [uvloop.run(run(calls, args.profile)) for _ in range(1 if args.profile else args.repeat)]
    print(json.dumps({"calls": calls, "load": os.getloadavg()[0],
                      "ms_cpu_per_call": [r["ms_cpu_per_call"] for r in results],
                      "ms_wall_per_call": [r["ms_wall_per_call"] for r in results],
                      "events_per_call": results[0]["events_per_call"]}))


if __name__ == "__main__":
    main()
