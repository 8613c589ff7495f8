"""Which paths of `ivr qa` may run side by side: the CRM-fault paths (a global switch on the demo CRM) never
run beside a path that would see the switch; everything else may."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
import yaml

from ivr.config.load import load_config
from ivr.scenarios import command
from ivr.scenarios.model import CallPath, ExpectedTransfer
from ivr.scenarios.schedule import Job, default_parallel, may_run_together, waves

ROOT = Path(__file__).resolve().parents[2]
OPEN = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC).timestamp()  # a Tuesday, office open in London


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> list[Job]:
    """Every job `ivr qa` runs for the default config's flows (both DTMF methods where there are digits)."""
    data = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    data["prompts_dir"] = str(ROOT / "prompts")
    data["demo_crm"]["customers"] = str(ROOT / "config" / "customers.yaml")
    path = tmp_path_factory.mktemp("cfg") / "ivr.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    paths = command.generate(load_config(path), None, OPEN)
    return [Job(p, m, f"{p.name}.{m}.xml", f"{p.name}.csv") for p in paths for m in command.variants(p)]


def test_the_default_flows_crm_fault_paths_run_alone_one_class_at_a_time(jobs: list[Job]) -> None:
    planned = waves(jobs)
    assert [w.crm for w in planned] == ["ok", "slow", "down"]
    ok, slow, down = planned
    assert {j.path.name for j in slow.jobs} == {"vip_routing.unknown.crm_slow"}
    assert {j.path.name for j in down.jobs} == {"vip_routing.unknown.crm_down"}
    assert all(j.path.crm == "ok" for j in ok.jobs)
    assert len(ok.jobs) > 40  # the ordinary paths of both flows, both DTMF methods, all in one wave
    # every job exactly once, whatever wave it is in
    assert sorted((j.path.name, j.method) for w in planned for j in w.jobs) == sorted(
        (j.path.name, j.method) for j in jobs)


def test_only_jobs_needing_the_same_crm_behaviour_may_run_together(jobs: list[Job]) -> None:
    by_name = {(j.path.name, j.method): j for j in jobs}
    gold = by_name[("vip_routing.gold", "info")]
    typed = next(j for j in jobs if j.method == "rfc4733" and j.path.crm == "ok")
    slow = by_name[("vip_routing.unknown.crm_slow", "info")]
    down = by_name[("vip_routing.unknown.crm_down", "info")]
    support = next(j for j in jobs if j.path.flow == "support")
    assert may_run_together(gold, typed) and may_run_together(gold, support)
    assert not may_run_together(gold, slow) and not may_run_together(support, down)
    assert not may_run_together(slow, down)
    for wave in waves(jobs):
        assert all(may_run_together(a, b) for a in wave.jobs for b in wave.jobs)


def _path(name: str, end_at: float, refer_at: float | None = None, crm: str = "ok") -> CallPath:
    transfers = () if refer_at is None else (ExpectedTransfer("q", "sip:q@h", (), 200, refer_at),)
    base = CallPath(name=name, flow="f", description="", dialed="100", caller="+1", fresh_caller=False,
                    crm="ok", keys="", presses=(), transfers=transfers, end="hangup", end_reason="done",
                    end_at=end_at, steps=(), prompts=(), at=0.0, reachable_now=True)
    return dataclasses.replace(base, crm=crm)  # type: ignore[arg-type]


def test_a_wave_starts_its_longest_calls_first_and_keeps_the_paths_order_on_ties() -> None:
    lengths = {"short": 3.0, "long": 30.0, "mid_a": 10.0, "mid_b": 10.0, "late_refer": 2.0}
    jobs = [Job(_path(n, s, 25.0 if n == "late_refer" else None), "info", "", "") for n, s in lengths.items()]
    (wave,) = waves(jobs)
    assert [j.path.name for j in wave.jobs] == ["long", "late_refer", "mid_a", "mid_b", "short"]


def test_waves_of_fault_paths_come_after_the_ordinary_ones_whatever_the_input_order() -> None:
    jobs = [Job(_path("down", 5, crm="down"), "info", "", ""), Job(_path("a", 5), "info", "", ""),
            Job(_path("slow", 5, crm="slow"), "info", "", ""), Job(_path("b", 5), "info", "", "")]
    assert [(w.crm, [j.path.name for j in w.jobs]) for w in waves(jobs)] == [
        ("ok", ["a", "b"]), ("slow", ["slow"]), ("down", ["down"])]
    assert waves([]) == []


@pytest.mark.parametrize(("capacity", "parallel"), [(1, 1), (2, 1), (3, 1), (6, 3), (8, 4), (72, 4)])
def test_the_default_parallelism_is_half_the_targets_capacity_at_most_four(capacity: int, parallel: int) -> None:
    assert default_parallel(capacity) == parallel
