"""TLS on the front and SRTP on the workers' media, proven with an independent client (baresip 1.0, Debian).

One server (`ivr run`, 2 workers behind the managed Kamailio with TLS on) and three trunks, told apart by
source address on 127.0.0.0/8:
- `secure` 127.0.0.1 (where baresip's TLS connections come from): transport tls, SRTP mandatory;
- `plain_mand` 127.0.0.2: transport udp, SRTP mandatory (SIPp offering plain RTP gets 488);
- `clear` 127.0.0.3: transport udp, SRTP optional: a plain offer is answered with plain RTP (the control call
  that proves the capture check sees clear audio).
A second, single-worker server (no front) checks SRTP chosen by the trunk's source address in the worker.
The queue `sales` points at a SIPp UAS on 127.0.0.1: baresip follows the IVR's REFER there.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sippkit import SippRun, collect, free_udp_port, sipp
from tlskit import (
    SRTP_TAG_80,
    Baresip,
    Capture,
    Pki,
    audible,
    byte_entropy,
    call_rtp,
    clear_prompt_frames,
    flows,
    handshake,
    make_pki,
    media_pair,
    pcmu_of_wav,
    tls_invite,
    transferee,
    wait_packets,
    wait_text,
    weak_client,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from ivrkit import ROOT, IvrServer, default_config, free_port, free_span  # noqa: E402

pytestmark = pytest.mark.sip  # baresip missing fails the test (scripts/bootstrap installs baresip-core)

PLAIN_IP, CLEAR_IP = "127.0.0.2", "127.0.0.3"
MENU = {"description": "Press 1 for sales.",
        "steps": [
            {"id": "menu", "type": "menu", "prompts": ["main_menu"], "options": {"1": "to_sales"}, "timeout": "10s",
             "attempts": 2, "on_exhausted": "bye"},
            {"id": "to_sales", "type": "transfer", "queue": "sales", "notify_timeout": "5s", "on_fail": "bye"},
            {"id": "bye", "type": "hangup", "prompts": ["goodbye"]}]}


class Setup:
    def __init__(self, server: IvrServer, pki: Pki, tls_port: int, uas_port: int, rtp_ports: range) -> None:
        self.server, self.pki, self.tls_port, self.uas_port, self.rtp_ports = server, pki, tls_port, uas_port, rtp_ports


def live_worker(server: IvrServer) -> str:
    """The worker of the one live call, from the admin endpoint's /calls."""
    url = f"http://127.0.0.1:{server.config['admin']['port']}/calls"
    with urllib.request.urlopen(url, timeout=5) as response:
        calls = json.load(response)["calls"]
    assert len(calls) == 1, calls
    return str(calls[0]["worker"])


def tls_config(pki: Pki, tls_port: int, uas_port: int) -> dict[str, Any]:
    cfg = default_config()
    rtp = 34000 + 40 * random.randrange(0, 100)
    cfg["sip"].update(listen_port=free_port(), workers=2, worker_base_port=free_span(2), rtp_port_start=rtp,
                      max_call_duration="120s", drain_timeout="5s")
    cfg["front"] = {"mode": "managed", "tls": {"enabled": True, "port": tls_port, "certificate": str(pki.cert),
                                               "private_key": str(pki.key), "ca_list": str(pki.ca)}}
    cfg["trunks"] = [
        # dtmf rfc4733: a digit by SIP INFO would be ignored, so a routed call proves telephone-events in SRTP
        {"name": "secure", "sources": ["127.0.0.1/32"], "transport": "tls", "srtp": "mandatory", "dtmf": "rfc4733"},
        {"name": "plain_mand", "sources": [f"{PLAIN_IP}/32"], "transport": "udp", "srtp": "mandatory"},
        {"name": "clear", "sources": [f"{CLEAR_IP}/32"], "transport": "udp", "srtp": "optional"},
    ]
    cfg["admin"] = {"enabled": True, "host": "127.0.0.1", "port": free_port()}  # /calls names a call's worker
    demo_port = free_port()
    cfg["demo_crm"].update(enabled=True, port=demo_port)
    cfg["http"]["crm"]["base_url"] = f"http://127.0.0.1:{demo_port}"
    cfg["flows"]["menu"] = MENU
    cfg["numbers"] = {"300": "menu", "*": "menu"}
    cfg["queues"]["sales"] = {"uri": f"sip:sales@127.0.0.1:{uas_port}"}
    cfg["logging"] = {"level": "info", "format": "json"}
    return cfg


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("tls")
    pki = make_pki(base / "pki")
    tls_port, uas_port = free_port(), free_udp_port()
    cfg = tls_config(pki, tls_port, uas_port)
    server = IvrServer(cfg, base).start()
    start = int(cfg["sip"]["rtp_port_start"])
    try:
        yield Setup(server, pki, tls_port, uas_port, range(start, start + 2 * 40))
    finally:
        server.stop()


