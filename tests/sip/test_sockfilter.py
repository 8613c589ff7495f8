"""The worker's kernel source filter (ivr/sip/sockfilter.py) on real sockets: UDP and a TCP listener."""

from __future__ import annotations

import socket

import pytest

from ivr.sip import sockfilter

FRONT, STRANGER = "127.0.1.1", "127.0.1.66"


def _udp_reaches(source: str, port: int, server: socket.socket) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind((source, 0))
        client.sendto(b"OPTIONS", (FRONT, port))
    try:
        return server.recv(100) == b"OPTIONS"
    except TimeoutError:
        return False


def _tcp_connects(source: str, port: int) -> bool:
    with socket.socket() as client:
        client.bind((source, 0))
        client.settimeout(0.5)
        try:
            client.connect((FRONT, port))
        except OSError:
            return False
        return True


def test_only_allowed_sources_reach_the_filtered_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind((FRONT, 0))
        port = udp.getsockname()[1]
        tcp.bind((FRONT, port))
        tcp.listen()
        udp.settimeout(0.5)
        assert _udp_reaches(STRANGER, port, udp)  # before: anyone
        assert sockfilter.restrict_port(port, (FRONT,)) == 2
        assert not _udp_reaches(STRANGER, port, udp)
        assert not _tcp_connects(STRANGER, port)
        assert _udp_reaches(FRONT, port, udp)
        assert _tcp_connects(FRONT, port)


def test_allowed_sources_resolve_a_wildcard_and_skip_ipv6() -> None:
    assert sockfilter.allowed_sources(("0.0.0.0", "::1", "10.1.2.3"), FRONT, 5999) == ("127.0.0.1", "10.1.2.3",
                                                                                           FRONT)


@pytest.mark.parametrize("count", [1, 3])
def test_program_jumps_land_on_accept(count: int) -> None:
    insns = sockfilter.program(tuple(f"127.0.0.{i}" for i in range(1, count + 1)))
    accept = len(insns) - 1
    for index, (_, jt, _, _) in enumerate(insns[1:count + 1], start=1):
        assert index + 1 + jt == accept
    assert insns[-1][3] > 0 and insns[-2][3] == 0
