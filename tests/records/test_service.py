"""The records pipeline of `ivr run` (Records): start, a call's record to the store, stop; start-up errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from recordkit import sample, sqlite_rows

from ivr.config.load import load_config
from ivr.errors import IvrError
from ivr.metrics import Metrics
from ivr.records.model import record_from_dict
from ivr.records.service import Records

CONFIG = load_config(Path(__file__).resolve().parents[2] / "config" / "ivr.yaml", check_files=False).config


async def test_a_record_is_stored_by_the_time_records_stop(tmp_path: Path) -> None:
    metrics = Metrics()
    records = Records(CONFIG, tmp_path, metrics)
    await records.start()
    records.on_record(record_from_dict(sample("svc-1")))
    await records.stop()
    assert sqlite_rows(tmp_path / "records.sqlite3") == [sample("svc-1")]
    assert 'ivr_call_records_total{flow="support",outcome="transfer",queue="gold",tier="gold"} 1' in metrics.render()


async def test_an_unreadable_sqlite_file_is_a_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "records.sqlite3").write_bytes(b"this is not a database" * 100)
    records = Records(CONFIG, tmp_path, Metrics())
    with pytest.raises(IvrError, match="record store sqlite:"):
        await records.start()


async def test_records_past_retention_are_deleted_at_start(tmp_path: Path) -> None:
    first = Records(CONFIG, tmp_path, Metrics())
    await first.start()
    first.on_record(record_from_dict(sample("ancient", started_at=1000.0)))
    await first.stop()
    assert len(sqlite_rows(tmp_path / "records.sqlite3")) == 1
    short = CONFIG.model_copy(update={"records": CONFIG.records.model_copy(update={"retention": 86400.0})})
    second = Records(short, tmp_path, Metrics())
    await second.start()
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while sqlite_rows(tmp_path / "records.sqlite3"):
        assert loop.time() < end, "not purged"
        await asyncio.sleep(0.05)
    await second.stop()
