"""TLS/SRTP settings without calls: the rendered Kamailio pieces (checked by `kamailio -c` itself), `ivr check`
of certificates and transports (file:line), and the worker's choice of SRTP mode per INVITE."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from tlskit import Pki, make_pki

from ivr.config.diff import restart_needed
from ivr.config.load import load_config
from ivr.config.model import IvrConfig
from ivr.errors import ConfigError, IvrError
from ivr.front.kamailio import render
from ivr.sip.srtp import SrtpPolicy, source_host
from ivr.workers import srtp_args

KAMAILIO = "/usr/sbin/kamailio"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def yaml_text(pki: Pki, *, tls: str = "", trunk: str = "transport: tls, srtp: mandatory", workers: int = 2) -> str:
    tls = tls or f"{{enabled: true, certificate: {pki.cert.name}, private_key: {pki.key.name}, ca_list: ca.pem}}"
    return textwrap.dedent(f"""\
        sip: {{listen_port: 15060, workers: {workers}, worker_base_port: 15100}}
        front:
          tls: {tls}
        trunks:
          - {{name: provider, sources: [192.0.2.0/24], {trunk}}}
          - {{name: lab, sources: [127.0.0.1]}}
        numbers: {{"*": main}}
        queues: {{default: {{uri: "sip:default@127.0.0.1:5070"}}}}
        flows: {{main: {{steps: [{{id: bye, type: hangup}}]}}}}
        prompts_dir: .
        """)


def check(pki: Pki, text: str) -> list[str]:
    """`ivr check`'s issues as `line: path: message` (the YAML sits next to the certificates)."""
    path = pki.cert.parent / "ivr.yaml"
    path.write_text(text)
    try:
        loaded = load_config(path, {}, check_files=True)
    except ConfigError as exc:
        return [f"{i.line}: {i.path}: {i.severity}: {i.message}" for i in exc.issues]
    return [f"{i.line}: {i.path}: {i.severity}: {i.message}" for i in loaded.warnings]


def test_valid_tls_config_checks_clean(pki: Pki) -> None:
    assert check(pki, yaml_text(pki)) == []


def test_key_of_another_certificate_is_an_error_at_its_line(pki: Pki) -> None:
    tls = f"{{enabled: true, certificate: front.pem, private_key: {pki.other_key.name}}}"
    assert check(pki, yaml_text(pki, tls=tls)) == [
        "3: front.tls.private_key: error: the private key does not match the certificate"]


def test_missing_certificate_files_are_errors(pki: Pki) -> None:
    tls = "{enabled: true, certificate: nowhere.pem, private_key: front.key, ca_list: nothing.pem}"
    assert check(pki, yaml_text(pki, tls=tls)) == [
        "3: front.tls.ca_list: error: ca list file not found: nothing.pem",
        "3: front.tls.certificate: error: certificate file not found: nowhere.pem"]


