"""A registration trunk, live: `ivr run` (2 workers behind its managed Kamailio) registers with a SIPp registrar
on 127.0.0.5 that refuses, then falls silent, then challenges with 401 and accepts the digest; the provider's
INVITEs to the registered Contact reach the flow as that trunk; the same INVITE from any other address is refused.

The tests run in file order on one server: each phase starts where the previous one left the registration.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUEUE_HOST, e2e_config, start_server
from ivrkit import IvrServer
from recordkit import transferred
from sippkit import SCENARIOS, SippRun, free_udp_port, sipp

pytestmark = pytest.mark.sip

PROVIDER = "127.0.0.5"
OUTSIDER = "127.0.0.6"
PASSWORD = "s3cret-registrar-pw"
REGISTRAR_PORT = free_udp_port(PROVIDER)


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    """Up before the server, so the front's very first REGISTER meets the 403."""
    proc = registrar("registrar_refuse.xml", tmp_path_factory.mktemp("refusing"), calls=1)
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def server(refusing: subprocess.Popen[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[IvrServer]:
    cfg = e2e_config(workers=2)
    cfg["trunks"].append({"name": "carrier", "sources": [f"{PROVIDER}/32"], "registration": {
        "registrar": f"sip:{PROVIDER}:{REGISTRAR_PORT}", "user": "acme", "password": PASSWORD, "expiry": "60s"}})
    cfg["front"].update(poll_interval="0.3s", registration_retry="4s", registration_retry_max="8s",
                        stranger_invite_reply="403")  # the outsider's INVITE is answered, so its refusal shows
    srv = start_server(cfg, tmp_path_factory.mktemp("registration"))
    yield srv
    srv.stop()


def registrar(scenario: str, workdir: Path, *, calls: int, expires: int = 300) -> subprocess.Popen[str]:
    argv = ["sipp", "-sf", str(SCENARIOS / "front" / scenario), "-i", PROVIDER, "-p", str(REGISTRAR_PORT),
            "-mi", PROVIDER, "-mp", str(free_udp_port(PROVIDER)), "-m", str(calls), "-key", "password", PASSWORD,
            "-key", "reg_expires", str(expires), "-nostdin", "-timeout", "60s", "-timeout_error", "-trace_msg",
            "-message_file", str(workdir / f"{scenario}.msg")]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, cwd=workdir)


def finished(proc: subprocess.Popen[str]) -> str:
    try:
        out, _ = proc.communicate(timeout=70)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-2000:]
    return out


def metric(server: IvrServer, name: str, **labels: str) -> float:
    url = f"http://127.0.0.1:{server.config['admin']['port']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}{re.escape('{' + want + '}' if want else '')} (\S+)$", text, re.M)
    assert match, f"{name}{{{want}}} not in /metrics:\n{text}"
    return float(match.group(1))


def healthz(server: IvrServer) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.config['admin']['port']}/healthz"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def failure(server: IvrServer, consecutive: int) -> dict[str, Any]:
    return server.wait_for(lambda e: e.get("event") == "trunk.registration_failed" and e.get("trunk") == "carrier"
                           and e.get("consecutive") == consecutive, 40, what=f"registration failure {consecutive}")


def test_a_refusing_then_silent_registrar_is_retried_with_a_doubling_wait(server: IvrServer,
                                                                          refusing: subprocess.Popen[str]) -> None:
    first = failure(server, 1)
    finished(refusing)  # it answered one REGISTER with 403, and is gone
    front_log = (server.workdir / "run" / "front" / "kamailio.log").read_text()
    assert "got sip response 403 while registering [reg-carrier]" in front_log
    assert first["retry_in_s"] == 4
    second = failure(server, 2)  # nobody answers the retry: tm's timeout
    assert second["retry_in_s"] == 8  # doubled, and capped by registration_retry_max
    assert metric(server, "ivr_trunk_registered", trunk="carrier") == 0
    assert metric(server, "ivr_trunk_registration_failures_total", trunk="carrier") >= 2
    assert metric(server, "ivr_trunk_registration_retry_seconds", trunk="carrier") == 8
    assert not [line for line in server.raw if PASSWORD in line]  # the password never reaches a log line


