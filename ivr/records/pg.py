"""PostgreSQL record store (several nodes share one database), with psycopg 3's asyncio connection.

psycopg 3 rather than asyncpg: it speaks libpq, so the DSN, ~/.pgpass, PG* environment variables and TLS
settings operators already use work unchanged; its binary wheel needs no compiler; and it is typed. One
connection is enough (batched commits from one writer task); it is reopened after any failure, and a failed
batch stays in the spool to be retried. Migrations take an advisory lock so two nodes starting together do
not race.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket

import psycopg
from psycopg.types.json import Jsonb

from ivr.records.schema import COLUMNS, VERSION_TABLE, CallFilter, migrations, row

_INSERT = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)}) " \
          "ON CONFLICT (uid) DO NOTHING"
_MIGRATION_LOCK = 0x1D7EC0DD
CONNECT_TIMEOUT_S = 3


class PgStore:
    def __init__(self, dsn: str, timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.name = "postgresql"
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._migrated = False

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                await self._conn.close()
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=CONNECT_TIMEOUT_S)
        return self._conn

    async def open(self, *, migrate: bool = True) -> None:
        conn = await self._connection()
        if not migrate:
            return
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute(VERSION_TABLE)
            cursor = await conn.execute("SELECT version FROM schema_version")
            done = {version for (version,) in await cursor.fetchall()}
            for version, statements in migrations("postgresql"):
                if version in done:
                    continue
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version VALUES (%s, %s)",
                                   (version, dt.datetime.now(dt.UTC).isoformat()))
        self._migrated = True

    async def deliver(self, batch: list[dict[str, object]]) -> None:
        """Insert within `timeout`. A hung server (host frozen, network black hole) is not cancelled the
        asyncio way: psycopg would then wait for the server to confirm the cancel. The socket is shut down
        under the stuck statement instead, which fails it at once; the connection is then dropped."""
        rows = [(*values[:-1], Jsonb(data)) for values, data in ((row(d), d) for d in batch)]
        task = asyncio.ensure_future(self._insert(rows))
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            self._sever()
            await asyncio.wait({task}, timeout=CONNECT_TIMEOUT_S)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: logged by the outbox
            raise TimeoutError(f"PostgreSQL did not answer within {self.timeout:g} s")
        task.result()

    async def _insert(self, rows: list[tuple[object, ...]]) -> None:
        try:
            if not self._migrated:
                await self.open()  # the database was down when the server started
            conn = await self._connection()
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(_INSERT, rows)
        except BaseException:
            self._abandon()
            raise

    def _sever(self) -> None:
        """Shut the connection's socket down (not close: the event loop still watches that descriptor)."""
        conn = self._conn
        if conn is None or conn.closed:
            return
        try:
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except OSError:
            pass

    def _abandon(self) -> None:
        """Forget the connection without awaiting: close its socket now."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.pgconn.finish()

    async def query(self, where: CallFilter) -> list[dict[str, object]]:
        clause, params = where.sql("%s")
        conn = await self._connection()
        cursor = await conn.execute(f"SELECT record FROM calls{clause}", params)
        return [record for (record,) in await cursor.fetchall()]  # type: ignore[misc]

    async def purge(self, before: float) -> int:
        conn = await self._connection()
        async with conn.transaction():
            cursor = await conn.execute("DELETE FROM calls WHERE started_at < %s", (before,))
            return cursor.rowcount

    async def _drop(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None

    async def close(self) -> None:
        await self._drop()
