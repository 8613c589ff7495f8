"""Beyond one machine, on one machine: a Kamailio tier (`ivr tier run`, 127.0.12.10) over two IVR nodes (`ivr run`
with its own front, 127.0.12.11 and 127.0.12.12), records in one shared PostgreSQL, SIPp as the trunk on
127.0.12.1. Calls spread over both nodes; a node added to the YAML joins on `ivr tier reload` without a
restart; a rolling restart (SIGTERM, drain, start again, one node after the other) under a bounded load loses
no call; a SIGKILLed node leaves rotation, new calls fail over to the other node, only its own live calls are
lost, and it records them as lost when it comes back."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import IVR, ROOT, IvrServer
from pgkit import PgServer, free_tcp_port
from recordkit import transferred
from sippkit import SippRun, collect, sipp

pytestmark = pytest.mark.sip

TIER_HOST = "127.0.12.10"
NODE_HOSTS = ("127.0.12.11", "127.0.12.12")
CALLER_HOST = "127.0.12.1"
PROBE_S = 1


def free_port(host: str) -> int:
    """A port free for both UDP and TCP on `host` (SIP listens on both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port on {host}")


def node_config(name: str, host: str, rtp_start: int, dsn: str) -> dict[str, Any]:
    cfg = e2e_config(workers=2)
    cfg["node_name"] = name  # records tell the two nodes on this one machine apart by it
    cfg["sip"].update(listen_host=host, listen_port=free_port(host), worker_host=host, media_address=host,
                      worker_base_port=free_port(host), rtp_port_start=rtp_start, drain_timeout="8s")
    cfg["admin"].update(host=host, port=free_port(host))
    cfg["demo_crm"].update(host=host)
    cfg["http"]["crm"]["base_url"] = f"http://{host}:{cfg['demo_crm']['port']}"
    # The tier is this node's trunk ("link"); the carrier the tier matched comes in its X-IVR-Trunk, trusted only
    # from the tier's address (front.tier_source). The carrier's own sources are never seen by the node.
    cfg["trunks"] = [{**cfg["trunks"][0], "name": "link", "sources": [TIER_HOST]},
                     {**cfg["trunks"][0], "name": "carrier", "sources": ["192.0.2.1/32"]}]
    cfg["front"]["tier_source"] = f"{TIER_HOST}/32"
    cfg["records"] = {"store": "postgresql", "dsn": dsn, "batch_wait": "100ms", "batch_size": 20}
    return cfg


class Tier:
    """`ivr tier run CONFIG` in the background; its JSON log lines in `lines`."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.path = workdir / "tier.yaml"
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    @property
    def port(self) -> int:
        return int(self.config["tier"]["listen_port"])

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def start(self) -> Tier:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write()
        self.proc = subprocess.Popen([*IVR, "tier", "run", str(self.path), "--run-dir", str(self.workdir / "run")],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: any('"tier.ready"' in line for line in self.lines), 30, lambda: "".join(self.lines))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def reload(self) -> None:
        self.write()
        done = subprocess.run([*IVR, "tier", "reload", str(self.path), "--run-dir", str(self.workdir / "run")],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def wait_until(check: Callable[[], bool], timeout: float, why: Callable[[], str] = lambda: "") -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout:g} s\n{why()[-3000:]}")
        time.sleep(0.1)


class Cluster:
    def __init__(self, tmp: Path, pg: PgServer) -> None:
        self.tmp = tmp
        self.pg = pg
        self.configs = [node_config(f"node{i + 1}", host, 34000 + 200 * i, pg.dsn) for i, host in enumerate(NODE_HOSTS)]
        self.nodes: list[IvrServer] = []
        self.retired: list[IvrServer] = []
        """Nodes stopped by a test (restarted or killed): their log lines still count."""
        tier_cfg = e2e_config()
        tier_cfg["trunks"] = [{**tier_cfg["trunks"][0], "name": "carrier", "sources": [CALLER_HOST]}]
        tier_cfg["tier"] = {"listen_host": TIER_HOST, "listen_port": free_port(TIER_HOST), "probe_interval": PROBE_S,
                            "admin_host": TIER_HOST, "admin_port": free_port(TIER_HOST),
                            "nodes": [{"name": "n1", "address": self.address(0)}]}
        self.tier = Tier(tier_cfg, tmp / "tier")

    def address(self, i: int) -> str:
        return f"{NODE_HOSTS[i]}:{self.configs[i]['sip']['listen_port']}"

    def start_node(self, i: int, generation: int = 0) -> IvrServer:
        srv = start_server(self.configs[i], self.tmp / f"node{i + 1}-{generation}")
        if i < len(self.nodes):
            self.retired.append(self.nodes[i])
            self.nodes[i] = srv
        else:
            self.nodes.append(srv)
        return srv

    def all_servers(self) -> list[IvrServer]:
        return [*self.retired, *self.nodes]

    def ended(self, tag: str) -> list[tuple[int, dict[str, Any]]]:
        """(node index, call.ended line) of every call whose SIP Call-ID starts with tag."""
        found = []
        for srv in self.all_servers():
            i = NODE_HOSTS.index(srv.config["sip"]["listen_host"])
            found += [(i, e) for e in srv.events("call.ended") if str(e.get("sip_call_id", "")).startswith(tag)]
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pg = PgServer(free_tcp_port()).start()
    tmp = tmp_path_factory.mktemp("tier")
    c = Cluster(tmp, pg)
    try:
        c.start_node(0)
        c.start_node(1)
        c.tier.start()
        yield c
    finally:
        for srv in c.nodes:
            if srv.proc is not None and srv.proc.poll() is None:
                srv.stop(check_records=False)
        if c.tier.proc is not None:
            c.tier.stop()
        pg.cleanup()


def gold_calls(c: Cluster, workdir: Path, tag: str, calls: int, concurrency: int) -> SippRun:
    run = sipp(c.tier.port, "dtmf_info_refer.xml", service="100", tag=tag, workdir=workdir, calls=calls,
               concurrency=concurrency, rate=20, local_ip=CALLER_HOST, remote_host=TIER_HOST,
               variables={"caller": "+15551000003", "digits": "", "expected_refer": f"sip:gold@{QUEUE_HOST}"})
    assert isinstance(run, SippRun)
    return run


def pg_count(pg: PgServer, tag: str) -> int:
    return sum(1 for r in pg.rows() if str(r.get("sip_call_id", "")).startswith(tag))


def test_a_node_added_to_the_yaml_joins_on_reload_and_calls_spread_over_both(cluster: Cluster,
                                                                              workdir: Path) -> None:
    run = gold_calls(cluster, workdir, "one", 4, 4)
    assert run.returncode == 0, run.describe()
    wait_until(lambda: len(cluster.ended("one-")) == 4, 30)
    assert {i for i, _ in cluster.ended("one-")} == {0}  # only n1 in the tier's list

    cluster.tier.config["tier"]["nodes"].append({"name": "n2", "address": cluster.address(1)})
    cluster.tier.reload()  # no restart of the tier: dispatcher.reload over its jsonrpcs socket
    time.sleep(PROBE_S + 1)
    run = gold_calls(cluster, workdir, "spread", 8, 4)
    assert run.returncode == 0, run.describe()
    wait_until(lambda: len(cluster.ended("spread-")) == 8, 30)
    ended = cluster.ended("spread-")
    assert {i for i, _ in ended} == {0, 1}
    assert all(e["outcome"] == transferred("gold", f"sip:gold@{QUEUE_HOST}") for _, e in ended)
    # The carrier's name, not the tier link's, and not the "sipp" the scenario forges in its own X-IVR-Trunk
    # (the tier removes it, as any front does; the node trusts only the tier's).
    assert all(e["trunk"] == "carrier" for _, e in ended)
    assert {e["node"] for _, e in ended} == {"node1", "node2"}
    wait_until(lambda: pg_count(cluster.pg, "spread-") == 8, 20)  # both nodes write the one database
    rows = [r for r in cluster.pg.rows() if str(r.get("sip_call_id", "")).startswith("spread-")]
    assert {r["node"] for r in rows} == {"node1", "node2"} and {r["trunk"] for r in rows} == {"carrier"}


def test_rolling_restart_under_load_loses_no_call(cluster: Cluster, workdir: Path) -> None:
    """Bounded load (6 calls at once, 3 new calls/s, 2 s each, 60 calls); meanwhile each node in turn gets
    SIGTERM (its front answers the tier's probe and new INVITEs with 503, its calls finish), exits, starts
    again and rejoins. Every call is answered and hung up normally: none refused, none failed."""
    calls = 60
    load = sipp(cluster.tier.port, "long_hold.xml", service="500", tag="rolling", workdir=workdir, calls=calls,
                concurrency=6, rate=3, duration_ms=2000, local_ip=CALLER_HOST, remote_host=TIER_HOST,
                variables={"caller": "+15553000004"}, background=True, timeout=150)
    assert isinstance(load, subprocess.Popen)
    try:
        for i in (0, 1):
            time.sleep(2.0)
            old = cluster.nodes[i]
            assert old.stop(check_records=False) == 0  # SIGTERM: drain, then exit
            old.wait_for(lambda e: e.get("event") == "front.draining", 5)
            new = cluster.start_node(i, generation=1)
            new.wait_for(lambda e: e.get("event") == "front.reachable", 30)
            time.sleep(PROBE_S + 1)  # the tier's next probe puts it back in rotation
        output, _ = load.communicate(timeout=200)
    finally:
        if load.poll() is None:
            load.kill()
            load.communicate()
    run = collect(load.returncode, output, workdir, "rolling")
    assert run.returncode == 0, run.describe()
    assert run.log.count("answered") == calls, run.describe()
    assert "rejected" not in run.log, run.describe()
    wait_until(lambda: len(cluster.ended("rolling-")) == calls, 30)
    by_node = [i for i, _ in cluster.ended("rolling-")]
    assert set(by_node) == {0, 1}
    wait_until(lambda: pg_count(cluster.pg, "rolling-") == calls, 20)


def live_calls(srv: IvrServer) -> int:
    admin = srv.config["admin"]
    with urllib.request.urlopen(f"http://{admin['host']}:{admin['port']}/calls", timeout=5) as answer:
        return len(json.load(answer)["calls"])


def tier_destinations(c: Cluster) -> dict[str, str]:
    """The running tier's dispatcher view: node address -> flags (AP active, IP inactive probing, ...)."""
    sock = (c.tier.workdir / "run" / "rpc_socket").read_text().strip()
    out = subprocess.run([*IVR, "front", "rpc", "dispatcher.list", "--socket", sock], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    result = yaml.safe_load(out.stdout)  # JSON is YAML
    found = {}
    for record in result["RECORDS"]:
        for target in record["SET"]["TARGETS"]:
            dest = target["DEST"]
            found[dest["URI"].removeprefix("sip:")] = dest["FLAGS"]
    return found


def tier_health(c: Cluster) -> dict[str, Any]:
    """The tier's /healthz (`tier.admin_port`, tier_health.py), whatever its status."""
    tier = c.tier.config["tier"]
    try:
        with urllib.request.urlopen(f"http://{tier['admin_host']}:{tier['admin_port']}/healthz", timeout=5) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as err:
        return dict(json.load(err))


def test_a_killed_node_loses_only_its_own_calls_and_leaves_rotation(cluster: Cluster, workdir: Path) -> None:
    held = sipp(cluster.tier.port, "long_hold.xml", service="500", tag="held", workdir=workdir, calls=4,
                concurrency=4, rate=20, duration_ms=6000, local_ip=CALLER_HOST, remote_host=TIER_HOST,
                variables={"caller": "+15553000004"}, background=True, timeout=60)
    assert isinstance(held, subprocess.Popen)
    victim, survivor = cluster.nodes
    wait_until(lambda: live_calls(victim) + live_calls(survivor) == 4, 20)
    lost = live_calls(victim)
    assert victim.proc is not None
    os.kill(victim.proc.pid, signal.SIGKILL)  # its front follows by PDEATHSIG, its workers on the link's EOF
    victim.proc.wait(10)
    # At once, before the tier's next probe: an INVITE to the dead node times out (fr_timer) and fails over.
    run = gold_calls(cluster, workdir, "afterkill", 6, 3)
    assert run.returncode == 0, run.describe()
    wait_until(lambda: len(cluster.ended("afterkill-")) == 6, 30)
    assert {i for i, _ in cluster.ended("afterkill-")} == {1}
    wait_until(lambda: tier_destinations(cluster).get(cluster.address(0), "").startswith("I"), 3 * PROBE_S + 2,
               lambda: str(tier_destinations(cluster)))
    assert tier_destinations(cluster)[cluster.address(1)].startswith("A")
    wait_until(lambda: {n: v["state"] for n, v in tier_health(cluster)["nodes"].items()}
               == {"n1": "inactive", "n2": "active"}, 3 * PROBE_S + 2, lambda: str(tier_health(cluster)))
    assert tier_health(cluster)["ok"] is True  # one node is enough to take calls
    output, _ = held.communicate(timeout=90)
    run = collect(held.returncode, output, workdir, "held")
    # The survivor's held calls end normally; the dead node's calls are lost (their BYE gets no 200).
    wait_until(lambda: len(cluster.ended("held-")) == 4 - lost, 30)
    assert {i for i, _ in cluster.ended("held-")} <= {1}
    assert lost >= 1 and run.returncode != 0, run.describe()
    # The node comes back on its run directory: it records its lost calls (journal.py) in the shared database,
    # each once, and rejoins the tier.
    back = start_server(cluster.configs[0], victim.workdir)
    cluster.retired.append(victim)
    cluster.nodes[0] = back
    wait_until(lambda: pg_count(cluster.pg, "held-") == 4, 20, lambda: str(cluster.pg.rows()))
    held_rows = [r for r in cluster.pg.rows() if str(r.get("sip_call_id", "")).startswith("held-")]
    lost_rows = [r for r in held_rows if r["end_reason"] == "node_lost"]
    assert len(lost_rows) == lost
    assert all(r["outcome"] == {"kind": "abandoned", "reason": "node_lost", "queue": None, "uri": None}
               and r["ended_at"] is None for r in lost_rows)
    wait_until(lambda: tier_destinations(cluster).get(cluster.address(0), "").startswith("A"), 3 * PROBE_S + 5,
               lambda: str(tier_destinations(cluster)))
