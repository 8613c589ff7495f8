"""A PostgreSQL server per test module of tests/records (started and stopped by the suite)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgkit import PgServer, free_tcp_port


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = PgServer(free_tcp_port()).start()
    yield server
    server.cleanup()
