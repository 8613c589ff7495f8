"""The Kamailio tier over several IVR nodes: the front's own template, rendered with the nodes as dispatcher set 1.

Topology (README "Beyond one machine"): trunks -> tier (Kamailio) -> each node's front (Kamailio of `ivr run`)
-> that node's workers. The tier is a node's front with three differences, all taken from `tier:` of the YAML:
it listens on `tier.listen_host:listen_port`; its dispatcher set 1 is the nodes' fronts (`duid` = node name),
chosen by an algorithm that `dispatcher.reload` allows (round robin by default; 10, call load, refuses
reloads and each node already balances its own workers by load); it probes every `tier.probe_interval`
seconds with OPTIONS. A node's front answers that probe 503 while its controller drains (cfg_template.py), so
a SIGTERMed node leaves rotation at the next probe, and any INVITE that still reaches it gets 503 and the
tier's failure route tries the next node; a dead node (no 100 Trying within tm's fr_timer) is marked
inactive and the INVITE fails over too. Everything else (trunk checks, dialog-bound in-dialog routing,
topology hiding, refusal counters) is the same code as a node's front.
"""

from __future__ import annotations

from ivr.config.model import IvrConfig
from ivr.config.tier import TierConfig
from ivr.errors import IvrError

ALGORITHMS = {"round_robin": "4", "hash_callid": "0", "priority": "8"}


class NoTier(IvrError):
    """The config has no `tier:` section."""


def tier_of(config: IvrConfig) -> TierConfig:
    if config.tier is None:
        raise NoTier("the config has no tier: section (ivr tier needs one; see README, Beyond one machine)")
    return config.tier


def tier_view(config: IvrConfig) -> IvrConfig:
    """The config as the tier's Kamailio sees it: the tier's listen address, the tier's probing interval, and no
    tier in front of it (a tier trusts no X-IVR-Trunk: it matches the carrier itself)."""
    tier = tier_of(config)
    sip = config.sip.model_copy(update={"listen_host": tier.listen_host, "listen_port": tier.listen_port,
                                        "workers": len(tier.nodes)})
    front = config.front.model_copy(update={"probe_interval": tier.probe_interval, "tier_source": ""})
    return config.model_copy(update={"sip": sip, "front": front})


def tier_algorithm(config: IvrConfig) -> str:
    return ALGORITHMS[tier_of(config).algorithm]


def nodes_list(config: IvrConfig) -> str:
    """Dispatcher set 1 of the tier: one line per node's front; priority falls with the list order (algorithm
    priority takes the first active node)."""
    nodes = tier_of(config).nodes
    transport = "" if "udp" in config.sip.transports else ";transport=tcp"
    lines = ["# setid destination flags priority attributes (the tier's nodes, rendered by ivr.front.tier)"]
    for i, node in enumerate(nodes):
        lines.append(f"1 sip:{node.address}{transport} 0 {len(nodes) - i} duid={node.name}")
    return "\n".join(lines) + "\n"