def transferred_to_sales(line: dict[str, Any], setup: Setup) -> bool:
    outcome = line["outcome"]
    return bool(outcome["kind"] == "transfer" and outcome["queue"] == "sales"
                and outcome["uri"] == f"sip:sales@127.0.0.1:{setup.uas_port}" and outcome["reason"] == "transferred")


def test_tls_srtp_call_is_answered_routed_by_dtmf_and_transferred(setup: Setup, tmp_path: Path) -> None:
    uas = transferee(setup.uas_port, tmp_path)
    baresip = Baresip(tmp_path, ip="127.0.0.1", ca=setup.pki.ca,
                      source_wav=ROOT / "prompts" / "hold_music.wav", mediaenc="srtp-mand")
    pcap = tmp_path / "rtp.pcap"
    try:
        with Capture(pcap, setup.rtp_ports):
            baresip.start()
            baresip.dial(f"sip:300@127.0.0.1:{setup.tls_port};transport=tls")
            baresip.wait_log(r"Call established", 20)
            baresip.wait_log(r"SRTP is Enabled \(cryptosuite=AES_CM_128_HMAC_SHA1_80\)", 5)
            pair = media_pair(baresip.log)
            wait_packets(pcap, [pair], 50)
            baresip.digit("1")
            refer = baresip.wait_log(r"REFER sip:[^\n]*\n(?:[^\n]+\n)*?Refer-To: *<?(sip:[^>\r\n]+)", 20)
            line = setup.server.wait_for(lambda e: e.get("event") == "call.ended" and e.get("trunk") == "secure",
                                         30, what="call.ended of the TLS call")
        baresip.stop()  # /quit: baresip hangs up its call with the transfer target
        uas_out, _ = uas.communicate(timeout=15)
    finally:
        baresip.stop()
        if uas.poll() is None:
            uas.kill()
            uas.communicate()
    log = baresip.log
    # Signalling: over TLS to the front's TLS port, the front's Record-Route carries transport=tls outside.
    assert "TLS 127.0.0.1:" in log and f"-> 127.0.0.1:{setup.tls_port}\nINVITE sip:300@" in log, log[-3000:]
    assert f"Record-Route: <sip:127.0.0.1:{setup.tls_port};transport=tls;lr;r2=on" in log
    assert "Contact: <sip:w00" not in log and "-srtp-mandatory@" not in log  # topoh masks the worker's Contact
    # DTMF by RFC 4733 over SRTP (the trunk takes no other method) reached the flow, which transferred the
    # caller to the sales queue.
    assert transferred_to_sales(line, setup), line
    assert refer.group(1).startswith(f"sip:sales@127.0.0.1:{setup.uas_port}")
    uas_run = collect(uas.returncode, uas_out, tmp_path, "uas")
    assert uas.returncode == 0, uas_run.describe()
    assert f"transferee INVITE sip:sales@127.0.0.1:{setup.uas_port}" in uas_run.log, uas_run.describe()
    # Media: every PCMU packet either way is SRTP: 160 bytes of ciphertext + the 80-bit auth tag, no prompt
    # frame in clear, byte entropy of ciphertext.
    assert pair[0] in setup.rtp_ports  # the worker's end of the media
    sent, received = call_rtp(pcap, pair)
    assert len(sent) >= 50 and len(received) >= 50, (len(sent), len(received))
    assert {len(p) for p in sent} == {160 + SRTP_TAG_80}, sorted({len(p) for p in sent})
    assert {len(p) for p in received} == {160 + SRTP_TAG_80}, sorted({len(p) for p in received})
    prompt = pcmu_of_wav(ROOT / "prompts" / "main_menu.wav")
    assert clear_prompt_frames([p[:160] for p in sent], prompt) == 0
    assert byte_entropy([p[:160] for p in sent]) > 7.9


