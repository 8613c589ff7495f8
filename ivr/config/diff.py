"""What a configuration reload may change while calls are up, and what needs a restart."""

from __future__ import annotations

from ivr.config.model import IvrConfig

HOT_SECTIONS = ("trunks", "numbers", "queues", "schedules", "flows")
"""Taken by new calls at once on SIGHUP; calls already up finish on the config they started with."""

RESTART_SECTIONS = ("sip", "front", "http", "demo_crm", "admin", "logging", "prompts_dir", "records")
"""Bound to processes, sockets or clients made at start-up: changing them needs `ivr run` restarted."""


def changed_sections(old: IvrConfig, new: IvrConfig) -> list[str]:
    return [name for name in (*HOT_SECTIONS, *RESTART_SECTIONS) if getattr(old, name) != getattr(new, name)]


def _trunk_security(config: IvrConfig) -> dict[str, tuple[str, str]]:
    """Per trunk, its transport and SRTP mode when not the defaults: the front's routing script and the
    workers' SRTP options are made from them at start-up."""
    return {t.name: (t.transport, t.srtp) for t in config.trunks if (t.transport, t.srtp) != ("any", "off")}


def restart_needed(old: IvrConfig, new: IvrConfig) -> list[str]:
    """The changed sections a reload cannot apply (empty: the reload is safe)."""
    blocked = [name for name in changed_sections(old, new) if name in RESTART_SECTIONS]
    if _trunk_security(old) != _trunk_security(new):
        blocked.append("trunks (transport, srtp)")
    return blocked
