"""The tier's health and metrics (`ivr tier run` with `tier.admin_port`): its Kamailio, and each node as the
tier's dispatcher sees it.

Every poll (`tier.probe_interval` seconds) reads `dispatcher.list` over the tier's jsonrpcs socket: the nodes
the running tier has, however its list was last reloaded (SIGHUP or `ivr tier reload` from another shell),
each named by its `duid` (the node's name in the YAML). A node's state is the first letter of its dispatcher
flags: A active, I inactive (its probe failed or it answers 503 while draining), D disabled; else `unknown`.
Served by the project's admin app (ivr/admin.py) and metrics (ivr/metrics.py): /healthz is 200 while Kamailio
answers and at least one node is active, 503 otherwise; /metrics has `ivr_tier_up` and
`ivr_tier_node_state{node,state}` (1 for the node's current state, 0 for the others, as the breaker's state
gauge). A Kamailio that does not answer is a state (`tier.unreachable` once, `tier.reachable` when it answers
again), never an exception.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from ivr.front.rpc import KamailioRpc, RpcError, RpcUnavailable
from ivr.metrics import Metrics

log = structlog.get_logger(__name__)

STATES = ("active", "inactive", "disabled", "unknown")
_FLAG_STATES = {"A": "active", "I": "inactive", "D": "disabled"}


def parse_destinations(result: object) -> dict[str, dict[str, str]]:
    """`dispatcher.list` result -> {duid (else the address): {"address", "state", "flags"}}."""
    found: dict[str, dict[str, str]] = {}
    records = result.get("RECORDS", []) if isinstance(result, dict) else []
    for record in records if isinstance(records, list) else []:
        targets = record.get("SET", {}).get("TARGETS", []) if isinstance(record, dict) else []
        for target in targets if isinstance(targets, list) else [targets]:
            dest = target.get("DEST", {}) if isinstance(target, dict) else {}
            uri, flags = str(dest.get("URI", "")), str(dest.get("FLAGS", ""))
            if not uri:
                continue
            address = uri.removeprefix("sip:").split(";", 1)[0]
            attrs = dest.get("ATTRS", {})
            duid = str(attrs.get("DUID", "")) if isinstance(attrs, dict) else ""
            found[duid or address] = {"address": address, "state": _FLAG_STATES.get(flags[:1], "unknown"),
                                      "flags": flags}
    return found


class TierHealth:
    """What /healthz and /metrics of the tier say; `poll()` refreshes it."""

    def __init__(self, rpc: KamailioRpc, metrics: Metrics, running: Callable[[], bool]) -> None:
        self._rpc = rpc
        self._metrics = metrics
        self._running = running
        self.up: bool | None = None
        self.nodes: dict[str, dict[str, str]] = {}

    async def poll(self) -> None:
        try:
            result = await self._rpc.call("dispatcher.list")
        except (RpcUnavailable, RpcError) as exc:
            if self.up is not False:
                log.warning("tier.unreachable", error=str(exc))
            self._set_up(False)
            return
        if self.up is False:
            log.info("tier.reachable")
        self._set_up(True)
        nodes = parse_destinations(result)
        for node, seen in nodes.items():
            for name in STATES:
                self._metrics.set("ivr_tier_node_state", 1.0 if name == seen["state"] else 0.0, node=node, state=name)
        for gone in set(self.nodes) - set(nodes):  # left the list on a reload: no stale series
            for name in STATES:
                self._metrics.gauges.pop(("ivr_tier_node_state", (("node", gone), ("state", name))), None)
        self.nodes = nodes

    def _set_up(self, up: bool) -> None:
        self.up = up
        self._metrics.set("ivr_tier_up", 1.0 if up else 0.0)

    def health(self) -> dict[str, object]:
        running = self._running()
        active = [name for name, node in self.nodes.items() if node["state"] == "active"]
        return {"ok": running and self.up is True and bool(active), "kamailio": {"running": running, "up": self.up},
                "active_nodes": len(active), "nodes": self.nodes}
