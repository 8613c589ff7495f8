"""Bridged transfer end to end: a trunk without REFER, real SIPp as the caller and as the queue's agent, the
real server. Audio is proven both ways through the bridge by marked RTP (rtpkit.RtpPeer stands in as each
side's media endpoint via its SDP), caller data is checked in the agent's INVITE, either side's BYE ends both
legs, the record shows both legs; busy and no answer go to on_fail; 2 bridged calls per worker x 2 workers."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import e2e_config, start_server
from ivrkit import IvrServer
from rtpkit import RtpPeer
from sippkit import SCENARIOS, SippRun, collect, free_udp_port, sipp

pytestmark = pytest.mark.sip

CALLER = "+15553000006"
CALLER_IP = "127.0.0.3"  # the trunk without REFER
AGENT_MARK, CALLER_MARKS = 0x55, (0x2A, 0x2C, 0x2E, 0x31)
MIN_PACKETS = 50  # 1 s of audio at 20 ms


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_run(count: int) -> int:
    """The first of `count` consecutive free ports (UDP and TCP): worker ports, SIPp's media (+2 for video).
    Other engineers' tests run on this machine too: a lone free port says nothing about its neighbours."""
    for _ in range(100):
        base = free_udp_port()
        if base + count < 65000 and all(_bindable(base + i) for i in range(count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


def bridge_config(workers: int, agent_port: int) -> dict[str, Any]:
    cfg = e2e_config(workers=workers)
    if workers > 1:
        cfg["sip"]["worker_base_port"] = free_run(workers)
    assert {"name": "no_refer", "sources": [f"{CALLER_IP}/32"], "dtmf": "both", "refer": False} in cfg["trunks"]
    cfg["queues"]["agents"] = {"uri": f"sip:agents@127.0.0.1:{agent_port}",
                               "headers": {"X-Customer-Caller": "{{caller}}"}}
    cfg["flows"]["bridge"] = {"description": "Straight to the agents' queue; a failed bridge says goodbye.",
                              "steps": [
                                  {"id": "to_agents", "type": "transfer", "queue": "agents", "ring_timeout": "3s",
                                   "on_fail": "sorry"},
                                  {"id": "sorry", "type": "hangup", "prompts": ["goodbye"],
                                   "reason": "bridge_failed"}]}
    cfg["numbers"]["600"] = "bridge"
    return cfg


class Agent:
    """SIPp as the queue's target (UAS), in the background for `calls` calls."""

    def __init__(self, port: int, workdir: Path, tag: str, *, calls: int = 1, answer: str = "answer",
                 hangup: str = "caller", hold_ms: int = 4000, rtp_port: int = 9) -> None:
        binary = shutil.which("sipp")
        assert binary
        self.workdir, self.tag = workdir, tag
        cmd = [binary, "-sf", str(SCENARIOS / "bridge" / "agent.xml"), "-i", "127.0.0.1", "-p", str(port),
               "-mi", "127.0.0.1", "-mp", str(free_run(4)), "-m", str(calls), "-d", str(hold_ms),
               "-set", "answer", answer, "-set", "hangup", hangup, "-set", "rtp_ip", "127.0.0.1",
               "-set", "rtp_port", str(rtp_port), "-timeout", "90s", "-timeout_error", "-nostdin",
               "-trace_logs", "-log_file", str(workdir / f"{tag}.log"), "-trace_err",
               "-error_file", str(workdir / f"{tag}.err")]
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def result(self, timeout: float = 120.0) -> SippRun:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return collect(self.proc.returncode, out, self.workdir, self.tag)


def place(server: IvrServer, workdir: Path, tag: str, peer: RtpPeer | None, *, hangup: str,
          hold_ms: int = 4000, background: bool = False) -> SippRun | subprocess.Popen[str]:
    return sipp(server.sip_port, "bridge/caller.xml", service="600", tag=tag, workdir=workdir, local_ip=CALLER_IP,
                duration_ms=hold_ms, timeout=90, background=background,
                variables={"caller": CALLER, "hangup": hangup, "rtp_ip": "127.0.0.1",
                           "rtp_port": str(peer.port if peer else 9)})


@pytest.fixture(scope="module")
def agent_port() -> int:
    return free_udp_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, agent_port: int) -> Iterator[IvrServer]:
    workdir = tmp_path_factory.mktemp("bridge")
    srv = start_server(bridge_config(1, agent_port), workdir)
    yield srv
    srv.stop()
    (workdir / "server.log").write_text("".join(srv.raw))  # for a failure's post-mortem


def server_tail(server: IvrServer) -> str:
    return "\n--- server ---\n" + "".join(line[:400] for line in server.raw[-30:])


def assert_bridged(line: dict[str, Any], agent_log: str, end: str) -> dict[str, Any]:
    outcome = line["outcome"]
    assert (outcome["kind"], outcome["reason"], outcome["queue"]) == ("transfer", "bridged", "agents"), line
    transfer = line["transfers"][0]
    assert (transfer["result"], transfer["code"]) == ("bridged", 200), transfer
    (leg,) = line["legs"]
    assert leg["target"] == transfer["uri"] and leg["target"].startswith("sip:agents@127.0.0.1:")
    assert leg["sip_call_id"] and f"{leg['sip_call_id']} answered" in agent_log  # the agent saw this leg
    assert leg["answered_at"] > line["started_at"] and leg["duration_ms"] > 0
    assert leg["end_reason"] == end and line["end_reason"] == end
    return dict(leg)


@pytest.mark.parametrize("who", ["caller", "agent"])
def test_bridged_call_carries_audio_both_ways_and_either_bye_ends_both_legs(
        server: IvrServer, workdir: Path, agent_port: int, who: str) -> None:
    tag = f"bridge-{who}"
    with RtpPeer(CALLER_MARKS[0]) as caller_rtp, RtpPeer(AGENT_MARK) as agent_rtp:
        agent = Agent(agent_port, workdir, f"{tag}-agent", hangup=who, hold_ms=5000, rtp_port=agent_rtp.port)
        run = place(server, workdir, tag, caller_rtp, hangup=who, hold_ms=6000)
        agent_run = agent.result()
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert agent_run.returncode == 0, agent_run.describe() + server_tail(server)
    assert f"X-Customer-Caller: {CALLER}" in agent_run.log  # caller data in the agent's INVITE
    assert caller_rtp.marked(AGENT_MARK) >= MIN_PACKETS, caller_rtp.received   # agent -> caller
    assert agent_rtp.marked(CALLER_MARKS[0]) >= MIN_PACKETS, agent_rtp.received  # caller -> agent
    assert caller_rtp.count("other") > 0, caller_rtp.received  # ringback while the agent's phone rang
    if who == "caller":
        assert "ivr_bye" in agent_run.log and "caller_bye" in run.log  # the caller's BYE ended the agent leg
    else:
        assert "agent_bye" in agent_run.log and "ivr_bye" in run.log  # the agent's BYE ended the caller's leg
    line = server.call_ended(f"{tag}-")
    assert_bridged(line, agent_run.log, f"{who}_hangup")
    assert line["path"] == ["to_agents:bridged"]


@pytest.mark.parametrize(("answer", "result", "code"), [("busy", "busy", 486), ("noanswer", "no_answer", 408)])
def test_busy_and_no_answer_go_to_on_fail(server: IvrServer, workdir: Path, agent_port: int, answer: str,
                                          result: str, code: int) -> None:
    tag = f"bridge-{answer}"
    with RtpPeer(CALLER_MARKS[0]) as caller_rtp:
        agent = Agent(agent_port, workdir, f"{tag}-agent", answer=answer)
        run = place(server, workdir, tag, caller_rtp, hangup="ivr")
        agent_run = agent.result()
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert agent_run.returncode == 0, agent_run.describe()
    assert ("busy" if answer == "busy" else "cancelled") in agent_run.log
    line = server.call_ended(f"{tag}-")
    transfer = line["transfers"][0]
    assert (transfer["result"], transfer["code"], line["legs"][0]["end_reason"]) == (result, code, result)
    assert line["path"][:2] == [f"to_agents:{result}", "sorry:hangup"]
    assert (line["outcome"]["kind"], line["outcome"]["reason"]) == ("hangup", "bridge_failed")
    assert caller_rtp.count("other") > 0  # ringback, then the goodbye prompt: never silence


def test_caller_hanging_up_while_the_agent_rings_cancels_the_leg(server: IvrServer, workdir: Path,
                                                                  agent_port: int) -> None:
    with RtpPeer(CALLER_MARKS[0]) as caller_rtp:
        agent = Agent(agent_port, workdir, "gone-agent", answer="noanswer")
        run = place(server, workdir, "gone", caller_rtp, hangup="caller", hold_ms=1000)
        agent_run = agent.result()
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert agent_run.returncode == 0, agent_run.describe()
    assert "cancelled" in agent_run.log  # the ringing leg was cancelled, not left to its ring timeout
    line = server.call_ended("gone-")
    assert line["transfers"][0]["result"] == "abandoned" and line["end_reason"] == "caller_hangup"
    assert line["legs"][0]["end_reason"] == "abandoned"
    server.wait_for(lambda e: e.get("event") == "sip.bridge.failed" and e.get("call") == line["call_id"])
    assert caller_rtp.count("other") > 0  # ringback until the caller gave up


@pytest.fixture(scope="module")
def fronted(tmp_path_factory: pytest.TempPathFactory, agent_port: int) -> Iterator[IvrServer]:
    """Two 4-slot workers behind the Kamailio front."""
    workdir = tmp_path_factory.mktemp("bridge-front")
    srv = start_server(bridge_config(2, agent_port), workdir)
    assert srv.wait_for(lambda e: e.get("event") == "ivr.ready")["front"] == "managed"
    yield srv
    srv.stop()
    (workdir / "server.log").write_text("".join(srv.raw))


@pytest.mark.parametrize("who", ["caller", "agent"])
def test_two_bridged_calls_per_worker_at_once_and_the_fifth_is_refused(fronted: IvrServer, workdir: Path,
                                                                       agent_port: int, who: str) -> None:
    """4 callers at once through the front: each worker holds 2 bridged calls (4 legs on 4 slots), audio
    crosses every bridge both ways; a 5th caller meanwhile gets 503 + Retry-After and no 5th leg is tried.
    The legs leave through the front, and either side's BYE (in-dialog, through the front) ends both legs."""
    joined_before = len(fronted.events("sip.bridge.joined"))
    ringing_before = len(fronted.events("sip.bridge.ringing"))
    peers = [RtpPeer(mark) for mark in CALLER_MARKS]
    with RtpPeer(AGENT_MARK) as agent_rtp:
        for peer in peers:
            peer.__enter__()
        try:
            agent = Agent(agent_port, workdir, f"{who}-many-agent", calls=4, rtp_port=agent_rtp.port, hangup=who,
                          hold_ms=9000)
            callers = [place(fronted, workdir, f"{who}-many{i}", peer, hangup=who, hold_ms=10000, background=True)
                       for i, peer in enumerate(peers)]
            fronted.wait_for(lambda e: len(fronted.events("sip.bridge.joined")) >= joined_before + 4, 60,
                             what="4 joined bridges")
            refused = sipp(fronted.sip_port, "front/uac_503.xml", service="600", tag=f"{who}-fifth", workdir=workdir,
                           local_ip=CALLER_IP)
            runs = [collect(p.wait(90), p.communicate()[0], workdir, f"{who}-many{i}")  # type: ignore[union-attr]
                    for i, p in enumerate(callers)]
            agent_run = agent.result()
        finally:
            for peer in peers:
                peer.stop()
    assert isinstance(refused, SippRun)
    assert refused.returncode == 0, refused.describe()
    for run in runs:
        assert run.returncode == 0, run.describe()
    assert agent_run.returncode == 0, agent_run.describe()
    assert agent_run.log.count(f"X-Customer-Caller: {CALLER}") == 4
    assert agent_run.log.count(f"<sip:127.0.0.1:{fronted.sip_port};lr") == 4  # the legs left through the front
    for mark, peer in zip(CALLER_MARKS, peers, strict=True):
        assert peer.marked(AGENT_MARK) >= MIN_PACKETS, (mark, peer.received)
        assert agent_rtp.marked(mark) >= MIN_PACKETS, (mark, agent_rtp.received)
    lines = [fronted.call_ended(f"{who}-many{i}-") for i in range(4)]
    for line in lines:
        assert_bridged(line, agent_run.log, f"{who}_hangup")
    assert sorted(line["worker"] for line in lines) == ["w000", "w000", "w001", "w001"]
    assert len(fronted.events("sip.bridge.ringing")) == ringing_before + 4
    assert not fronted.events("sip.bridge.no_slot")
    assert agent_run.log.count("ivr_bye" if who == "caller" else "agent_bye") == 4
