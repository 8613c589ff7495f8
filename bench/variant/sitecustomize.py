"""BENCH-ONLY A/B experiments, never loaded by the product: `capacity.py --variant NAME[,NAME]` puts this
directory on the server's PYTHONPATH, and this hook changes one thing after a module of the server is
imported, so a proposed change can be measured without editing the product's code.

media-thread (in each SIP worker, ivr.sip.stack): `medConfig.hasIoqueue = True; medConfig.threadCnt = 1`.
Since 2026-12-01 this is the product's behaviour (with `mainThreadOnly=False` and a hand-over of RFC 4733
digits to the loop: ivr/sip/stack.py), so the variant changes nothing; kept so earlier commands still run.

front-shm-256 (in the controller, ivr.front.kamailio): Kamailio started with `-m 256` (shared memory, MB)
instead of what `memory_flags()` computes (64 MB up to 1,023 call slots).

uvloop (in the controller, ivr.app): the controller's asyncio loop is uvloop's (`uvloop.install()` before
`asyncio.run`); uvloop installed into the venv by hand (`.venv/bin/pip install uvloop`), not a dependency.
Since 2026-12-01 (branch `ctl`) this is the product's behaviour (`uvloop.run` in ivr/app.py, uvloop a
dependency), so the variant changes nothing; kept so earlier commands still run.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

VARIANTS = set(filter(None, os.environ.get("IVR_BENCH_VARIANT", "").split(",")))


def _media_thread(module: Any) -> None:
    original = module.Stack._ep_config

    def _ep_config(self: Any) -> Any:
        cfg = original(self)
        cfg.medConfig.hasIoqueue = True
        cfg.medConfig.threadCnt = 1
        return cfg

    module.Stack._ep_config = _ep_config


def _front_shm(module: Any) -> None:
    original = module.memory_flags

    def memory_flags(config: Any) -> list[str]:
        flags: list[str] = original(config)
        return ["-m", "256", *flags[2:]] if flags[:1] == ["-m"] else flags

    module.memory_flags = memory_flags


def _uvloop(module: Any) -> None:
    import uvloop

    uvloop.install()


PATCHES: dict[str, tuple[str, Callable[[Any], None]]] = {
    "media-thread": ("ivr.sip.stack", _media_thread),
    "front-shm-256": ("ivr.front.kamailio", _front_shm),
    "uvloop": ("ivr.app", _uvloop),
}


class _Hook(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, patch: Callable[[Any], None]) -> None:
        self.module, self.patch = module, patch

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.module:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            self.patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


for _name in sorted(VARIANTS):
    if _name in PATCHES:
        sys.meta_path.insert(0, _Hook(*PATCHES[_name]))
