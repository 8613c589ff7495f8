"""`ivr calls` and `ivr report` on an SQLite store in a run directory, through the real command line."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from recordkit import sample

from ivr.cli import main
from ivr.records.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "config" / "ivr.yaml")
NOW = time.time()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    records = [
        sample("a", caller="+15550001", started_at=NOW - 600, tier="gold", queue="sales"),
        sample("b", caller="+15550002", started_at=NOW - 500, tier="platinum", queue="sales"),
        sample("c", caller="+15550001", started_at=NOW - 400, tier="gold", queue=None,
               path=("main_menu:9", "main_menu:invalid", "main_menu:exhausted", "goodbye:hangup")),
        sample("d", caller="+15550003", started_at=NOW - 300, tier="gold", queue=None, abandoned=True,
               path=("main_menu:abandoned",)),
        sample("old", started_at=NOW - 3 * 86400),
    ]

    async def fill() -> None:
        store = SqliteStore(tmp_path / "records.sqlite3")
        await store.open()
        await store.deliver(records)
        await store.close()

    asyncio.run(fill())
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_calls_filters_newest_first(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "calls", CONFIG, "--run-dir", str(run_dir), "--caller", "+15550001", "--json")
    assert code == 0
    assert [r["uid"] for r in json.loads(out)] == ["c", "a"]
    code, out, _ = run(capsys, "calls", CONFIG, "--run-dir", str(run_dir), "--outcome", "abandoned", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["caller"], r["outcome"], r["reason"]) for r in rows] == [("+15550003", "abandoned", "caller_hangup")]
    code, out, _ = run(capsys, "calls", CONFIG, "--run-dir", str(run_dir), "--since", "7d", "--tier", "gold")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["STARTED", "CALLER", "DIALED"] and len(lines) == 1 + 4


def test_report_per_flow_queue_tier_and_menu_option(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "report", CONFIG, "--run-dir", str(run_dir), "--since", "1h", "--json")
    assert code == 0
    rows = {(r["dimension"], r["key"]): r for r in json.loads(out)["rows"]}
    total: dict[str, Any] = rows[("all", "all")]
    assert (total["calls"], total["transferred"], total["abandoned"]) == (4, 2, 1)
    assert total["crm_p50_ms"] == 42.5 and total["to_transfer_p99_ms"] == 3100.0
    assert rows[("queue", "sales")]["calls"] == 2 and rows[("tier", "gold")]["calls"] == 3
    assert rows[("menu_option", "support/main_menu=1")]["calls"] == 2
    assert rows[("menu_option", "support/main_menu=other")]["calls"] == 1  # "9" is no option
    assert rows[("menu_option", "support/main_menu=abandoned")]["abandoned"] == 1
    code, out, _ = run(capsys, "report", CONFIG, "--run-dir", str(run_dir), "--since", "1h")
    assert out.splitlines()[1].split()[:3] == ["DIMENSION", "KEY", "CALLS"]


def test_no_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "calls", CONFIG, "--run-dir", str(tmp_path))
    assert code == 2 and "no record store" in err