def test_control_call_without_srtp_shows_the_prompt_in_clear(setup: Setup, tmp_path: Path) -> None:
    """A plain offer to the SRTP-optional trunk is answered with plain RTP, and the same checks find the
    prompt's audio in it: they can tell clear from encrypted."""
    pcap = tmp_path / "clear.pcap"
    with Capture(pcap, setup.rtp_ports):
        run = sipp(setup.server.sip_port, "long_hold.xml", service="300", tag="clear", workdir=tmp_path,
                   local_ip=CLEAR_IP, duration_ms=3000, variables={"caller": "5550003"})
        assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    prompt = pcmu_of_wav(ROOT / "prompts" / "main_menu.wav")
    ours = [p for (src, _), p in flows(pcap).items() if src in setup.rtp_ports and clear_prompt_frames(p, prompt)]
    assert ours, "no flow from the workers' ports carries the prompt in clear"
    sent = max(ours, key=len)
    assert len(audible(sent)) >= 25 and {len(p) for p in sent} == {160}
    assert clear_prompt_frames(sent, prompt) == len(audible(sent))  # every audible frame is the prompt's
    assert byte_entropy(sent) < 7.9


def test_srtp_offer_to_the_optional_trunk_is_answered_with_srtp(setup: Setup, tmp_path: Path) -> None:
    """The optional trunk answers an SDES offer with RTP/SAVP and its own key (the plain offer above got
    plain RTP from the same trunk)."""
    run = sipp(setup.server.sip_port, "tls/srtp_offer.xml", service="300", tag="srtpopt", workdir=tmp_path,
               local_ip=CLEAR_IP, variables={"caller": "5550003"})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert re.search(r"answered m=audio \d+ RTP/SAVP [0-9 ]+ AES_CM_128_HMAC_SHA1_80", run.log), run.describe()


def test_plain_rtp_offer_to_a_mandatory_trunk_gets_488(setup: Setup, tmp_path: Path) -> None:
    run = sipp(setup.server.sip_port, "tls/plain_offer.xml", service="300", tag="plain", workdir=tmp_path,
               local_ip=PLAIN_IP, variables={"caller": "5550002"})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert "refused 488" in run.log, run.describe()
    setup.server.wait_for(lambda e: e.get("event") == "sip.call.refused_by_stack" and e.get("code") == 488, 10,
                          what="the worker's 488")


def test_baresip_without_srtp_to_the_mandatory_tls_trunk_gets_488(setup: Setup, tmp_path: Path) -> None:
    baresip = Baresip(tmp_path, ip="127.0.0.1", ca=setup.pki.ca,
                      source_wav=ROOT / "prompts" / "hold_music.wav", mediaenc=None)
    try:
        baresip.start()
        baresip.dial(f"sip:300@127.0.0.1:{setup.tls_port};transport=tls")
        baresip.wait_log(r"SIP/2.0 488 Not Acceptable", 20)
    finally:
        baresip.stop()


def test_tls_trunk_calling_over_udp_is_refused(setup: Setup, tmp_path: Path) -> None:
    """The secure trunk's address over UDP: the front refuses it (403), no worker sees it."""
    run = sipp(setup.server.sip_port, "tls/plain_offer.xml", service="300", tag="udp", workdir=tmp_path,
               local_ip="127.0.0.1", variables={"caller": "5550001"}, timeout=10)
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert "refused 403" in run.log, run.describe()


