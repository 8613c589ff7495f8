"""Suite-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """A command run in-process configures structlog onto the test's captured stderr; undo it afterwards."""
    yield
    structlog.reset_defaults()
