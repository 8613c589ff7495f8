"""What the controller's record path costs per call at a steady call rate: `Records.on_record` (stats, the
record's JSON form, the spool append) plus everything the outbox does for it on its threads (seal + fsync,
read back, SQLite commit, delete), as CPU seconds of this process (all threads) / records. No ports: the
spool and the SQLite file live in a temporary directory, removed at the end. Bounded by --seconds.

    .venv/bin/python bench/record_cost.py --rate 20 --seconds 10 [--batch-wait 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "tests")]

from recordkit import sample  # noqa: E402

from ivr import logs  # noqa: E402
from ivr.config.load import load_config  # noqa: E402
from ivr.metrics import Metrics  # noqa: E402
from ivr.records.model import record_from_dict  # noqa: E402
from ivr.records.service import Records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


async def run(rate: float, seconds: float, batch_wait: float | None) -> dict[str, float]:
    config = load_config(ROOT / "config" / "ivr.yaml").config
    if batch_wait is not None:
        config = config.model_copy(update={"records": config.records.model_copy(update={"batch_wait": batch_wait})})
    work = Path(tempfile.mkdtemp(prefix="record-cost-"))
    try:
        records = Records(config, work, Metrics(), lambda: config)
        await records.start()
        await asyncio.sleep(0.5)
        cpu0, wall0, n = time.process_time(), time.monotonic(), 0
        while time.monotonic() - wall0 < seconds:
            records.on_record(record_from_dict(sample(f"uid-{n}")))
            n += 1
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(2 * config.records.batch_wait + 0.3)  # the last batch is delivered
        cpu = time.process_time() - cpu0
        await records.stop()
        as_dict = record_from_dict(sample("x"))
        t0 = time.process_time()
        for _ in range(2000):
            as_dict.as_dict()
        return {"records": n, "ms_cpu_per_record": round(cpu * 1000 / n, 3),
                "batch_wait_s": config.records.batch_wait,
                "as_dict_us": round((time.process_time() - t0) / 2000 * 1e6, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=20.0, help="records (calls) per second")
    p.add_argument("--seconds", type=float, default=10.0, help="how long (at most 120)")
    p.add_argument("--batch-wait", type=float, help="records.batch_wait (default: config/ivr.yaml's)")
    args = p.parse_args()
    logs.configure("warning", "json")
    result = asyncio.run(run(args.rate, min(args.seconds, 120.0), args.batch_wait))
    print(result)


if __name__ == "__main__":
    main()
