"""RFC 4475 torture messages (tests/data/sip-torture, carried in the repository) through the front and
straight at a worker; forged replies; a flood from a stranger while the trunk places calls."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rawsip import Peer, Sink, request
from seckit import ATTACKER, FRONT, ROOT, TRUNK, VICTIM, WORKERS, IvrServer, front_addr, worker_addrs
from sippkit import SippRun, sipp

pytestmark = pytest.mark.sip

TORTURE = ROOT / "tests" / "data" / "sip-torture"


def torture_messages() -> list[Path]:
    """The 50 files, checked against SHA256SUMS: a damaged copy fails the test instead of testing less."""
    sums = dict(line.split()[::-1] for line in (TORTURE / "SHA256SUMS").read_text().splitlines() if line.strip())
    files = sorted(TORTURE.glob("*.dat"))
    assert len(files) == 50 and len(sums) == 50
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sums[path.name], path.name
    return files


@pytest.fixture
def sink() -> Iterator[Sink]:
    target = Sink(VICTIM)
    yield target
    target.close()


def trunk_calls(server: IvrServer, workdir: Path, tag: str, calls: int, concurrency: int,
                background: bool = False) -> SippRun | subprocess.Popen[str]:
    return sipp(server.sip_port, "front/uac_call.xml", service="500", tag=tag, workdir=workdir, calls=calls,
                concurrency=concurrency, rate=20, local_ip=TRUNK, remote_host=FRONT, duration_ms=1500,
                timeout=60, background=background)


def assert_healthy(server: IvrServer, workdir: Path, tag: str) -> None:
    """Every call slot still works: as many concurrent trunk calls as the workers hold are all answered."""
    run = trunk_calls(server, workdir, tag, calls=WORKERS * 4, concurrency=WORKERS * 4)
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert not server.events("worker.exited"), server.events("worker.exited")


def test_torture_messages_through_the_front_and_at_the_workers(guarded: IvrServer, tmp_path: Path) -> None:
    messages = torture_messages()
    trunk, attacker, front_side = Peer(TRUNK), Peer(ATTACKER), Peer(FRONT)
    heard: dict[str, list[str]] = {"trunk": [], "attacker": [], "front_side": []}
    try:
        for path in messages:
            data = path.read_bytes()
            trunk.sock.sendto(data, front_addr(guarded))
            attacker.sock.sendto(data, front_addr(guarded))
            for worker in worker_addrs(guarded):
                front_side.sock.sendto(data, worker)  # the one source a worker lets in
                attacker.sock.sendto(data, worker)
            for name, peer in (("trunk", trunk), ("attacker", attacker), ("front_side", front_side)):
                heard[name] += peer.receive(0.05)
        time.sleep(1.0)
        for name, peer in (("trunk", trunk), ("attacker", attacker), ("front_side", front_side)):
            heard[name] += peer.receive(0.2)
    finally:
        for peer in (trunk, attacker, front_side):
            peer.close()
    assert heard["attacker"] == [], heard["attacker"][:2]  # nothing, from the front or from a worker
    assert_healthy(guarded, tmp_path, "after-torture")


def test_a_forged_reply_is_not_forwarded_along_its_vias(guarded: IvrServer, sink: Sink) -> None:
    front = front_addr(guarded)
    for source in (ATTACKER, TRUNK):
        peer = Peer(source)
        try:
            reply = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {FRONT}:{front[1]};branch=z9hG4bKforged\r\n"
                     f"Via: SIP/2.0/UDP {sink.host}:{sink.port};branch=z9hG4bKvictim\r\n"
                     f"From: <sip:a@{source}>;tag=1\r\nTo: <sip:b@{FRONT}>;tag=2\r\nCall-ID: forged-reply@x\r\n"
                     "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
            peer.send(reply, front)
            peer.send(request(peer, "OPTIONS", f"sip:{FRONT}:{front[1]}").replace(
                "Max-Forwards: 70", f"Max-Forwards: 70\r\nVia: SIP/2.0/UDP {sink.host}:{sink.port};branch=z9hG4bKv2"),
                front)
        finally:
            peer.close()
    time.sleep(1.0)
    assert sink.received == [], sink.received[:2]


def test_a_flood_from_a_stranger_does_not_disturb_trunk_calls(guarded: IvrServer, tmp_path: Path) -> None:
    """3000 requests from the attacker in at most 10 s while the trunk places 24 calls: all 24 pass."""
    front = front_addr(guarded)
    sent = [0]
    heard: list[str] = []

    def flood() -> None:
        peer = Peer(ATTACKER)
        methods = ("INVITE", "OPTIONS", "REGISTER", "MESSAGE", "BYE")
        end = time.monotonic() + 10.0
        try:
            while sent[0] < 3000 and time.monotonic() < end:
                method = methods[sent[0] % len(methods)]
                peer.send(request(peer, method, f"sip:500@{FRONT}:{front[1]}",
                                  to_tag="x" if method == "BYE" else ""), front)
                sent[0] += 1
                if sent[0] % 50 == 0:
                    time.sleep(0.1)  # ~500/s: a bounded flood, not a test of the kernel's buffers
            heard.extend(peer.receive(1.0))  # whatever was answered waits in the socket's buffer
        finally:
            peer.close()

    flooder = threading.Thread(target=flood)
    calls = trunk_calls(guarded, tmp_path, "during-flood", calls=24, concurrency=6, background=True)
    flooder.start()
    flooder.join(30)
    assert isinstance(calls, subprocess.Popen)
    out, _ = calls.communicate(timeout=90)
    assert sent[0] == 3000, sent
    assert heard == [], heard[:2]  # the flood got silence
    assert calls.returncode == 0, out[-3000:]
    assert_healthy(guarded, tmp_path, "after-flood")
