"""Benchmark of the CRM path: the real HttpClient against the in-process demo CRM, latency percentiles and reasons.

    .venv/bin/python bench/crm_bench.py --fetches 5000 --concurrency 100 --latency 0.05 --cache
    .venv/bin/python bench/crm_bench.py --status 503        # a broken CRM: watch the breaker fail fast
    .venv/bin/python bench/crm_bench.py --latency 3         # a CRM slower than the budget
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from aiohttp import web

from ivr import democrm, logs
from ivr.config.model import BreakerConfig, CacheConfig, HttpEndpoint
from ivr.crm import HttpClient
from ivr.flow.commands import Fetch
from ivr.flow.events import FetchCompleted

CUSTOMERS = Path(__file__).resolve().parents[1] / "config" / "customers.yaml"


def phones(n: int, known_share: float) -> list[str]:
    known = [p for c in democrm.load_customers(CUSTOMERS) for p in c.phones]
    return [random.choice(known) if random.random() < known_share else "+1555999" + str(random.randrange(10_000))
            for _ in range(n)]


async def run(args: argparse.Namespace) -> None:
    runner = web.AppRunner(democrm.make_app(CUSTOMERS, args.latency), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    if args.status:
        runner.app[democrm.DEMO].set_behaviour(democrm.Behaviour(status=args.status))
    endpoint = HttpEndpoint(base_url="http://" + host + ":" + str(port), timeout=args.budget, retries=1,
                            cache=CacheConfig(ttl=60, stale=600, max_entries=10_000 if args.cache else 0),
                            breaker=BreakerConfig(failures=5, cool_down=30))
    gate = asyncio.Semaphore(args.concurrency)
    elapsed: list[float] = []
    outcomes: Counter[str] = Counter()

    async def one(i: int, phone: str) -> None:
        async with gate:
            result = await client.fetch(Fetch(i, "crm", "GET", "/api/v1/customers", (("phone", phone),),
                                              budget_s=args.budget))
        elapsed.append(result.elapsed_ms)
        if isinstance(result, FetchCompleted):
            outcomes["cached" if result.cached else "ok"] += 1
        else:
            outcomes[result.reason] += 1

    started = time.perf_counter()
    async with HttpClient({"crm": endpoint}) as client:
        await asyncio.gather(*(one(i, p) for i, p in enumerate(phones(args.fetches, args.known))))
        stats = client.stats()["crm"]
    wall = time.perf_counter() - started
    await runner.cleanup()
    q = statistics.quantiles(elapsed, n=100)
    print(f"{args.fetches} fetches in {wall:.2f}s ({args.fetches / wall:.0f}/s), concurrency {args.concurrency}")
    print(f"elapsed ms: p50 {q[49]:.1f}  p95 {q[94]:.1f}  p99 {q[98]:.1f}  max {max(elapsed):.1f}")
    print("outcomes:", dict(outcomes))
    print("client stats:", stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetches", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.02, help="demo CRM latency, seconds")
    parser.add_argument("--status", type=int, default=None, help="make the demo CRM answer this status")
    parser.add_argument("--budget", type=float, default=1.5)
    parser.add_argument("--known", type=float, default=0.7, help="share of callers that are customers")
    parser.add_argument("--cache", action="store_true")
    logs.configure("warning", "console")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
