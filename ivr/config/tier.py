"""The `tier:` section: a Kamailio tier over several IVR nodes (ivr/front/tier.py, README "Beyond one machine")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from ivr.config.base import Strict
from ivr.config.types import Name


class TierNode(Strict):
    name: Name = Field(description="Node name (the dispatcher's duid; logs).")
    address: Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):[0-9]{1,5}$")] = Field(
        description="host:port of the node's own front (its sip.listen_host:listen_port), where the tier sends "
                    "calls and OPTIONS probes.")


class TierConfig(Strict):
    """A Kamailio tier in front of several IVR nodes (each an `ivr run` with its own front). Rendered from the
    same template as a node's front; `ivr tier run CONFIG` runs it, `ivr tier reload CONFIG` re-reads the node
    list without a restart. The trunks of this file are the tier's trunks; every node lists the tier's address
    among its trunk's sources."""

    listen_host: str = Field(description="The tier's public SIP address (where trunks send calls).")
    listen_port: int = Field(5060, ge=1, le=65535, description="The tier's public SIP port (UDP and TCP).")
    nodes: tuple[TierNode, ...] = Field(min_length=1, description="The IVR nodes the tier dispatches to.")
    algorithm: Literal["round_robin", "hash_callid", "priority"] = Field(
        "round_robin", description="Dispatcher algorithm over the nodes: round_robin (4), hash_callid (0), "
        "priority (8: the first active node in list order). All three allow `dispatcher.reload`; call load "
        "(10) does not, and each node already spreads its calls over its workers by load.")
    probe_interval: int = Field(1, ge=1, le=60, description="Seconds between OPTIONS probes of each node; a "
                                "node answering 503 (draining) or not at all leaves rotation at the next probe.")
    admin_host: str = Field("127.0.0.1", description="Address of the tier's admin HTTP endpoint (/healthz: the "
                            "tier's Kamailio and its nodes' dispatcher states; /metrics). Off loopback it needs "
                            "the bearer token of `admin.token_env`, as a node's admin port does.")
    admin_port: int | None = Field(None, ge=1, le=65535, description="Port of the tier's admin endpoint; unset: "
                                   "none.")
    run_dir: str = Field("run/tier", description="Where `ivr tier run` renders the tier's files and its "
                         "jsonrpcs socket (relative to the current directory).")

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, value: tuple[TierNode, ...]) -> tuple[TierNode, ...]:
        for what, keys in (("names", [n.name for n in value]), ("addresses", [n.address for n in value])):
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"duplicate node {what}: {', '.join(dupes)}")
        return value
