"""Checks of the TLS and SRTP settings: transports against the front, certificate files against each other.

`ivr check` reports these at the YAML line of the field, like every other check. The key-matches-certificate
test is Python's own `ssl.SSLContext.load_cert_chain`, which refuses a key that is not the certificate's.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from ivr.config.model import IvrConfig

Path_ = tuple[str | int, ...]
Problem = tuple[Path_, str, Literal["error", "warning"]]


def _front_in_use(config: IvrConfig) -> bool:
    mode = config.front.mode
    return mode in ("managed", "external") or (mode == "auto" and config.sip.workers > 1)


def _port_clash(config: IvrConfig, port: int) -> str:
    """What else listens on TCP `port` (the TLS listener is TCP), or ""."""
    sip = config.sip
    if port == sip.listen_port and "tcp" in sip.transports:
        return "the public SIP port (TCP)"
    if sip.workers > 1 and sip.worker_base_port <= port < sip.worker_base_port + sip.workers:
        return "a worker SIP port"
    for name, section in (("admin", config.admin), ("demo CRM", config.demo_crm)):
        if section.enabled and section.port == port:
            return f"the {name} port"
    return ""


def transport_problems(config: IvrConfig) -> Iterator[Problem]:
    """Trunks on TLS need the front's TLS listener; SRTP keys in clear SDP deserve a warning."""
    tls = config.front.tls
    if tls.enabled and not _front_in_use(config):
        yield ("front", "tls", "enabled"), "TLS is served by the front, and this config runs no front " \
            "(front.mode none, or auto with one worker)", "error"
    if tls.enabled and (clash := _port_clash(config, tls.port)):
        yield ("front", "tls", "port"), f"TLS port {tls.port} is also {clash}", "error"
    for i, trunk in enumerate(config.trunks):
        if trunk.transport == "tls" and not tls.enabled:
            yield ("trunks", i, "transport"), f"trunk '{trunk.name}' uses tls but front.tls is not enabled", \
                "error"
        if trunk.transport in ("udp", "tcp") and trunk.transport not in config.sip.transports:
            yield ("trunks", i, "transport"), f"trunk '{trunk.name}' uses {trunk.transport}, which is not in " \
                "sip.transports", "error"
        if trunk.srtp != "off" and trunk.transport != "tls":
            yield ("trunks", i, "srtp"), f"trunk '{trunk.name}': SDES keys travel in the SDP, readable on the " \
                "wire unless the trunk's transport is tls", "warning"


def file_problems(config: IvrConfig, root: Path) -> Iterator[Problem]:
    """The certificate, key and CA files exist, parse, and the key belongs to the certificate."""
    tls = config.front.tls
    if not tls.enabled:
        return
    cert, key = root / tls.certificate, root / tls.private_key
    missing = False
    for field, written, path in (("certificate", tls.certificate, cert), ("private_key", tls.private_key, key),
                                 ("ca_list", tls.ca_list, root / (tls.ca_list or ""))):
        if written and not path.is_file():
            missing = True
            yield ("front", "tls", field), f"{field.replace('_', ' ')} file not found: {written}", "error"
    if missing:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        why = "the private key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) \
            else f"certificate or key unusable: {exc.reason or exc}"
        yield ("front", "tls", "private_key"), why, "error"
    if tls.ca_list:
        try:
            ssl.create_default_context(cafile=root / tls.ca_list)
        except ssl.SSLError as exc:
            yield ("front", "tls", "ca_list"), f"CA list unusable: {exc.reason or exc}", "error"
