"""A kernel filter on a worker's SIP sockets: behind a front, only the front (and the worker's own waker) get in.

pjsua answers OPTIONS itself and has no hook to drop a request by source, so the filter sits below it: a
classic BPF program (`SO_ATTACH_FILTER`, no privilege needed) on every socket bound to the worker's SIP port
(the UDP socket and the TCP listener, whose accepted connections inherit it) that accepts a packet only when
its IPv4 source address is allowed. Anyone else's datagram or SYN is dropped before pjsip sees it, so a scan
of the worker ports gets silence: no reply, no User-Agent, no address. IPv6 sockets are left unfiltered
(logged); the worker then relies on its bind address.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct

import structlog

log = structlog.get_logger()

SO_ATTACH_FILTER = 26
_SKF_NET_OFF = -0x100000
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_ACCEPT_BYTES = 0x40000


def source_toward(host: str, port: int) -> str:
    """The local address the kernel picks to reach host:port (what a socket bound to 0.0.0.0 sends from)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, port))
        return str(probe.getsockname()[0])


def allowed_sources(front_hosts: tuple[str, ...], own_host: str, own_port: int) -> tuple[str, ...]:
    """IPv4 sources to accept: the front's addresses (a wildcard becomes the address it sends from), ours."""
    target = "127.0.0.1" if own_host in ("", "0.0.0.0") else own_host
    found: list[str] = []
    for host in (*front_hosts, target):
        address = source_toward(target, own_port) if host in ("", "0.0.0.0") else host
        if ipaddress.ip_address(address).version == 4 and address not in found:
            found.append(address)
    return tuple(found)


def program(sources: tuple[str, ...]) -> list[tuple[int, int, int, int]]:
    """`ld [net+12]` (the IPv4 source), one `jeq` per allowed address, then drop / accept."""
    count = len(sources)
    insns = [(_LD_W_ABS, 0, 0, (_SKF_NET_OFF + 12) & 0xFFFFFFFF)]
    for i, source in enumerate(sources):
        insns.append((_JEQ_K, count - i, 0, int(ipaddress.IPv4Address(source))))
    insns.append((_RET_K, 0, 0, 0))
    insns.append((_RET_K, 0, 0, _ACCEPT_BYTES))
    return insns


def attach(sock: socket.socket, sources: tuple[str, ...]) -> None:
    """Attach the source filter to `sock` (the kernel copies the program)."""
    code = b"".join(struct.pack("HBBI", *insn) for insn in program(sources))
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _own_sockets(port: int) -> list[socket.socket]:
    """Duplicates of this process's IPv4/IPv6 sockets bound to `port` (closing a duplicate leaves the original)."""
    found, seen = [], set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            if not target.startswith("socket:") or target in seen:  # a listed fd number may now be our dup
                continue
            seen.add(target)
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.getsockname()[1] == port:
            found.append(sock)
        else:
            sock.close()
    return found


def restrict_port(port: int, sources: tuple[str, ...]) -> int:
    """Filter every socket of ours bound to `port`; the number of sockets filtered."""
    filtered = 0
    for sock in _own_sockets(port):
        with sock:
            if sock.family != socket.AF_INET:
                log.warning("sip.filter.ipv6_unfiltered", port=port)
                continue
            attach(sock, sources)
            filtered += 1
    log.info("sip.filter.attached", port=port, sockets=filtered, sources=list(sources))
    return filtered
