"""The PostgreSQL store against a real server: migrations, idempotent inserts, filters, retention, outage."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from pgkit import PgServer
from recordkit import sample

from ivr.cli import main
from ivr.records.pg import PgStore
from ivr.records.schema import CallFilter

ROOT = Path(__file__).resolve().parents[2]


async def test_migrations_are_versioned_and_idempotent(pg: PgServer) -> None:
    for _ in range(2):
        store = PgStore(pg.dsn)
        await store.open()
        await store.close()
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        indexes = {name for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'calls'")}
    assert {"calls_pkey", "calls_started", "calls_caller", "calls_queue", "calls_tier", "calls_flow"} <= indexes


async def test_insert_is_idempotent_and_filters_work(pg: PgServer) -> None:
    store = PgStore(pg.dsn)
    await store.open()
    records = [sample(f"pg-{i}", caller=f"+1555000{i % 3}", started_at=1000.0 + i, tier="gold" if i % 2 else "silver")
               for i in range(10)]
    await store.deliver(records)
    await store.deliver(records[:5])  # a batch delivered again after a crash: no duplicates
    assert len(await store.query(CallFilter(since=1000.0, until=1010.0))) == 10
    gold = await store.query(CallFilter(tier="gold", since=1000.0, until=1010.0))
    assert [r["uid"] for r in gold] == ["pg-9", "pg-7", "pg-5", "pg-3", "pg-1"]  # newest first
    by_caller = await store.query(CallFilter(caller="+15550001", since=1000.0, until=1010.0))
    assert {r["uid"] for r in by_caller} == {"pg-1", "pg-4", "pg-7"}
    assert by_caller[0] == records[7]  # the stored record is the record, unchanged
    assert await store.purge(1005.0) == 5
    assert len(await store.query(CallFilter(since=0, until=1010.0))) == 5
    await store.close()


async def test_deliver_raises_while_the_server_is_down_and_works_after(pg: PgServer) -> None:
    store = PgStore(pg.dsn)
    await store.open()
    pg.kill()
    with pytest.raises(psycopg.Error):
        await store.deliver([sample("down-1", started_at=2000.0)])
    pg.start()
    await store.deliver([sample("down-1", started_at=2000.0)])
    assert [r["uid"] for r in await store.query(CallFilter(since=2000.0, until=2001.0))] == ["down-1"]
    await store.close()


async def test_ivr_calls_and_report_read_postgresql(pg: PgServer, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    store = PgStore(pg.dsn)
    await store.open()
    now = time.time()
    await store.deliver([sample("cli-1", caller="+15558880001", started_at=now - 60, queue="sales"),
                         sample("cli-2", caller="+15558880002", started_at=now - 30, queue=None)])
    await store.close()
    cfg = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    cfg["records"] = {"store": "postgresql", "dsn": pg.dsn}
    config = tmp_path / "ivr.yaml"
    config.write_text(yaml.safe_dump(cfg))
    args = [str(config), "--run-dir", str(tmp_path), "--since", "5m", "--json"]
    assert await asyncio.to_thread(main, ["calls", *args, "--caller", "+15558880001"]) == 0
    assert [r["uid"] for r in json.loads(capsys.readouterr().out)] == ["cli-1"]
    assert await asyncio.to_thread(main, ["report", *args]) == 0
    rows = {(r["dimension"], r["key"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[("all", "all")]["calls"] == 2 and rows[("queue", "sales")]["transferred"] == 1
