"""SQLite record store: one file in the run directory, WAL, synchronous=FULL, on a thread of its own.

FULL (not NORMAL) because a segment of the spool is deleted once its batch committed: the commit must then
survive a power loss too. One connection on one dedicated thread, so the event loop never waits on disk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ivr.records.schema import COLUMNS, VERSION_TABLE, CallFilter, migrations, row

T = TypeVar("T")

_INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) " \
          "ON CONFLICT (uid) DO NOTHING"


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"sqlite:{path}"
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="records-sqlite")

    async def _call(self, func: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._db is None:
                raise sqlite3.OperationalError("store not open")
            return func(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def open(self, *, migrate: bool = True) -> None:
        def connect() -> None:
            if not migrate:  # a reader (ivr calls, ivr report) never writes to a live server's database
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10.0,
                                           check_same_thread=False)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            _migrate(db)
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def deliver(self, batch: list[dict[str, object]]) -> None:
        rows = [row(data) for data in batch]

        def insert(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.executemany(_INSERT, rows)

        await self._call(insert)

    async def query(self, where: CallFilter) -> list[dict[str, object]]:
        clause, params = where.sql("?")
        rows = await self._call(lambda db: db.execute(f"SELECT record FROM calls{clause}", params).fetchall())
        return [json.loads(text) for (text,) in rows]

    async def purge(self, before: float) -> int:
        def delete(db: sqlite3.Connection) -> int:
            with _transaction(db):
                return db.execute("DELETE FROM calls WHERE started_at < ?", (before,)).rowcount

        return await self._call(delete)

    async def close(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _migrate(db: sqlite3.Connection) -> None:
    db.execute(VERSION_TABLE)
    with _transaction(db):
        done = {v for (v,) in db.execute("SELECT version FROM schema_version")}
        for version, statements in migrations("sqlite"):
            if version in done:
                continue
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?, ?)", (version, dt.datetime.now(dt.UTC).isoformat()))
