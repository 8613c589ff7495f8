"""Fixtures for engine tests; the config builders and session starter live in flowkit.py."""

from __future__ import annotations

import pytest
from flowkit import ROOT, load_yaml_config

from ivr.config.model import IvrConfig


@pytest.fixture(scope="session")
def default_config() -> IvrConfig:
    return load_yaml_config(ROOT / "config" / "ivr.yaml")