def test_digest_registration_succeeds_and_is_refreshed_before_expiry(server: IvrServer, tmp_path: Path) -> None:
    accepting = registrar("registrar.xml", tmp_path, calls=2, expires=8)  # refreshed ~4 s before expiry
    registered = server.wait_for(lambda e: e.get("event") == "trunk.registered" and e.get("trunk") == "carrier",
                                 40, what="trunk.registered")
    assert registered["after_failures"] >= 2
    assert metric(server, "ivr_trunk_registered", trunk="carrier") == 1
    finished(accepting)  # two full REGISTER / 401 / REGISTER with digest / 200 exchanges
    trace = (tmp_path / "registrar.xml.msg").read_text()
    assert trace.count("SIP/2.0 200 OK") == 2 and trace.count("SIP/2.0 401 Unauthorized") == 2
    assert trace.count('username="acme"') == 2 and "403 Wrong Password" not in trace
    contact = re.search(r"Contact: <sip:(reg-carrier)@127\.0\.0\.1:(\d+)>", trace)
    assert contact and int(contact.group(2)) == server.sip_port
    assert metric(server, "ivr_trunk_registered", trunk="carrier") == 1  # no gap between the two
    assert healthz(server)["front"] == {"up": True, "registered": {"carrier": True}}


def provider_calls(server: IvrServer, workdir: Path, tag: str, calls: int, source: str) -> SippRun:
    run = sipp(server.sip_port, "front/provider_call.xml", service="reg-carrier", tag=tag, workdir=workdir,
               calls=calls, concurrency=calls, rate=100, local_ip=source,
               variables={"caller": "+15551000002", "digits": "", "dialed": "100",
                          "expected_refer": f"sip:gold@{QUEUE_HOST}"})
    assert isinstance(run, SippRun)
    return run


def test_provider_calls_to_the_contact_reach_the_flow_as_that_trunk(server: IvrServer, tmp_path: Path) -> None:
    run = provider_calls(server, tmp_path, "provider", 4, PROVIDER)
    assert run.returncode == 0, run.describe()
    lines = [server.call_ended(f"provider-{i}-") for i in range(1, 5)]
    assert {line["trunk"] for line in lines} == {"carrier"}  # not the forged X-IVR-Trunk, not "demo"
    assert {line["dialed"] for line in lines} == {"100"}  # the DID from To, not the Contact user
    assert all(line["outcome"] == transferred("gold", f"sip:gold@{QUEUE_HOST}") for line in lines)


@pytest.mark.parametrize(("source", "cls"), [("127.0.0.1", "trunk"), (OUTSIDER, "nontrunk")])
def test_the_same_invite_from_another_address_is_refused(server: IvrServer, tmp_path: Path, source: str,
                                                         cls: str) -> None:
    """127.0.0.1 is the demo trunk: a trunk, but not this provider."""
    before = metric(server, "ivr_front_refusals_total", code="403", source=cls)
    run = sipp(server.sip_port, "front/uac_403.xml", service="reg-carrier", tag=f"stranger{cls}", workdir=tmp_path,
               calls=3, concurrency=3, rate=100, local_ip=source)
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert not [e for e in server.lines if f"stranger{cls}-" in str(e.get("sip_call_id"))]
    server.wait_for(lambda e: e.get("event") == "front.refusals"
                    and e.get("refused", {}).get(f"403_{cls}", 0) >= 1, 15, what="front.refusals")
    assert metric(server, "ivr_front_refusals_total", code="403", source=cls) >= before + 3


def test_a_registrar_gone_while_registered_shows_registered_0_and_is_retried(server: IvrServer) -> None:
    """The accepting registrar exited after its two registrations: the next refresh gets no answer."""
    registered_at = max(i for i, e in enumerate(server.lines) if e.get("event") == "trunk.registered")
    server.wait_for(lambda e: e.get("event") == "trunk.unregistered" and e.get("trunk") == "carrier", 40,
                    what="trunk.unregistered")
    again = server.wait_for(lambda e: e.get("event") == "trunk.registration_failed" and e.get("consecutive") == 1
                            and server.lines.index(e) > registered_at, 40, what="a fresh failure count")
    assert again["retry_in_s"] == 4  # the back-off started over after the success
    assert metric(server, "ivr_trunk_registered", trunk="carrier") == 0
