"""The controller's view of the managed front: polls it over RPC, turns what it reads into metrics and log lines.

Every `front.poll_interval` seconds: `stats.get_statistics script:` (the refusal counters the cfg keeps with
`update_stat`, see cfg_template.py) and, when a trunk registers, `uac.reg_dump`. Counters become
`ivr_front_refusals_total{code,source}`; one `front.refusals` line per poll carries the increases, only when
there are any. A front that does not answer is a state (`ivr_front_up 0`, one `front.unreachable` line, one
`front.reachable` line when it answers again), never an exception out of the loop.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import structlog

from ivr.front.kamailio import refusal_stats
from ivr.front.registrations import Registrations, parse_dump
from ivr.front.rpc import KamailioRpc, RpcError, RpcUnavailable
from ivr.metrics import Metrics

log = structlog.get_logger(__name__)

_STAT = re.compile(r"^script:(refused_\S+) = (\d+)$")
_KNOWN = {name: (code, cls) for name, code, cls in refusal_stats()}


def parse_refusals(result: object) -> dict[tuple[str, str], int]:
    """`stats.get_statistics` result (lines `script:refused_403_nontrunk = 3`) -> {(code, class): count}."""
    counts: dict[tuple[str, str], int] = {}
    for line in result if isinstance(result, list) else []:
        match = _STAT.match(str(line))
        if match and match.group(1) in _KNOWN:
            counts[_KNOWN[match.group(1)]] = int(match.group(2))
    return counts


class FrontMonitor:
    """Polls one front; `run()` until cancelled, or `poll()` once."""

    def __init__(self, rpc: KamailioRpc, metrics: Metrics, *, interval: float,
                 registrations: Registrations | None = None, wall: Callable[[], float] = time.time) -> None:
        self._rpc = rpc
        self._metrics = metrics
        self._interval = interval
        self._registrations = registrations
        self._wall = wall
        self._last: dict[tuple[str, str], int] = {}
        self.up: bool | None = None
        for _, code, cls in refusal_stats():
            metrics.inc("ivr_front_refusals_total", 0.0, code=code, source=cls)

    def state(self) -> dict[str, object]:
        """For /healthz: whether the front answers (None before the first poll) and which trunks are registered."""
        registered = self._registrations.registered() if self._registrations else {}
        return {"up": self.up, **({"registered": registered} if registered else {})}

    async def drain(self) -> None:
        """Tell the front the node drains: it answers OPTIONS (a tier's probe) and new INVITEs with 503
        (`$shv(draining)`, cfg_template.py). A front that does not answer is logged; the workers' own 503 to
        new INVITEs still holds."""
        try:
            await self._rpc.call("pv.shvSet", "draining", "int", 1)
        except (RpcUnavailable, RpcError) as exc:
            log.warning("front.drain_unset", error=str(exc))
            return
        log.info("front.draining")

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # a bug here must not end the monitoring for the life of the server
                log.exception("front.poll_failed")
            await asyncio.sleep(self._interval)

    async def poll(self) -> None:
        try:
            stats = await self._rpc.call("stats.get_statistics", "script:")
            dump = await self._rpc.call("uac.reg_dump") if self._registrations else None
        except (RpcUnavailable, RpcError) as exc:
            self._down(str(exc))
            return
        if self.up is not True:
            log.info("front.reachable", socket=str(self._rpc.socket_path))
        self.up = True
        self._metrics.set("ivr_front_up", 1.0)
        self._refusals(parse_refusals(stats))
        if self._registrations is not None:
            await self._apply(self._registrations, dump)

    def _down(self, error: str) -> None:
        if self.up is not False:
            log.warning("front.unreachable", socket=str(self._rpc.socket_path), error=error)
        self.up = False
        self._last = {}  # a front that comes back is most likely a new process, counting from 0
        self._metrics.set("ivr_front_up", 0.0)
        if self._registrations is not None:
            self._registrations.lost()

    def _refusals(self, counts: dict[tuple[str, str], int]) -> None:
        deltas: dict[str, int] = {}
        for (code, cls), value in counts.items():
            before = self._last.get((code, cls), 0)
            delta = value - before if value >= before else value  # a restarted front counts from 0 again
            if delta:
                deltas[f"{code}_{cls}"] = delta
                self._metrics.inc("ivr_front_refusals_total", float(delta), code=code, source=cls)
        self._last = counts
        if deltas:
            log.info("front.refusals", total=sum(deltas.values()), refused=deltas)

    async def _apply(self, registrations: Registrations, dump: object) -> None:
        for action in registrations.update(parse_dump(dump), self._wall()):
            try:
                await self._rpc.call(action.action, "l_uuid", action.uuid)
            except (RpcUnavailable, RpcError) as exc:
                log.warning("front.rpc_failed", method=action.action, uuid=action.uuid, error=str(exc))
