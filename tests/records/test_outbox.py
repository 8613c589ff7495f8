"""Spool + outbox + SQLite store: batched delivery, nothing lost while the sink fails, replay after a crash."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from pgkit import PgServer
from recordkit import sample

from ivr.metrics import Metrics
from ivr.records.outbox import Outbox
from ivr.records.pg import PgStore
from ivr.records.schema import CallFilter
from ivr.records.spool import Spool, SpoolError
from ivr.records.sqlite import SqliteStore

ALL = CallFilter(since=0.0)


class Flaky:
    """A real store behind a switch: while `down`, every delivery fails (the sink's seam, not the database)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.name = "flaky"
        self.down = True
        self.attempts = 0

    async def deliver(self, batch: list[dict[str, object]]) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("database unreachable")
        await self.store.deliver(batch)

    async def close(self) -> None:
        await self.store.close()


async def until(predicate: object, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_records_are_stored_in_batches_and_the_spool_empties(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    await store.open()
    spool = Spool(tmp_path / "spool")
    outbox = Outbox(spool, store, Metrics(), batch_wait=0.05, batch_size=7)
    outbox.start()
    for i in range(50):
        outbox.submit(sample(f"c{i}", started_at=1000.0 + i))
    await until(lambda: outbox.delivered == 50)
    await outbox.stop(5)
    assert spool.pending() == []
    rows = await store.query(ALL)
    assert sorted(r["uid"] for r in rows) == sorted(f"c{i}" for i in range(50))
    assert rows[0] == sample("c49", started_at=1049.0)
    await store.close()


async def test_nothing_is_lost_while_the_sink_is_down(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    await store.open()
    sink = Flaky(store)
    spool = Spool(tmp_path / "spool")
    metrics = Metrics()
    outbox = Outbox(spool, sink, metrics, batch_wait=0.02, batch_size=10, retry_max=0.2)
    outbox.start()
    for i in range(30):
        outbox.submit(sample(f"d{i}", started_at=1000.0 + i))
        await asyncio.sleep(0.005)
    await until(lambda: sink.attempts >= 3)
    assert outbox.down_since is not None and spool.pending()
    sink.down = False
    await until(lambda: outbox.delivered == 30)
    await outbox.stop(5)
    assert len(await store.query(ALL)) == 30 and spool.pending() == []
    assert "ivr_records_sink_up" in metrics.render()
    await store.close()


async def test_a_crashed_runs_spool_is_replayed_at_start_once(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    first = Spool(spool_dir)
    for i in range(5):
        first.append(sample(f"e{i}"))  # the process dies here: appended, never sealed nor delivered
    (spool_dir / "00000000000000000001-000001.jsonl").write_text(
        json.dumps(sample("e0")) + "\n" + '{"uid": "torn", "call_')  # a duplicate and a torn last line
    store = SqliteStore(tmp_path / "r.sqlite3")
    await store.open()
    outbox = Outbox(Spool(spool_dir), store, Metrics(), batch_wait=0.01, batch_size=100)
    outbox.start()
    await until(lambda: outbox.delivered >= 6)
    await outbox.stop(5)
    assert sorted(r["uid"] for r in await store.query(ALL)) == [f"e{i}" for i in range(5)]
    await store.close()


async def test_postgresql_killed_mid_stream_loses_nothing(tmp_path: Path, pg: PgServer) -> None:
    store = PgStore(pg.dsn)
    await store.open()
    outbox = Outbox(Spool(tmp_path / "spool"), store, Metrics(), batch_wait=0.02, batch_size=20, retry_max=0.5)
    outbox.start()
    for i in range(200):
        outbox.submit(sample(f"k{i}", started_at=5000.0 + i))
        if i == 60:
            pg.kill()
        if i == 140:
            pg.start()
        await asyncio.sleep(0.005)
    await until(lambda: outbox.delivered >= 200 and not outbox.spool.pending(), timeout=60)
    await outbox.stop(5)
    rows = [r for r in pg.rows() if str(r["uid"]).startswith("k")]
    assert sorted(r["uid"] for r in rows) == sorted(f"k{i}" for i in range(200))
    await store.close()


def test_an_unwritable_spool_is_a_start_up_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match="not writable"):
        Spool(blocker / "spool")


def test_a_full_disk_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="MB free"):
        Spool(tmp_path / "spool", min_free_mb=1 << 40)


async def test_a_stalled_postgresql_is_timed_out_and_retried(tmp_path: Path, pg: PgServer) -> None:
    """SIGSTOP: the server accepts nothing and answers nothing (a hung database host)."""
    store = PgStore(pg.dsn, timeout=1.0)
    await store.open()
    outbox = Outbox(Spool(tmp_path / "spool"), store, Metrics(), batch_wait=0.02, batch_size=20, retry_max=0.5)
    outbox.start()
    assert pg.proc is not None
    pg.signal_all(signal.SIGSTOP)
    try:
        for i in range(20):
            outbox.submit(sample(f"s{i}", started_at=7000.0 + i))
        await until(lambda: outbox.down_since is not None, timeout=30)
    finally:
        pg.signal_all(signal.SIGCONT)
    await until(lambda: outbox.delivered >= 20 and not outbox.spool.pending(), timeout=60)
    await outbox.stop(5)
    assert sorted(r["uid"] for r in pg.rows() if str(r["uid"]).startswith("s")) == sorted(f"s{i}" for i in range(20))
    await store.close()


async def test_a_spool_that_fills_up_mid_run_falls_back_to_memory(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    await store.open()
    spool = Spool(tmp_path / "spool")
    spool._fd = os.open("/dev/full", os.O_WRONLY)  # every write now fails with ENOSPC, like a full disk
    spool._current = tmp_path / "spool" / "full.jsonl"
    metrics = Metrics()
    outbox = Outbox(spool, store, metrics, batch_wait=0.02, batch_size=10)
    outbox.start()
    for i in range(5):
        outbox.submit(sample(f"f{i}", started_at=1000.0 + i))
    await until(lambda: outbox.delivered == 5)
    await outbox.stop(5)
    assert sorted(r["uid"] for r in await store.query(ALL)) == [f"f{i}" for i in range(5)]
    assert 'ivr_records_spool_errors_total{sink="records"} 5' in metrics.render()
    await store.close()
