"""One SIP OPTIONS over UDP or TCP and its answer: how the managed front's readiness is probed."""

from __future__ import annotations

import asyncio
import secrets
import socket


def sip_host(host: str) -> str:
    """A host as it goes in a SIP URI or Via: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _options(host: str, port: int, local: tuple[str, int], transport: str, user: str) -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(8)
    return (f"OPTIONS sip:{user}@{sip_host(host)}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {sip_host(local[0])}:{local[1]};branch={branch};rport\r\n"
            f"From: <sip:ivr-probe@{sip_host(local[0])}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{sip_host(host)}:{port}>\r\nCall-ID: {secrets.token_hex(8)}@ivr\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


async def options_ping(host: str, port: int, *, transport: str = "udp", timeout: float = 0.3,
                       user: str = "ping") -> str | None:
    """Send one OPTIONS to sip:user@host:port; the response's text, or None on no answer within timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if transport == "tcp":
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError):
            return None
        try:
            writer.write(_options(host, port, writer.get_extra_info("sockname")[:2], "TCP", user))
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            return data.decode("utf-8", "replace")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        finally:
            writer.close()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        sock.send(_options(host, port, sock.getsockname()[:2], "UDP", user))
        try:
            data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), timeout)
        except (OSError, TimeoutError):
            return None
        return data.decode("utf-8", "replace")
