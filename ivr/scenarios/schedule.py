"""Which paths of an `ivr qa` run may be called at the same time (pure: jobs in, waves out).

A path's verdict may depend on state of the target that other calls share. The one such state `ivr qa` sets
itself is the demo CRM's behaviour: the CRM-fault paths ("slow", "down") are produced by a global switch
(POST /_demo/behaviour), not a per-call control, so every call placed while it is on sees a slow or failing
CRM. Paths are therefore grouped in waves by the CRM behaviour they need: all the ordinary paths ("ok") in
one wave, then one wave per fault class, each run with the switch set for that class only and nothing else
up. Within a wave any jobs may run side by side (up to `--parallel`); they start longest first, so the wave
is not left waiting on one long call started last. The CRM circuit breaker (consecutive failures) is server
state too: the fault waves run last so an opened breaker never meets an ordinary path of the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ivr.scenarios.model import CallPath, CrmClass

WAVE_ORDER: tuple[CrmClass, ...] = ("ok", "slow", "down")
MAX_DEFAULT_PARALLEL = 4


@dataclass(frozen=True)
class Job:
    """One SIPp run: a path played with one DTMF method."""

    path: CallPath
    method: str
    xml: str
    csv: str


@dataclass(frozen=True)
class Wave:
    """Jobs that may run side by side, with the demo CRM behaviour they all need ("ok": normal service)."""

    crm: CrmClass
    jobs: tuple[Job, ...]


def may_run_together(a: Job, b: Job) -> bool:
    """Two jobs may be up at once when neither needs a CRM behaviour the other's calls must not see."""
    return a.path.crm == b.path.crm


def waves(jobs: Sequence[Job]) -> list[Wave]:
    """The jobs grouped by the CRM behaviour they need, ordinary first, each wave's jobs longest first."""
    found: list[Wave] = []
    for crm in WAVE_ORDER:
        members = [j for j in jobs if j.path.crm == crm]
        if members:
            ordered = sorted(members, key=lambda j: -_length(j.path))  # stable: ties keep the paths' order
            found.append(Wave(crm, tuple(ordered)))
    return found


def default_parallel(capacity: int) -> int:
    """Paths at once when --parallel is not given: half the target's calls (sip.workers x calls_per_worker),
    leaving room for a path whose call overlaps the next one's, at most MAX_DEFAULT_PARALLEL, at least 1."""
    return max(1, min(MAX_DEFAULT_PARALLEL, capacity // 2))


def _length(path: CallPath) -> float:
    """The engine's seconds from answer to the call's end (the last REFER or the BYE)."""
    return max([path.end_at, *(t.at for t in path.transfers)])
