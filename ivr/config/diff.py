"""What a configuration reload may change while calls are up, and what needs a restart."""

from __future__ import annotations

from ivr.config.model import IvrConfig

HOT_SECTIONS = ("trunks", "numbers", "queues", "schedules", "flows")
"""Taken by new calls at once on SIGHUP; calls already up finish on the config they started with."""

RESTART_SECTIONS = ("sip", "front", "http", "demo_crm", "admin", "logging", "prompts_dir", "records", "tts")
"""Bound to processes, sockets or clients made at start-up: changing them needs `ivr run` restarted."""


def changed_sections(old: IvrConfig, new: IvrConfig) -> list[str]:
    return [name for name in (*HOT_SECTIONS, *RESTART_SECTIONS) if getattr(old, name) != getattr(new, name)]


def _trunk_security(config: IvrConfig) -> dict[str, tuple[str, str]]:
    """Per trunk, its transport and SRTP mode when not the defaults: the front's routing script and the
    workers' SRTP options are made from them at start-up."""
    return {t.name: (t.transport, t.srtp) for t in config.trunks if (t.transport, t.srtp) != ("any", "off")}


def restart_needed(old: IvrConfig, new: IvrConfig) -> list[str]:
    """The changed sections a reload cannot apply (empty: the reload is safe). Trunks are hot for the controller,
    but with a front their sources and registrations are rendered into Kamailio's tables at start-up."""
    blocked = [name for name in changed_sections(old, new) if name in RESTART_SECTIONS]
    if _with_front(new) and _front_view(old) != _front_view(new):
        blocked.append("trunks")
    if _trunk_security(old) != _trunk_security(new):
        blocked.append("trunks (transport, srtp)")
    return blocked


def _with_front(config: IvrConfig) -> bool:
    return config.front.mode in ("managed", "external") or (config.front.mode == "auto" and config.sip.workers > 1)


def _front_view(config: IvrConfig) -> list[tuple[str, tuple[str, ...], object]]:
    return [(trunk.name, trunk.sources, trunk.registration) for trunk in config.trunks]
