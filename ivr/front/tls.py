"""The TLS and SRTP pieces of the front's kamailio.cfg, and its `tls.cfg` (the tls module's profile file).

Design. TLS ends at the front: trunks may reach it over TLS (`front.tls`, port 5061 by default), the workers
are always reached over plain UDP/TCP on the internal address. `record_route()` with rr's
`enable_double_rr` then writes two Record-Route entries when the transport changes, the outside one with
`transport=tls`, so in-dialog requests from a worker (BYE, REFER) leave the front over TLS again and the
trunk's requests reach the worker over UDP. A TLS peer's Contact names a port nobody listens on with a
server certificate (a client-side socket): `force_tcp_alias()` binds its Via port to the connection it
came in on, so requests toward it reuse that connection.

Per trunk (the permissions tag names it): an INVITE over another transport than the trunk's is refused
with 403; a trunk with SRTP gets `X-IVR-Srtp: <mode>` added (outside X-IVR-* headers are removed before),
which the worker trusts only from the front's address and uses to pick its per-mode pjsua account.
"""

from __future__ import annotations

import os
from pathlib import Path

from ivr.config.model import IvrConfig, Trunk
from ivr.errors import IvrError
from ivr.front import cfg_template as t
from ivr.front import tier_template

TLS_CFG_NAME = "tls.cfg"


def listen_line(config: IvrConfig) -> str:
    """The `listen=tls:...` line, or "" when TLS is off."""
    if not config.front.tls.enabled:
        return ""
    host = config.sip.listen_host
    host = f"[{host}]" if ":" in host else host
    return f"\nlisten=tls:{host}:{config.front.tls.port}"


def _trunk_block(trunk: Trunk, tier_source: str) -> str:
    check = "" if trunk.transport == "any" else t.TRUNK_TRANSPORT.substitute(transport=trunk.transport)
    body = tier_template.tier_transport(check, tier_source)
    if trunk.transport != "udp":
        body += t.TRUNK_TLS_ALIAS
    if trunk.srtp != "off":
        body += t.TRUNK_SRTP.substitute(mode=trunk.srtp)
    return t.TRUNK_SECURITY.substitute(trunk=trunk.name, body=body)


def cfg_parts(config: IvrConfig, base_dir: Path) -> dict[str, str]:
    """Template values of the TLS pieces: global switch, module, modparams, per-trunk checks."""
    enabled = config.front.tls.enabled
    return {
        "tls_global": t.TLS_GLOBAL if enabled else "",
        "tls_load": t.TLS_LOAD if enabled else "",
        "tls_params": t.TLS_PARAMS.substitute(tls_cfg=str(base_dir / TLS_CFG_NAME)) if enabled else "",
        "trunk_security": "".join(_trunk_block(trunk, config.front.tier_source) for trunk in config.trunks
                                  if trunk.transport != "any" or trunk.srtp != "off"),
    }


def profile_text(config: IvrConfig, files: dict[str, str]) -> str:
    """tls.cfg: the server profile (our certificate) and the client profile (verifying TLS trunks).
    `files`: where Kamailio finds each configured file (field value -> path)."""
    tls = config.front.tls

    def path(value: str) -> str:
        return files[value]

    return t.TLS_CFG.substitute(
        method=f"{tls.min_version}+",
        verify="yes" if tls.verify_clients else "no",
        client_verify="yes" if tls.ca_list else "no",
        private_key=path(tls.private_key),
        certificate=path(tls.certificate),
        ca_line=f"ca_list = {path(tls.ca_list)}\n" if tls.ca_list else "",
        ciphers=tls.ciphers,
    )


def write_profile(config: IvrConfig, out_dir: Path, config_dir: Path, copy_to: Path | None) -> list[Path]:
    """Write tls.cfg into out_dir when TLS is on; the files written.

    Managed (copy_to None): tls.cfg names the certificate files where the config says (no second copy of
    the private key on disk). Rendered for a Kamailio elsewhere
    (`ivr front render`, e.g. a container that mounts only the rendered directory): the certificate, key
    (mode 0600) and CA are copied next to tls.cfg and named by `copy_to`, where Kamailio sees that directory."""
    tls = config.front.tls
    if not tls.enabled:
        return []
    written = [out_dir / TLS_CFG_NAME]
    sources = [v for v in (tls.certificate, tls.private_key, tls.ca_list) if v]
    files = {value: str((config_dir / value).resolve()) for value in sources}
    if copy_to is not None:
        for value, name in zip(sources, ("tls-certificate.pem", "tls-key.pem", "tls-ca.pem"), strict=False):
            try:
                data = (config_dir / value).read_bytes()
            except OSError as exc:
                raise IvrError(f"front.tls: cannot read {value}: {exc.strerror} (`ivr check` checks it)") from exc
            target = out_dir / name
            target.touch(mode=0o600)
            os.chmod(target, 0o600)
            target.write_bytes(data)
            files[value] = str(copy_to / name)
            written.append(target)
    written[0].write_text(profile_text(config, files))
    return written
