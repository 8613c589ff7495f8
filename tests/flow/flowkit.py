"""Helpers for engine tests (imported by the test modules; conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from ivr.config.model import IvrConfig
from ivr.flow.commands import Answer, FlowCommand
from ivr.flow.events import CallConnected
from ivr.flow.session import CallInfo, FlowSession

T0 = 1772445600.0
"""2026-03-02 10:00:00 UTC, a Monday (10:00 in London, 11:00 in Berlin)."""

ROOT = Path(__file__).resolve().parents[2]


def make_config(steps: list[dict[str, Any]] | None = None, *, flows: dict[str, Any] | None = None,
                **overrides: Any) -> IvrConfig:
    """A valid config with flow `main` (the given steps), trunk `t1`, queues gold/default, endpoint crm."""
    data: dict[str, Any] = {
        "trunks": [{"name": "t1", "sources": ["127.0.0.1"]}],
        "numbers": {"*": "main"},
        "http": {"crm": {"base_url": "http://crm.test", "timeout": 2}},
        "queues": {
            "gold": {"uri": "sip:gold@pbx.test", "headers": {"X-Tier": "{{tier}}"}},
            "default": {"uri": "sip:default@pbx.test"},
        },
        "flows": flows if flows is not None else {"main": {"steps": steps}},
    }
    data.update(overrides)
    return IvrConfig.model_validate(data)


def call(trunk: str = "t1", caller: str = "+15551000001", dialed: str = "100") -> CallInfo:
    return CallInfo(call_id="c1", caller=caller, dialed=dialed, trunk=trunk, sip_call_id="sip-1")


def connect(config: IvrConfig, flow: str = "main", *, now: float = T0, info: CallInfo | None = None,
            ) -> tuple[FlowSession, list[FlowCommand]]:
    """A started, connected session and what it emitted on CallConnected."""
    session = FlowSession(config, flow, info or call(), now)
    assert session.start(now) == [Answer()]
    return session, session.handle(CallConnected(), now)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_yaml_config(path: Path) -> IvrConfig:
    """A tiny stand-in for ivr.config.load: YAML with ${NAME:-default} substitution."""
    text = _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), path.read_text())
    return IvrConfig.model_validate(yaml.safe_load(text))
