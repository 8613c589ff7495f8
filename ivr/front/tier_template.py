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
