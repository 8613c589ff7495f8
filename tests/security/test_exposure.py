"""What a stranger (and the trunk) can learn: SIPVicious scans, OPTIONS, the workers' ports, reply headers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rawsip import Peer, header, in_dialog, invite, request, status
from seckit import ATTACKER, FRONT, TRUNK, IvrServer, free_port, front_addr, worker_addrs

pytestmark = pytest.mark.sip

BIN = Path(sys.executable).parent
PRODUCT_WORDS = ("kamailio", "ivr", "pjsip", "pjsua", "sip router")


@pytest.fixture
def attacker() -> Iterator[Peer]:
    peer = Peer(ATTACKER)
    yield peer
    peer.close()


def sipvicious(tool: str, *args: str) -> str:
    """Run a SIPVicious tool from the attacker's address (bounded); its combined output."""
    # A random local port: the default 5060 could catch stray answers meant for other tests on this machine.
    argv = [str(BIN / f"sipvicious_{tool}"), "-b", ATTACKER, "-x", ATTACKER, "-P", str(free_port(ATTACKER)), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr


def _ports(server: IvrServer) -> str:
    return ",".join(str(port) for port in [server.sip_port, *(p for _, p in worker_addrs(server))])


def test_svmap_from_a_stranger_finds_no_sip_device(guarded: IvrServer) -> None:
    for method in ("OPTIONS", "INVITE", "REGISTER"):
        out = sipvicious("svmap", "-p", _ports(guarded), "-m", method, "-t", "0.05", FRONT)
        print(method, out)
        assert "found nothing" in out and "| SIP Device" not in out, out
        assert f"{FRONT}:" not in out, out  # no host:port row: nothing answered


def test_svmap_from_the_trunk_does_find_the_front_but_not_the_workers(guarded: IvrServer) -> None:
    """The control: the same scan from the trunk's address answers, so the stranger's silence is real."""
    argv = [str(BIN / "sipvicious_svmap"), "-b", TRUNK, "-x", TRUNK, "-P", str(free_port(TRUNK)), "-p",
            _ports(guarded), "-t", "0.05", FRONT]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL).stdout
    print(out)
    assert f"{FRONT}:{guarded.sip_port}" in out, out
    assert all(f"{FRONT}:{port}" not in out for _, port in worker_addrs(guarded)), out
    assert not any(word in out.lower().split("sip device")[-1] for word in PRODUCT_WORDS), out


def test_svwar_from_a_stranger_finds_no_extension(guarded: IvrServer) -> None:
    for method in ("REGISTER", "INVITE", "OPTIONS"):
        out = sipvicious("svwar", "-p", str(guarded.sip_port), "-m", method, "-e", "490-510", "-t", "0.05", FRONT)
        print(method, out)
        assert "found nothing" in out and "socket error: timed out" in out, out  # not even a first answer
        assert "| 500 " not in out and "reqauth" not in out and "noauth" not in out, out


def test_the_workers_answer_nobody_but_the_front(guarded: IvrServer, attacker: Peer) -> None:
    trunk = Peer(TRUNK)
    try:
        for target in worker_addrs(guarded):
            for peer in (attacker, trunk):
                for method in ("OPTIONS", "INVITE", "REGISTER", "MESSAGE"):
                    text = request(peer, method, f"sip:500@{target[0]}:{target[1]}")
                    assert peer.final(text, target, wait=0.3) is None, (peer.host, target, method)
        front_side = Peer(FRONT)  # the control: the front's address is answered, with no product name
        try:
            target = worker_addrs(guarded)[0]
            answer = front_side.final(request(front_side, "OPTIONS", f"sip:x@{target[0]}:{target[1]}"), target)
        finally:
            front_side.close()
        assert status(answer) == 200, answer
        assert not header(answer or "", "User-Agent") and not header(answer or "", "Server"), answer
    finally:
        trunk.close()


def test_a_stranger_gets_silence_to_every_request(guarded: IvrServer, attacker: Peer) -> None:
    front = front_addr(guarded)
    for method in ("INVITE", "OPTIONS", "REGISTER", "MESSAGE", "SUBSCRIBE", "REFER", "NOTIFY", "PUBLISH", "BYE",
                   "CANCEL", "INFO", "UPDATE", "PRACK", "ACK"):
        for uri in (f"sip:500@{FRONT}", f"sip:{FRONT}:{front[1]}", "sip:100@example.com"):
            assert attacker.final(request(attacker, method, uri), front, wait=0.25) is None, (method, uri)


def test_what_the_trunk_sees_names_no_product(guarded: IvrServer) -> None:
    trunk = Peer(TRUNK)
    front = front_addr(guarded)
    try:
        options = trunk.final(request(trunk, "OPTIONS", f"sip:{FRONT}:{front[1]}"), front)
        assert status(options) == 200, options
        dialog = invite(trunk, front, "500")
        time.sleep(0.2)
        bye = trunk.final(in_dialog(trunk, dialog, "BYE"), front)
        assert dialog.media is not None
        dialog.media.close()
    finally:
        trunk.close()
    assert status(bye) == 200, bye
    for reply in (options or "", bye or ""):
        assert not any(word in reply.lower() for word in (*PRODUCT_WORDS, "server:", "user-agent:")), reply
    assert all(FRONT in route for route in dialog.routes), dialog.routes  # the route set is the front alone
    assert not _worker_ports_in(guarded, dialog.answer), dialog.answer


def _worker_ports_in(server: IvrServer, text: str) -> list[int]:
    sip_text = text.split("\r\n\r\n", 1)[0]  # the SDP may name the media address; SIP headers must not
    return [port for _, port in worker_addrs(server) if f":{port}" in sip_text]


def test_a_workers_refer_reaches_the_trunk_with_no_worker_address(guarded: IvrServer) -> None:
    trunk = Peer(TRUNK)
    front = front_addr(guarded)
    try:
        dialog = invite(trunk, front, "600")
        assert not _worker_ports_in(guarded, dialog.answer), dialog.answer
        refer = next((m for m in trunk.receive(5.0) if m.startswith("REFER ")), None)
        assert refer is not None
        assert not _worker_ports_in(guarded, refer), refer
        assert "sip:default@" in header(refer, "Refer-To")[0], refer
        trunk.send(in_dialog(trunk, dialog, "BYE"), front)
        assert dialog.media is not None
        dialog.media.close()
    finally:
        trunk.close()
