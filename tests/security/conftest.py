"""Fixtures of the adversarial suite: one guarded server for all its modules (seckit.py describes it).

The server is started by the first test that asks for it and stopped right after the last one, so it does not
idle through the rest of the suite. One server for
exposure, relay and torture tests: what they prove holds for a server that has already seen the others'
traffic, and it saves two start-ups of two workers and a Kamailio front."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from seckit import IvrServer, security_config

_running: list[IvrServer] = []


@pytest.fixture(scope="session")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrServer]:
    workdir = tmp_path_factory.mktemp("guarded")
    srv = IvrServer(security_config(), workdir).start()
    _running.append(srv)
    assert srv.wait_for(lambda e: e.get("event") == "ivr.ready")["front"] == "managed"
    yield srv
    if srv in _running:  # not stopped early (a run that ends inside tests/security)
        _running.remove(srv)
        srv.stop()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last test of the session that uses `guarded`: stop it now (checking its records), not at the
    session's end."""
    if _running and item is _last_user(item.session):
        _running.pop().stop()


def _last_user(session: pytest.Session) -> pytest.Item | None:
    users = [i for i in session.items if "guarded" in getattr(i, "fixturenames", ())]
    return users[-1] if users else None
