"""The front and a worker's own calls (bridged transfer legs): a worker's initial INVITE goes, record-routed,
to a configured queue target only; any other destination or method from a worker gets 403 and goes nowhere."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from front_harness import HOST, make_config, need_tools

from ivr.config.model import Queue
from ivr.front.kamailio import KamailioProcess


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# Free ports, not the harness's fixed ones: other front tests may run on this machine at the same time.
FRONT_PORT, WORKER_BASE, QUEUE_PORT, OTHER_PORT = (free_udp_port() for _ in range(4))


@pytest.fixture
async def front(tmp_path: Path) -> AsyncIterator[KamailioProcess]:
    need_tools()
    config = make_config(workers=1, listen_port=FRONT_PORT)
    sip = config.sip.model_copy(update={"worker_base_port": WORKER_BASE})
    queues = {"agents": Queue(uri=f"sip:agents@{HOST}:{QUEUE_PORT}")}
    kamailio = KamailioProcess(config.model_copy(update={"queues": queues, "sip": sip}), tmp_path / "front")
    await kamailio.start()
    yield kamailio
    await kamailio.stop()


def invite_from_worker(method: str, ruri: str, listener: socket.socket) -> tuple[str | None, str | None]:
    """Send `method ruri` from the worker's own address (dispatcher set 1) with the front as preloaded route;
    return (the front's answer to the worker, what reached the queue target), each None when nothing came."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, WORKER_BASE))
        sock.settimeout(1.0)
        branch, tag = secrets.token_hex(6), secrets.token_hex(4)
        text = (f"{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{WORKER_BASE};branch=z9hG4bK{branch};rport\r\n"
                f"Route: <sip:{HOST}:{FRONT_PORT};lr>\r\nFrom: <sip:w000@{HOST}>;tag={tag}\r\nTo: <{ruri}>\r\n"
                f"Call-ID: {secrets.token_hex(8)}@worker\r\nCSeq: 1 {method}\r\n"
                f"Contact: <sip:w000@{HOST}:{WORKER_BASE}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        sock.sendto(text.encode(), (HOST, FRONT_PORT))
        try:
            relayed: str | None = listener.recv(65535).decode()
        except TimeoutError:
            relayed = None
        answer = None
        try:
            while answer is None or answer.startswith("SIP/2.0 100 "):
                answer = sock.recv(65535).decode()
        except TimeoutError:
            pass
        return answer, relayed


@pytest.fixture
def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, QUEUE_PORT))
    sock.settimeout(1.0)
    return sock


async def test_a_worker_invite_to_a_queue_target_is_relayed_record_routed(front: KamailioProcess,
                                                                           listener: socket.socket) -> None:
    with listener:
        _, relayed = invite_from_worker("INVITE", f"sip:agents@{HOST}:{QUEUE_PORT}", listener)
    assert relayed is not None and relayed.startswith(f"INVITE sip:agents@{HOST}:{QUEUE_PORT} SIP/2.0")
    assert f"Record-Route: <sip:{HOST}:{FRONT_PORT};lr" in relayed
    assert "\r\nRoute:" not in relayed  # the worker's preloaded route to the front is consumed


@pytest.mark.parametrize(("method", "ruri"), [("INVITE", f"sip:evil@{HOST}:{OTHER_PORT}"),
                                              ("INVITE", f"sip:evil@127.0.0.9:{QUEUE_PORT}"),
                                              ("MESSAGE", f"sip:agents@{HOST}:{QUEUE_PORT}")])
async def test_anything_else_from_a_worker_gets_403_and_goes_nowhere(front: KamailioProcess, listener: socket.socket,
                                                                      method: str, ruri: str) -> None:
    with listener:
        answer, relayed = invite_from_worker(method, ruri, listener)
    assert answer is not None and answer.startswith("SIP/2.0 403 "), answer
    assert relayed is None