def test_front_offers_tls12_or_later_with_its_certificate_and_refuses_older_or_weak(setup: Setup) -> None:
    verified = ssl.create_default_context(cafile=str(setup.pki.ca))  # checks the IP SAN 127.0.0.1
    assert handshake(setup.tls_port, verified)[0] == "TLSv1.3"
    verified.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(setup.tls_port, verified) == ("TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tls11 = weak_client(version=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):  # the front's alert, not our refusal
        handshake(setup.tls_port, tls11)
    sha1 = weak_client(version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-SHA")
    with pytest.raises(ssl.SSLError, match="ALERT_HANDSHAKE_FAILURE"):
        handshake(setup.tls_port, sha1)


CONCURRENT = 6
"""More than one worker holds (4 calls each): both workers carry SRTP calls."""


def test_concurrent_tls_srtp_calls_while_plain_offers_are_refused(setup: Setup, tmp_path: Path) -> None:
    """Six baresip callers at once (two workers), each routed by its DTMF and transferred; while they talk,
    five plain-RTP offers to the mandatory trunk get 488 (two at a time: the two slots left). All media on the
    wire is SRTP."""
    uas = transferee(setup.uas_port, tmp_path, calls=CONCURRENT)
    callers = [Baresip(tmp_path / f"c{i}", ip="127.0.0.1", ca=setup.pki.ca,
                       source_wav=ROOT / "prompts" / "hold_music.wav", mediaenc="srtp-mand") for i in range(CONCURRENT)]
    pcap = tmp_path / "rtp.pcap"
    try:
        with Capture(pcap, setup.rtp_ports):
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.dial(f"sip:300@127.0.0.1:{setup.tls_port};transport=tls")
            call_ids = [c.wait_log(r"INVITE sip:300@[^\n]*\n(?:[^\n]+\n)*?Call-ID: (\S+)", 20).group(1)
                        for c in callers]
            for caller in callers:
                caller.wait_log(r"Call established", 20)
            plain = sipp(setup.server.sip_port, "tls/plain_offer.xml", service="300", tag="plainflood",
                         workdir=tmp_path, local_ip=PLAIN_IP, calls=5, concurrency=2, rate=20,
                         variables={"caller": "5550002"}, background=True)
            pairs = [media_pair(caller.log) for caller in callers]
            wait_packets(pcap, pairs, 50)
            for caller in callers:
                caller.digit("1")
            lines = [setup.server.call_ended(call_id) for call_id in call_ids]
            assert isinstance(plain, subprocess.Popen)
            plain_out, _ = plain.communicate(timeout=60)
        for caller in callers:
            caller.stop()
        uas_out, _ = uas.communicate(timeout=15)
    finally:
        for caller in callers:
            caller.stop()
        if uas.poll() is None:
            uas.kill()
            uas.communicate()
    assert all(transferred_to_sales(line, setup) for line in lines), lines
    assert {line["trunk"] for line in lines} == {"secure"}
    assert len({line["worker"] for line in lines}) == 2
    refused = collect(plain.returncode, plain_out, tmp_path, "plainflood")
    assert plain.returncode == 0 and refused.log.count("refused 488") == 5, refused.describe()
    uas_run = collect(uas.returncode, uas_out, tmp_path, "uas")
    assert uas.returncode == 0 and uas_run.log.count("transferee INVITE sip:sales@") == CONCURRENT, uas_run.describe()
    for pair in pairs:
        sent, received = call_rtp(pcap, pair)
        assert len(sent) >= 50 and len(received) >= 50, pair
        assert {len(p) for p in sent + received} == {160 + SRTP_TAG_80}, pair
        assert byte_entropy([p[:160] for p in sent]) > 7.5, pair


def test_single_worker_without_front_picks_srtp_by_trunk_source(tmp_path: Path) -> None:
    """No front: the worker itself maps the source address to the trunk's SRTP mode; the forged
    `X-IVR-Srtp: off` from that source is ignored (only a front's header counts)."""
    cfg = default_config()
    cfg["sip"].update(listen_port=free_port(), workers=1, rtp_port_start=38000 + 40 * random.randrange(0, 50))
    cfg["front"] = {"mode": "none"}
    cfg["trunks"] = [{"name": "plain_mand", "sources": [f"{PLAIN_IP}/32"], "srtp": "mandatory"},
                     {"name": "clear", "sources": [f"{CLEAR_IP}/32"]}]
    cfg["admin"] = {"enabled": False}
    cfg["demo_crm"].update(enabled=True, port=free_port())
    cfg["http"]["crm"]["base_url"] = f"http://127.0.0.1:{cfg['demo_crm']['port']}"
    cfg["flows"]["menu"] = MENU
    cfg["numbers"] = {"*": "menu"}
    cfg["logging"] = {"level": "info", "format": "json"}
    server = IvrServer(cfg, tmp_path).start()
    try:
        run = sipp(server.sip_port, "tls/plain_offer.xml", service="300", tag="direct", workdir=tmp_path,
                   local_ip=PLAIN_IP, variables={"caller": "5550002"})
        assert isinstance(run, SippRun)
        assert run.returncode == 0 and "refused 488" in run.log, run.describe()
        clear = sipp(server.sip_port, "long_hold.xml", service="300", tag="directclear", workdir=tmp_path,
                     local_ip=CLEAR_IP, duration_ms=500, variables={"caller": "5550003"})
        assert isinstance(clear, SippRun)
        assert clear.returncode == 0 and "answered" in clear.log, clear.describe()
    finally:
        server.stop()


def test_mutual_tls_front_answers_only_a_client_with_a_certificate_of_its_ca(setup: Setup, tmp_path: Path) -> None:
    """front.tls.verify_clients: baresip without a client certificate cannot even complete the handshake;
    with one signed by ca_list its SRTP call is answered."""
    cfg = tls_config(setup.pki, free_port(), free_udp_port())
    cfg["front"]["tls"]["verify_clients"] = True
    (tmp_path / "mutual").mkdir()
    server = IvrServer(cfg, tmp_path / "mutual").start()
    tls_port = cfg["front"]["tls"]["port"]
    anonymous = Baresip(tmp_path / "anon", ip="127.0.0.1", ca=setup.pki.ca,
                        source_wav=ROOT / "prompts" / "hold_music.wav", mediaenc="srtp-mand")
    known = Baresip(tmp_path / "known", ip="127.0.0.1", ca=setup.pki.ca,
                    source_wav=ROOT / "prompts" / "hold_music.wav", mediaenc="srtp-mand",
                    certificate=setup.pki.client)
    try:
        anonymous.start().dial(f"sip:300@127.0.0.1:{tls_port};transport=tls")
        front_log = tmp_path / "mutual" / "run" / "front" / "kamailio.log"
        wait_text(front_log, "peer did not return a certificate", 20)
        assert "SIP/2.0 " not in anonymous.log  # no answer of any kind came back
        known.start().dial(f"sip:300@127.0.0.1:{tls_port};transport=tls")
        known.wait_log(r"Call established", 20)
        known.wait_log(r"SRTP is Enabled", 5)
    finally:
        anonymous.stop()
        known.stop()
        server.stop()


def test_tls_from_a_non_tls_trunk_or_a_stranger_is_refused(setup: Setup) -> None:
    """TLS is not a way in by itself: the trunk ACL and the per-trunk transport still decide."""
    assert tls_invite(setup.tls_port, setup.pki.ca, PLAIN_IP, "tlsprobe-trunk") == "SIP/2.0 403 Forbidden"
    with pytest.raises(TimeoutError):  # a stranger gets silence over TLS too (front.stranger_invite_reply)
        tls_invite(setup.tls_port, setup.pki.ca, "127.0.0.9", "tlsprobe-stranger")
    wait_text(setup.server.workdir / "run" / "front" / "kamailio.log",
              f"front.trunk_wrong_transport plain_mand tls {PLAIN_IP}", 10)
    seen = [e for name in ("call.rejected", "call.ended") for e in setup.server.events(name)
            if "tlsprobe" in str(e.get("sip_call_id"))]
    assert seen == []  # the front answered: no worker, no controller saw them


def test_worker_killed_mid_srtp_call_is_recorded_and_its_replacement_takes_srtp_calls(setup: Setup,
                                                                                      tmp_path: Path) -> None:
    """Runs last on the shared server: SIGKILL of the worker holding a TLS+SRTP call; the call is recorded as
    lost, the worker restarts with its three SRTP accounts, and the next TLS+SRTP call is answered."""
    def caller(name: str) -> Baresip:
        return Baresip(tmp_path / name, ip="127.0.0.1", ca=setup.pki.ca,
                       source_wav=ROOT / "prompts" / "hold_music.wav", mediaenc="srtp-mand")

    first, second = caller("first"), caller("second")
    try:
        first.start().dial(f"sip:300@127.0.0.1:{setup.tls_port};transport=tls")
        first.wait_log(r"Call established", 20)
        call_id = first.wait_log(r"INVITE sip:300@[^\n]*\n(?:[^\n]+\n)*?Call-ID: (\S+)", 5).group(1)
        worker = live_worker(setup.server)  # the caller sees only the front's masked Contact
        pid = [e for e in setup.server.events("worker.ready") if e.get("worker") == worker][-1]["pid"]
        os.kill(pid, signal.SIGKILL)
        assert setup.server.call_ended(call_id)["end_reason"] == "worker_lost"
        setup.server.wait_for(lambda e: e.get("event") == "worker.ready" and e.get("worker") == worker
                              and e.get("pid") != pid, 30, what=f"{worker} restarted")
        first.stop()  # its BYE through the front releases the dead call's slot in the dispatcher
        setup.server.wait_front_active(worker)  # else the other worker takes the call on a loaded machine
        second.start().dial(f"sip:300@127.0.0.1:{setup.tls_port};transport=tls")
        second.wait_log(r"Call established", 20)
        second.wait_log(r"SRTP is Enabled", 5)
        assert live_worker(setup.server) == worker  # the restarted worker took it
    finally:
        first.stop()
        second.stop()
