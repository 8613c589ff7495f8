"""Fixtures of the adversarial suite: one guarded server per module (seckit.py describes it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from seckit import IvrServer, security_config


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrServer]:
    workdir = tmp_path_factory.mktemp("guarded")
    srv = IvrServer(security_config(), workdir).start()
    assert srv.wait_for(lambda e: e.get("event") == "ivr.ready")["front"] == "managed"
    yield srv
    srv.stop()
