"""Outbound registrations of the front (Kamailio `uac`), as the controller sees them through `uac.reg_dump`.

Kamailio registers, re-registers `reg_timer_interval + 3` s before expiry, and after a failure (an error answer,
a second 401, no answer) tries again `front.registration_retry` s later. This module turns its records into
states, counts failures, and adds the exponential part of the back-off: after a second consecutive failure it
disables the record (`uac.reg_disable`) and enables it again (`uac.reg_enable`) once the doubled wait is over.

A record's flags (uac_reg.c): 1 disabled, 2 ongoing, 4 online, 8 auth sent, 16 initialised. A failure leaves it
initialised, neither online nor ongoing, with `timer_expires` = failure time + retry; each failure is counted
once, by that timer value. A refresh clears "online" while it is under way: the trunk stays registered until the
expiry granted before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import structlog

from ivr.metrics import Metrics

log = structlog.get_logger(__name__)

DISABLED, ONGOING, ONLINE, INIT = 1, 2, 4, 16
State = Literal["registered", "registering", "failed", "waiting", "expired"]


@dataclass(frozen=True, slots=True)
class RegRecord:
    """The fields of one `uac.reg_dump` entry the controller uses (never the password)."""

    uuid: str
    flags: int
    timer_expires: int


@dataclass(frozen=True, slots=True)
class BackOff:
    """What the controller must do to a record: disable it now, or enable it again."""

    uuid: str
    action: Literal["uac.reg_disable", "uac.reg_enable"]


def parse_dump(result: object) -> list[RegRecord]:
    """`uac.reg_dump` result (a list of objects) -> records; anything malformed is skipped."""
    records: list[RegRecord] = []
    for item in result if isinstance(result, list) else []:
        if isinstance(item, dict) and isinstance(item.get("l_uuid"), str):
            records.append(RegRecord(item["l_uuid"], int(item.get("flags") or 0), int(item.get("timer_expires") or 0)))
    return records


def state_of(record: RegRecord, now: float) -> State:
    if record.flags & ONLINE:
        return "registered" if record.timer_expires > now else "expired"
    if record.flags & ONGOING:
        return "registering"
    if record.flags & DISABLED:
        return "waiting"
    return "failed" if record.flags & INIT else "registering"


@dataclass
class _Trunk:
    name: str
    registered: bool = False
    failures: int = 0
    consecutive: int = 0
    last_failure_timer: int = 0
    enable_at: float | None = None
    enabled_at: float = 0.0
    valid_until: float = 0.0


@dataclass
class Registrations:
    """Registration state per trunk (`reg-<trunk>` records), fed by `update(records, now)` with wall time."""

    metrics: Metrics
    trunks: tuple[str, ...]
    retry: float
    retry_max: float
    _state: dict[str, _Trunk] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._state = {f"reg-{name}": _Trunk(name) for name in self.trunks}
        for name in self.trunks:
            self.metrics.set("ivr_trunk_registered", 0.0, trunk=name)
            self.metrics.inc("ivr_trunk_registration_failures_total", 0.0, trunk=name)

    def update(self, records: list[RegRecord], now: float) -> list[BackOff]:
        """Apply one dump; the back-off actions the controller must send to the front."""
        actions: list[BackOff] = []
        for record in records:
            trunk = self._state.get(record.uuid)
            if trunk is None:
                continue
            state = state_of(record, now)
            if state == "registered":
                trunk.valid_until = record.timer_expires
            # a refresh clears the online flag until its 200 arrives: the binding granted before still holds
            refreshing = state == "registering" and trunk.registered and now < trunk.valid_until
            self._registered(trunk, state == "registered" or refreshing, record, now)
            if state == "failed" and self._new_failure(trunk, record):
                actions += self._failed(trunk, record, now)
            if state == "waiting" and trunk.enable_at is not None and now >= trunk.enable_at:
                trunk.enable_at, trunk.enabled_at = None, now
                actions.append(BackOff(record.uuid, "uac.reg_enable"))
        return actions

    def registered(self) -> dict[str, bool]:
        return {trunk.name: trunk.registered for trunk in self._state.values()}

    def lost(self) -> None:
        """The front is unreachable: nothing is registered through it."""
        for trunk in self._state.values():
            trunk.registered = False
            self.metrics.set("ivr_trunk_registered", 0.0, trunk=trunk.name)

    def _registered(self, trunk: _Trunk, registered: bool, record: RegRecord, now: float) -> None:
        if registered and not trunk.registered:
            log.info("trunk.registered", trunk=trunk.name, expires_in_s=int(record.timer_expires - now),
                     after_failures=trunk.consecutive)
            trunk.consecutive, trunk.enable_at = 0, None
        elif trunk.registered and not registered:
            log.warning("trunk.unregistered", trunk=trunk.name, flags=record.flags)
        trunk.registered = registered
        self.metrics.set("ivr_trunk_registered", 1.0 if registered else 0.0, trunk=trunk.name)

    @staticmethod
    def _new_failure(trunk: _Trunk, record: RegRecord) -> bool:
        """Not counted yet, and not the `now + 1` timer that `uac.reg_enable` itself sets before the next try."""
        return record.timer_expires != trunk.last_failure_timer and record.timer_expires > trunk.enabled_at + 2

    def _failed(self, trunk: _Trunk, record: RegRecord, now: float) -> list[BackOff]:
        trunk.last_failure_timer = record.timer_expires
        trunk.failures += 1
        trunk.consecutive += 1
        wait = min(self.retry * 2 ** (trunk.consecutive - 1), self.retry_max)
        self.metrics.inc("ivr_trunk_registration_failures_total", trunk=trunk.name)
        self.metrics.set("ivr_trunk_registration_retry_seconds", wait, trunk=trunk.name)
        log.warning("trunk.registration_failed", trunk=trunk.name, consecutive=trunk.consecutive,
                    retry_in_s=round(wait, 1))
        if wait <= self.retry:
            return []  # Kamailio's own retry is already due at timer_expires
        trunk.enable_at = record.timer_expires - self.retry + wait
        return [BackOff(record.uuid, "uac.reg_disable")]
