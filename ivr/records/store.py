"""The record store interface and how the config picks one (SQLite in the run directory, or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ivr.config.records import RecordsConfig
from ivr.records.schema import CallFilter


class RecordStore(Protocol):
    """A database of call records. `deliver` is idempotent (by uid) and raises when the database fails."""

    name: str

    async def open(self, *, migrate: bool = True) -> None:
        """Connect and apply migrations (`migrate=False`: read only, for `ivr calls`/`ivr report`); raises if
        the database cannot be reached."""

    async def deliver(self, batch: list[dict[str, object]]) -> None:
        """Insert records (`CallRecord.as_dict()` form) in one transaction; existing uids are skipped."""

    async def query(self, where: CallFilter) -> list[dict[str, object]]:
        """The records matching `where`, newest first."""

    async def purge(self, before: float) -> int:
        """Delete records that started before `before` (epoch s); how many."""

    async def close(self) -> None: ...


def make_store(config: RecordsConfig, run_dir: Path) -> RecordStore | None:
    """The store the config names, not yet opened; None for `store: none`."""
    if config.store == "none":
        return None
    if config.store == "postgresql":
        from ivr.records.pg import PgStore

        assert config.dsn is not None  # the config model requires it
        return PgStore(config.dsn)
    from ivr.records.sqlite import SqliteStore

    return SqliteStore(run_dir / config.path)
