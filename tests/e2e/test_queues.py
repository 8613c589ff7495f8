"""Where a transfer goes, end to end with real SIPp on both sides: the caller (sipp-scenarios/refer_to_agent.xml)
acts as the transferee and INVITEs the Refer-To target itself; each target is a SIPp agent (agent.xml) that
asserts the caller data arrived in that INVITE. Round robin over 3 agents, ordered failover past a refusing
agent, and account-manager routing from the demo CRM (reached, outside the allow-list, refusing)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from agents import Agent
from conftest import e2e_config, start_server
from ivrkit import ROOT, IvrServer
from recordkit import transferred
from sippkit import SippRun, free_udp_port, sipp

pytestmark = pytest.mark.sip


def transfer_flow(queue: str) -> dict[str, Any]:
    return {"description": f"Straight to queue {queue}.", "steps": [
        {"id": "hand_over", "type": "transfer", "queue": queue, "notify_timeout": "8s", "on_fail": "bye"},
        {"id": "bye", "type": "hangup", "reason": "no_target"}]}


def call(server: IvrServer, workdir: Path, tag: str, service: str, caller: str = "+15553000001", *,
         calls: int = 1, concurrency: int = 1) -> SippRun:
    run = sipp(server.sip_port, "refer_to_agent.xml", service=service, tag=tag, workdir=workdir,
               variables={"caller": caller}, calls=calls, concurrency=concurrency, rate=10, timeout=120)
    assert isinstance(run, SippRun)
    return run


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


def test_round_robin_spreads_30_concurrent_calls_evenly(tmp_path: Path, agents: list[Agent]) -> None:
    agents += [Agent(f"agent{i}", tmp_path).start() for i in range(3)]
    cfg = e2e_config(workers=3)
    cfg["queues"]["agents"] = {"targets": [{"uri": a.uri} for a in agents], "strategy": "round_robin",
                               "headers": {"X-Customer-Id": "{{call_id}}", "X-Customer-Tier": "rr"},
                               "header_mode": "refer_to"}
    cfg["flows"]["rr"] = transfer_flow("agents")
    cfg["numbers"]["600"] = "rr"
    server = start_server(cfg, tmp_path / "srv")
    try:
        run = call(server, tmp_path, "rr", "600", calls=30, concurrency=10)
        assert run.returncode == 0, run.describe()
        lines = [server.call_ended(f"rr-{n}-") for n in range(1, 31)]
    finally:
        server.stop()
    assert Counter(line["outcome"]["uri"] for line in lines) == {a.uri: 10 for a in agents}
    received = {a.name: a.calls() for a in agents}
    assert {name: len(calls) for name, calls in received.items()} == {a.name: 10 for a in agents}
    ids = sorted(c.customer for calls in received.values() for c in calls)
    assert ids == sorted(line["call_id"] for line in lines)  # each call's data reached exactly one agent
    assert all(c.tier == "rr" for calls in received.values() for c in calls)


def test_round_robin_routes_around_an_agent_that_dies_mid_run(tmp_path: Path, agents: list[Agent]) -> None:
    """agent1 takes 3 calls and exits; the calls whose turn is agent1 after that get no answer from it (the
    transferee NOTIFYs 408 after 4 s) and move on to agent2. Every call still reaches an agent."""
    agents += [Agent("agent0", tmp_path).start(), Agent("agent1", tmp_path).start(calls=3),
               Agent("agent2", tmp_path).start()]
    cfg = e2e_config(workers=3)
    cfg["queues"]["agents"] = {"targets": [{"uri": a.uri} for a in agents], "strategy": "round_robin",
                               "headers": {"X-Customer-Id": "{{call_id}}", "X-Customer-Tier": "rr"},
                               "header_mode": "refer_to"}
    cfg["flows"]["rr"] = transfer_flow("agents")
    cfg["numbers"]["600"] = "rr"
    server = start_server(cfg, tmp_path / "srv")
    try:
        run = call(server, tmp_path, "die", "600", calls=15, concurrency=6)
        assert run.returncode == 0, run.describe()
        lines = [server.call_ended(f"die-{n}-") for n in range(1, 16)]
    finally:
        server.stop()
    a0, a1, a2 = agents
    assert all(line["outcome"]["kind"] == "transfer" for line in lines)
    tries = Counter(tuple((t["uri"], t["result"]) for t in line["transfers"]) for line in lines)
    assert tries == {((a0.uri, "ok"),): 5, ((a1.uri, "ok"),): 3, ((a1.uri, "rejected_408"), (a2.uri, "ok")): 2,
                     ((a2.uri, "ok"),): 5}
    assert (len(a0.calls()), len(a1.calls()), len(a2.calls())) == (5, 3, 7)


def test_ordered_skips_a_refusing_target_with_calls_at_once(tmp_path: Path, agents: list[Agent]) -> None:
    agents += [Agent("busy", tmp_path, answer="486").start(), Agent("free", tmp_path).start()]
    cfg = e2e_config(workers=2)
    cfg["queues"]["ordered"] = {"targets": [{"uri": a.uri} for a in agents], "strategy": "ordered",
                                "headers": {"X-Customer-Id": "{{call_id}}", "X-Customer-Tier": "any"},
                                "header_mode": "both"}
    cfg["flows"]["ordered"] = transfer_flow("ordered")
    cfg["numbers"]["601"] = "ordered"
    server = start_server(cfg, tmp_path / "srv")
    try:
        run = call(server, tmp_path, "ord", "601", calls=12, concurrency=6)
        assert run.returncode == 0, run.describe()
        lines = [server.call_ended(f"ord-{n}-") for n in range(1, 13)]
    finally:
        server.stop()
    busy, free = agents
    for line in lines:
        assert [(t["uri"], t["result"]) for t in line["transfers"]] == [(busy.uri, "rejected_486"), (free.uri, "ok")]
        assert line["outcome"] == transferred("ordered", free.uri)
        assert line["path"] == ["hand_over:ok"]
    ids = sorted(line["call_id"] for line in lines)
    assert sorted(c.customer for c in busy.calls()) == ids
    assert sorted(c.customer for c in free.calls()) == ids


def manager_config(tmp_path: Path, manager_port: int, gold: Agent) -> dict[str, Any]:
    """The default VIP flow, with Grace Hopper's phone (and the allow-list) pointing at 127.0.0.1:manager_port."""
    customers = yaml.safe_load((ROOT / "config" / "customers.yaml").read_text())
    for customer in customers["customers"]:
        am = customer.get("account_manager") or {}
        if am.get("name") == "Grace Hopper":
            am["sip"] = f"sip:grace.hopper@127.0.0.1:{manager_port}"
    path = tmp_path / "customers.yaml"
    path.write_text(yaml.safe_dump(customers))
    cfg = e2e_config()
    cfg["demo_crm"]["customers"] = str(path)
    cfg["queues"]["account_managers"]["allow"] = [f"sip:*@127.0.0.1:{manager_port}"]
    cfg["queues"]["gold"] |= {"uri": f"sip:gold@127.0.0.1:{gold.port}", "header_mode": "both"}
    return cfg


