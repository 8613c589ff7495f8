"""What a configuration reload may change while calls are up, and what needs a restart."""

from __future__ import annotations

from ivr.config.model import IvrConfig

HOT_SECTIONS = ("trunks", "numbers", "queues", "schedules", "flows")
"""Taken by new calls at once on SIGHUP; calls already up finish on the config they started with."""

RESTART_SECTIONS = ("sip", "front", "http", "demo_crm", "admin", "logging", "prompts_dir", "records")
"""Bound to processes, sockets or clients made at start-up: changing them needs `ivr run` restarted."""


def changed_sections(old: IvrConfig, new: IvrConfig) -> list[str]:
    return [name for name in (*HOT_SECTIONS, *RESTART_SECTIONS) if getattr(old, name) != getattr(new, name)]


def restart_needed(old: IvrConfig, new: IvrConfig) -> list[str]:
    """The changed sections a reload cannot apply (empty: the reload is safe)."""
    return [name for name in changed_sections(old, new) if name in RESTART_SECTIONS]
