"""Records pipeline figures: what a call pays to spool its record, and how fast each store takes records,
live and when replaying a backlog spooled during an outage. PostgreSQL is a private server started here on a
free loopback port (tests/pgkit.py), stopped at the end. Bounded: --records (default 5000) per phase.

    .venv/bin/python bench/records_bench.py [--records 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pgkit import PgServer, free_tcp_port  # noqa: E402
from recordkit import sample  # noqa: E402

from ivr.metrics import Metrics  # noqa: E402
from ivr.records.outbox import Outbox, Sink  # noqa: E402
from ivr.records.pg import PgStore  # noqa: E402
from ivr.records.spool import Spool  # noqa: E402
from ivr.records.sqlite import SqliteStore  # noqa: E402


async def phase(sink: Sink, spool_dir: Path, n: int, tag: str, *, live: bool) -> tuple[float, float]:
    """(µs per submit, records/s until all are stored). live: the outbox runs while records come in;
    otherwise they are all spooled first (an outage) and the outbox starts afterwards (the replay)."""
    outbox = Outbox(Spool(spool_dir), sink, Metrics(), batch_wait=0.2, batch_size=200)
    records = [sample(f"{tag}-{i}", started_at=1e9 + i) for i in range(n)]
    if live:
        outbox.start()
    began = time.perf_counter()
    for record in records:
        outbox.submit(record)
    submit_us = (time.perf_counter() - began) / n * 1e6
    outbox.spool.seal()
    if not live:
        began = time.perf_counter()
        outbox.start()
    while outbox.delivered < n:
        await asyncio.sleep(0.01)
    rate = n / (time.perf_counter() - began)
    await outbox.stop(10)
    return submit_us, rate


async def main(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="ivr-records-bench-"))
    pg = PgServer(free_tcp_port()).start()
    try:
        sqlite = SqliteStore(work / "records.sqlite3")
        await sqlite.open()
        postgres = PgStore(pg.dsn)
        await postgres.open()
        print(f"{'store':<11} {'phase':<7} {'submit µs/record':>17} {'stored records/s':>17}")
        for name, store in (("sqlite", sqlite), ("postgresql", postgres)):
            for live in (True, False):
                label = "live" if live else "replay"
                submit_us, rate = await phase(store, work / f"spool-{name}-{label}", n, f"{name}-{label}",
                                              live=live)
                print(f"{name:<11} {label:<7} {submit_us:>17.1f} {rate:>17.0f}")
        await sqlite.close()
        await postgres.close()
    finally:
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5000)
    asyncio.run(main(min(parser.parse_args().records, 100_000)))