@dataclass
class Managed:
    """One server for the account-manager tests: the gold queue's agent stays up; each test starts Grace's phone
    (answering as it needs) on the port her CRM record names, and stops it."""

    server: IvrServer
    gold: Agent
    manager_port: int


@pytest.fixture(scope="module")
def managed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Managed]:
    workdir = tmp_path_factory.mktemp("managers")
    gold = Agent("gold", workdir).start()
    try:
        port = free_udp_port()
        server = start_server(manager_config(workdir, port, gold), workdir / "srv")
        try:
            yield Managed(server, gold, port)
        finally:
            server.stop()
    finally:
        gold.stop()


@pytest.mark.parametrize("answer", ["200", "486"])
def test_gold_customer_reaches_the_account_manager_or_the_gold_queue(tmp_path: Path, agents: list[Agent],
                                                                     managed: Managed, answer: str) -> None:
    manager = Agent("grace", tmp_path, answer=answer, port=managed.manager_port).start()
    agents.append(manager)
    gold, seen = managed.gold, len(managed.gold.calls())
    run = call(managed.server, tmp_path, f"am{answer}", "100", caller="+15551000001")
    assert run.returncode == 0, run.describe()
    line = managed.server.call_ended(f"am{answer}-")
    assert [(c.customer, c.tier) for c in manager.calls()] == [("C-1001", "gold")]
    assert manager.calls()[0].ruri == f"sip:grace.hopper@127.0.0.1:{manager.port}"
    if answer == "200":
        assert line["outcome"] == transferred("account_managers", manager.uri.replace(
            "grace@", "grace.hopper@"))
        assert gold.calls()[seen:] == []
    else:
        assert "to_manager:rejected_486" in line["path"]
        assert line["outcome"] == transferred("gold", gold.uri)
        assert [(c.customer, c.tier) for c in gold.calls()[seen:]] == [("C-1001", "gold")]


def test_manager_outside_the_allow_list_ends_in_the_gold_queue(tmp_path: Path, agents: list[Agent],
                                                               managed: Managed) -> None:
    manager = Agent("grace", tmp_path, port=managed.manager_port).start()
    agents.append(manager)
    gold, seen = managed.gold, len(managed.gold.calls())
    run = call(managed.server, tmp_path, "annie", "100", caller="+15551000003")  # Annie Easley: pbx.partner.example
    assert run.returncode == 0, run.describe()
    line = managed.server.call_ended("annie-")
    skipped = line["transfers"][0]
    assert {k: skipped[k] for k in ("step", "queue", "uri", "result", "code", "sent_at")} == {
        "step": "to_manager", "queue": "account_managers", "uri": "sip:annie.easley@pbx.partner.example",
        "result": "disallowed", "code": None, "sent_at": None}
    assert "to_manager:target_disallowed" in line["path"]
    assert line["outcome"] == transferred("gold", gold.uri)
    assert manager.calls() == [] and [c.customer for c in gold.calls()[seen:]] == ["C-1003"]
