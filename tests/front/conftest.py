"""Fixtures of the front tests: a managed Kamailio in front of SIPp stand-in workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from front_harness import Uas, make_config, need_tools

from ivr.front.kamailio import KamailioProcess

StartFront = Callable[..., Awaitable[tuple[KamailioProcess, list[Uas]]]]


@pytest.fixture
async def front(tmp_path: Path) -> AsyncIterator[StartFront]:
    """start(scenarios=["uas.xml", ...], **make_config kwargs): stand-in workers, then Kamailio."""
    need_tools()
    started: list[tuple[KamailioProcess, list[Uas]]] = []

    async def start(scenarios: Sequence[str] = ("uas.xml",) * 3, **kwargs: Any) -> tuple[KamailioProcess, list[Uas]]:
        config = make_config(workers=len(scenarios), **kwargs)
        uas = [Uas(i, tmp_path, scenario) for i, scenario in enumerate(scenarios)]
        kamailio = KamailioProcess(config, tmp_path / "front")
        started.append((kamailio, uas))
        for worker in uas:
            worker.start()
        await kamailio.start()
        return kamailio, uas

    yield start
    for kamailio, uas in started:
        await kamailio.stop()
        for worker in uas:
            worker.kill()
