"""Which SRTP mode (off / optional / mandatory) an incoming INVITE gets: pure, no pjsua2.

A worker has one pjsua account per mode and picks one per INVITE in `Endpoint.onSelectAccount`, before
pjsua builds the media transport (so a plain-RTP offer to a mandatory account is refused with 488 by pjsua
itself). The mode comes from:
1. `X-IVR-Srtp: <mode>` when the INVITE came from a trusted front address (the front adds it per trunk and
   strips every outside X-IVR-* header first; from anyone else the header is ignored), else
2. the trunk whose sources contain the INVITE's source address (single-worker mode, no front), else
3. off.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from ivr.sip.sipmsg import parse_headers

Mode = Literal["off", "optional", "mandatory"]
MODES: tuple[Mode, ...] = ("off", "optional", "mandatory")
HEADER = "x-ivr-srtp"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def source_host(address: str) -> str:
    """`127.0.0.1:5060` / `[::1]:5060` -> the host part, without brackets."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


@dataclass(frozen=True, slots=True)
class SrtpPolicy:
    trusted: frozenset[str] = frozenset()
    by_source: tuple[tuple[Network, Mode], ...] = ()

    @classmethod
    def from_args(cls, trusted: list[str], rules: list[str]) -> SrtpPolicy:
        """`rules`: `CIDR=mode` strings (the worker's --srtp-source options)."""
        parsed: list[tuple[Network, Mode]] = []
        for rule in rules:
            net, _, mode = rule.partition("=")
            if mode not in MODES:
                raise ValueError(f"not an SRTP mode in {rule!r}: {mode!r}")
            parsed.append((ipaddress.ip_network(net, strict=False), mode))
        return cls(frozenset(trusted), tuple(parsed))

    def mode_for(self, source: str, whole_msg: str) -> Mode:
        host = source_host(source)
        if host in self.trusted:
            _, headers = parse_headers(whole_msg)
            named = next((v.strip().lower() for k, v in headers if k.lower() == HEADER), None)
            if named in MODES:
                return named
            return "off"  # the front names every SRTP trunk; no header = a trunk without SRTP
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return "off"
        return next((mode for net, mode in self.by_source if ip.version == net.version and ip in net), "off")
