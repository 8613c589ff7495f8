"""The tier's and the drain's blocks of kamailio.cfg, kept apart from `cfg_template.MAIN` (which names them
`%%{drain_*}` and `%%{load_*}`) so the per-call routing there and the multi-node parts here evolve separately.

Drain (every front): `$shv(draining)` is 0 until the controller sets it over RPC on SIGTERM
(`FrontMonitor.drain`); from then on the front answers OPTIONS (a tier's probe) and new INVITEs with 503 +
Retry-After, so a tier takes the node out of rotation and fails its INVITEs over at once, while the node's live
calls finish. Call load: a node's front keeps algorithm 10's load records where a worker's load changes; a tier
dispatches over nodes with an algorithm `dispatcher.reload` allows and keeps none (the `load` statements are
comments there).
"""

from __future__ import annotations

from ivr.front.cfg_template import CfgTemplate

DRAIN_PARAM = """
# drain (tier_template.py): the controller sets it with `pv.shvSet draining int 1` when the node drains
modparam("pv", "shvset", "draining=i:0")
"""

DRAIN_OPTIONS = CfgTemplate("""\t\tif ($shv(draining) == 1) {  # draining (tier_template.py): leave the tier's rotation
\t\t\tappend_to_reply("Retry-After: %%{retry_after}\\r\\n");
\t\t\tsl_send_reply("503", "Service Unavailable");
\t\t\texit;
\t\t}
""")

DRAIN_DISPATCH = """\tif ($shv(draining) == 1) {  # draining (tier_template.py): new calls elsewhere
\t\troute(FULL);
\t}
"""

LOAD_UPDATE = {"10": "ds_load_update();"}
LOAD_UNSET = {"10": "ds_load_unset();"}
NO_LOAD = "$var(no_load) = 1;  # a no-op: no call load over nodes (tier_template.py)"


def parts(ds_algorithm: str, retry_after: int) -> dict[str, str]:
    """The values of MAIN's drain and load placeholders for a front (algorithm 10) or a tier."""
    return {
        "ds_algorithm": ds_algorithm,
        "drain_param": DRAIN_PARAM,
        "drain_options": DRAIN_OPTIONS.substitute(retry_after=retry_after),
        "drain_dispatch": DRAIN_DISPATCH,
        "load_update": LOAD_UPDATE.get(ds_algorithm, NO_LOAD),
        "load_unset": LOAD_UNSET.get(ds_algorithm, NO_LOAD),
    }

# --- A node behind a tier: the carrier's identity (front.tier_source) ----------------------------------------
# The tier matches the real carrier by its trunk ACL and names it in X-IVR-Trunk, as a front does for its
# workers. A node's front keeps that name only from the tier's address (permissions group TIER_GROUP), only on
# an initial INVITE, and only when it names a trunk of the node's own config; it then names the call after that
# trunk (records, the worker's per-trunk rules, SRTP). Everyone else's X-IVR-* headers are removed as before.
# $var is per process, not per message: reset on every outside request.

TIER_GROUP = 2

TIER_TRUST = CfgTemplate("""\t$var(tier_trunk) = "";
\tif (is_method("INVITE") && !has_totag() && allow_source_address("%%{group}") && $hdr(X-IVR-Trunk) =~ "%%{names}") {
\t\t$var(tier_trunk) = $hdr(X-IVR-Trunk);  # the carrier the tier matched (tier_template.py)
\t}
""")

TIER_TRUNK = """
\tif ($var(tier_trunk) != "") {  # behind a tier: the call is the carrier's, not the tier link's
\t\t$avp(trunk) = $var(tier_trunk);
\t}"""

TIER_TRANSPORT = CfgTemplate("""\t\tif ($var(tier_trunk) == "") {  # the tier checked the transport
%%{check}\t\t}
""")


def tier_trust_parts(trunk_names: list[str], tier_source: str) -> dict[str, str]:
    """The values of MAIN's `tier_trust` and `tier_trunk` placeholders: empty without a tier."""
    if not tier_source:
        return {"tier_trust": "", "tier_trunk": ""}
    names = "^(" + "|".join(trunk_names) + ")$"  # Name: [A-Za-z_][A-Za-z0-9_-]*, literal in a POSIX regex
    return {"tier_trust": TIER_TRUST.substitute(group=TIER_GROUP, names=names), "tier_trunk": TIER_TRUNK}


def tier_transport(check: str, tier_source: str) -> str:
    """A trunk's transport check, skipped for a call the tier passed on (the tier-node hop is UDP/TCP)."""
    if not tier_source or not check:
        return check
    return TIER_TRANSPORT.substitute(check="".join("\t" + line for line in check.splitlines(keepends=True)))
