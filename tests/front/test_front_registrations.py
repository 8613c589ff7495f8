"""The registration state machine on scripted `uac.reg_dump` records: states, failures counted once, the
doubling wait (disable, then enable when it is over), the timer `uac.reg_enable` sets not taken for a failure."""

from __future__ import annotations

from structlog.testing import capture_logs

from ivr.front.registrations import BackOff, Registrations, RegRecord, parse_dump, state_of
from ivr.metrics import Metrics

UUID = "reg-carrier"
INIT, ONGOING, ONLINE, DISABLED = 16, 2, 4, 1


def regs(metrics: Metrics) -> Registrations:
    return Registrations(metrics, ("carrier",), retry=10.0, retry_max=25.0)


def gauge(metrics: Metrics, name: str) -> float:
    return metrics.gauges[(name, (("trunk", "carrier"),))]


def failures(metrics: Metrics) -> float:
    return metrics.counters[("ivr_trunk_registration_failures_total", (("trunk", "carrier"),))]


def test_parse_dump_keeps_what_it_needs_and_never_the_password() -> None:
    dump = [{"l_uuid": UUID, "flags": 20, "timer_expires": 1000, "auth_password": "pw"}, {"nope": 1}, "x"]
    assert parse_dump(dump) == [RegRecord(UUID, 20, 1000)]
    assert parse_dump(None) == []


def test_states_from_flags() -> None:
    assert state_of(RegRecord(UUID, 0, 0), 100) == "registering"  # not tried yet
    assert state_of(RegRecord(UUID, INIT | ONGOING, 100), 100) == "registering"
    assert state_of(RegRecord(UUID, INIT | ONLINE, 200), 100) == "registered"
    assert state_of(RegRecord(UUID, INIT | ONLINE, 90), 100) == "expired"
    assert state_of(RegRecord(UUID, INIT, 110), 100) == "failed"
    assert state_of(RegRecord(UUID, INIT | DISABLED, 110), 100) == "waiting"


def test_failures_double_the_wait_and_success_resets_it() -> None:
    metrics = Metrics()
    r = regs(metrics)
    assert gauge(metrics, "ivr_trunk_registered") == 0
    with capture_logs() as logs:
        assert r.update([RegRecord(UUID, INIT, 110)], 100) == []  # first failure: Kamailio retries at 110 itself
        assert r.update([RegRecord(UUID, INIT, 110)], 101) == []  # the same failure seen again: not counted
        assert failures(metrics) == 1
        assert r.update([RegRecord(UUID, INIT, 122)], 112) == [BackOff(UUID, "uac.reg_disable")]  # wait 20
        assert r.update([RegRecord(UUID, INIT | DISABLED, 113)], 112.5) == []
        assert r.update([RegRecord(UUID, INIT | DISABLED, 113)], 131) == []  # 112 + 20 = 132 not reached
        assert r.update([RegRecord(UUID, INIT | DISABLED, 113)], 132) == [BackOff(UUID, "uac.reg_enable")]
        assert r.update([RegRecord(UUID, INIT, 133)], 132.2) == []  # the enable's own now + 1 timer
        assert failures(metrics) == 2
        assert r.update([RegRecord(UUID, INIT, 144)], 134) == [BackOff(UUID, "uac.reg_disable")]
        assert gauge(metrics, "ivr_trunk_registration_retry_seconds") == 25  # capped
        assert r.update([RegRecord(UUID, INIT | ONLINE, 434)], 160) == []
    assert gauge(metrics, "ivr_trunk_registered") == 1
    failed = [(e["consecutive"], e["retry_in_s"]) for e in logs if e["event"] == "trunk.registration_failed"]
    assert failed == [(1, 10.0), (2, 20.0), (3, 25.0)]
    registered = [e for e in logs if e["event"] == "trunk.registered"]
    assert registered == [{"event": "trunk.registered", "log_level": "info", "trunk": "carrier",
                           "expires_in_s": 274, "after_failures": 3}]
    with capture_logs() as logs:
        r.update([RegRecord(UUID, INIT, 500)], 450)  # a refresh fails later: the count starts again at 1
        r.lost()
    assert [e["consecutive"] for e in logs if e["event"] == "trunk.registration_failed"] == [1]
    assert gauge(metrics, "ivr_trunk_registered") == 0


def test_records_of_other_uuids_are_ignored() -> None:
    metrics = Metrics()
    assert regs(metrics).update([RegRecord("reg-other", INIT, 1)], 0) == []
    assert failures(metrics) == 0


def test_a_refresh_under_way_is_not_a_gap() -> None:
    metrics = Metrics()
    r = regs(metrics)
    with capture_logs() as logs:
        r.update([RegRecord(UUID, INIT | ONLINE, 160)], 100)
        r.update([RegRecord(UUID, INIT | ONGOING, 150)], 150)  # uac_reg_send: online cleared, timer = now
        assert gauge(metrics, "ivr_trunk_registered") == 1
        r.update([RegRecord(UUID, INIT | ONLINE, 210)], 150.1)
        r.update([RegRecord(UUID, INIT | ONGOING, 215)], 215)  # a refresh that outlives the old binding
    assert gauge(metrics, "ivr_trunk_registered") == 0
    assert [e["event"] for e in logs] == ["trunk.registered", "trunk.unregistered"]