def test_garbage_certificate_is_an_error(pki: Pki) -> None:
    (pki.cert.parent / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    tls = "{enabled: true, certificate: garbage.pem, private_key: front.key}"
    issues = check(pki, yaml_text(pki, tls=tls))
    assert len(issues) == 1 and issues[0].startswith("3: front.tls.private_key: error: certificate or key unusable")


def test_tls_trunk_needs_the_tls_listener_and_tls_needs_a_front(pki: Pki) -> None:
    assert check(pki, yaml_text(pki, tls="{enabled: false}")) == [
        "5: trunks[0].transport: error: trunk 'provider' uses tls but front.tls is not enabled"]
    assert check(pki, yaml_text(pki, workers=1)) == [
        "3: front.tls.enabled: error: TLS is served by the front, and this config runs no front (front.mode none, "
        "or auto with one worker)"]


def test_tls_port_taken_by_another_listener_is_an_error(pki: Pki) -> None:
    base = yaml_text(pki)
    assert check(pki, base.replace("ca_list: ca.pem}", "ca_list: ca.pem, port: 15060}")) == [
        "3: front.tls.port: error: TLS port 15060 is also the public SIP port (TCP)"]
    assert check(pki, base.replace("ca_list: ca.pem}", "ca_list: ca.pem, port: 15101}")) == [
        "3: front.tls.port: error: TLS port 15101 is also a worker SIP port"]


def test_mutual_tls_verifies_clients_against_the_ca_list(pki: Pki, tmp_path: Path) -> None:
    path = pki.cert.parent / "mutual.yaml"
    path.write_text(yaml_text(pki).replace("ca_list: ca.pem}", "ca_list: ca.pem, verify_clients: true}"))
    loaded = load_config(path, {}, check_files=True)
    render(loaded.config, tmp_path, config_dir=loaded.root)
    server = (tmp_path / "tls.cfg").read_text().split("[client:default]")[0]
    assert "verify_certificate = yes\nrequire_certificate = yes\n" in server and f"ca_list = {pki.ca}" in server
    with pytest.raises(ValueError, match="verify_clients needs ca_list"):
        IvrConfig.model_validate({**loaded.config.model_dump(), "front": {"tls": {
            "enabled": True, "certificate": "a", "private_key": "b", "verify_clients": True}}})


def test_srtp_over_a_clear_transport_is_a_warning(pki: Pki) -> None:
    assert check(pki, yaml_text(pki, trunk="transport: udp, srtp: optional")) == [
        "5: trunks[0].srtp: warning: trunk 'provider': SDES keys travel in the SDP, readable on the wire unless "
        "the trunk's transport is tls"]


def test_enabled_without_files_is_refused_by_the_model() -> None:
    with pytest.raises(ValueError, match="needs certificate and private_key"):
        IvrConfig.model_validate({"front": {"tls": {"enabled": True}}, "trunks": [{"name": "t", "sources": ["::1"]}],
                                  "numbers": {"*": "m"}, "queues": {"q": {"uri": "sip:q@127.0.0.1"}},
                                  "flows": {"m": {"steps": [{"id": "b", "type": "hangup"}]}}})


@pytest.mark.parametrize("min_version", ["TLSv1.2", "TLSv1.3"])
def test_rendered_tls_front_passes_kamailio_own_check(pki: Pki, tmp_path: Path, min_version: str) -> None:
    text = yaml_text(pki).replace("ca_list: ca.pem}", f"ca_list: ca.pem, min_version: {min_version}}}")
    path = pki.cert.parent / f"ivr-{min_version}.yaml"
    path.write_text(text)
    loaded = load_config(path, {}, check_files=False)
    files = render(loaded.config, tmp_path, config_dir=loaded.root)
    cfg, profile = files.cfg.read_text(), (tmp_path / "tls.cfg").read_text()
    assert "enable_tls=yes" in cfg and "listen=tls:127.0.0.1:5061" in cfg and 'loadmodule "tls.so"' in cfg
    assert 'modparam("rr", "enable_double_rr", 1)' in cfg
    assert 'if ($avp(trunk) == "provider") {\n\t\tif ($pr != "tls") {' in cfg
    assert 'append_hf("X-IVR-Srtp: mandatory\\r\\n");' in cfg
    assert '"lab"' not in cfg  # a trunk with neither transport nor SRTP gets no block
    assert f"method = {min_version}+" in profile
    assert f"certificate = {pki.cert}" in profile and f"private_key = {pki.key}" in profile
    assert f"ca_list = {pki.ca}" in profile and "SSLv" not in profile
    assert Path(KAMAILIO).exists(), "kamailio is not installed: scripts/bootstrap installs it"
    run = subprocess.run([KAMAILIO, "-c", "-f", str(files.cfg)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]


def test_rendered_for_a_container_the_certificates_travel_with_tls_cfg(pki: Pki, tmp_path: Path) -> None:
    path = pki.cert.parent / "external.yaml"
    path.write_text(yaml_text(pki))
    loaded = load_config(path, {}, check_files=False)
    files = render(loaded.config, tmp_path, base_dir=Path("/run/ivr-front"), config_dir=loaded.root,
                   copy_certificates=True)
    profile = (tmp_path / "tls.cfg").read_text()
    assert "certificate = /run/ivr-front/tls-certificate.pem" in profile
    assert "private_key = /run/ivr-front/tls-key.pem" in profile and "ca_list = /run/ivr-front/tls-ca.pem" in profile
    assert (tmp_path / "tls-key.pem").read_bytes() == pki.key.read_bytes()
    assert (tmp_path / "tls-key.pem").stat().st_mode & 0o077 == 0
    assert {p.name for p in files.extra} >= {"tls.cfg", "tls-certificate.pem", "tls-key.pem", "tls-ca.pem"}


def test_render_for_elsewhere_with_a_missing_key_is_an_error_not_a_traceback(pki: Pki, tmp_path: Path) -> None:
    path = pki.cert.parent / "missing.yaml"
    path.write_text(yaml_text(pki, tls="{enabled: true, certificate: front.pem, private_key: gone.key}"))
    loaded = load_config(path, {}, check_files=False)
    with pytest.raises(IvrError, match="front.tls: cannot read gone.key"):
        render(loaded.config, tmp_path, config_dir=loaded.root, copy_certificates=True)


def test_without_tls_nothing_of_it_is_rendered(pki: Pki, tmp_path: Path) -> None:
    path = pki.cert.parent / "plain.yaml"
    path.write_text(yaml_text(pki, tls="{enabled: false}", trunk="transport: udp"))
    loaded = load_config(path, {}, check_files=False)
    cfg = render(loaded.config, tmp_path, config_dir=loaded.root).cfg.read_text()
    assert "listen=tls" not in cfg and 'loadmodule "tls.so"' not in cfg
    assert "enable_tls" not in cfg and "X-IVR-Srtp" not in cfg and not (tmp_path / "tls.cfg").exists()
    assert '\t\tif ($pr != "udp") {' in cfg  # the transport rule of a udp trunk still applies


def test_srtp_header_counts_only_from_the_front() -> None:
    policy = SrtpPolicy.from_args(["127.0.0.1"], [])
    invite = "INVITE sip:300@w SIP/2.0\r\nVia: x\r\nX-IVR-Srtp: mandatory\r\n\r\nv=0\r\n"
    assert policy.mode_for("127.0.0.1:5060", invite) == "mandatory"
    assert policy.mode_for("127.0.0.1:5060", invite.replace("mandatory", "optional")) == "optional"
    assert policy.mode_for("127.0.0.1:5060", invite.replace("X-IVR-Srtp: mandatory\r\n", "")) == "off"
    assert policy.mode_for("127.0.0.1:5060", invite.replace("mandatory", "bogus")) == "off"
    assert policy.mode_for("127.0.0.9:5060", invite) == "off"  # anyone else naming a mode is ignored


def test_srtp_by_source_without_a_front() -> None:
    policy = SrtpPolicy.from_args([], ["192.0.2.0/24=mandatory", "2001:db8::/32=optional"])
    assert policy.mode_for("192.0.2.7:5060", "INVITE sip:1@w SIP/2.0\r\n\r\n") == "mandatory"
    assert policy.mode_for("[2001:db8::1]:5060", "INVITE sip:1@w SIP/2.0\r\n\r\n") == "optional"
    assert policy.mode_for("198.51.100.1:5060", "INVITE sip:1@w SIP/2.0\r\nX-IVR-Srtp: off\r\n\r\n") == "off"
    assert source_host("[::1]:5060") == "::1" and source_host("10.0.0.1:5060") == "10.0.0.1"
    with pytest.raises(ValueError):
        SrtpPolicy.from_args([], ["10.0.0.0/8=maybe"])


def test_worker_srtp_options(pki: Pki) -> None:
    path = pki.cert.parent / "args.yaml"
    path.write_text(yaml_text(pki))
    trunks = load_config(path, {}, check_files=False).config.trunks
    assert srtp_args(trunks, frozenset({"127.0.0.1"})) == ("--srtp-trusted", "127.0.0.1")
    assert srtp_args(trunks, frozenset()) == ("--srtp-source", "192.0.2.0/24=mandatory")


def test_a_reload_cannot_change_a_trunks_transport_or_srtp(pki: Pki) -> None:
    """Both are baked into the front's script and the workers' options at start-up: SIGHUP refuses them."""
    def loaded(text: str) -> IvrConfig:
        path = pki.cert.parent / "reload.yaml"
        path.write_text(text)
        return load_config(path, {}, check_files=False).config

    running = loaded(yaml_text(pki))
    assert restart_needed(running, loaded(yaml_text(pki, trunk="transport: tls, srtp: optional"))) == [
        "trunks (transport, srtp)"]
    assert restart_needed(running, loaded(yaml_text(pki, trunk="transport: tls, srtp: mandatory"))) == []
    lab = "  - {name: lab, sources: [127.0.0.1]}\n"
    added = yaml_text(pki).replace(lab, lab + "  - {name: extra, sources: [198.51.100.7]}\n")
    assert "trunks (transport, srtp)" not in restart_needed(running, loaded(added))  # defaults: not this rule
