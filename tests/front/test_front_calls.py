"""Real calls through a real Kamailio front to SIPp stand-in workers, on 127.0.0.1 (and .2/.3 as outsiders)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import StartFront
from front_harness import (
    BASE,
    FRONT_PORT,
    HOST,
    REGISTRAR_PORT,
    RETRY_AFTER,
    SCENARIOS,
    run_uac,
    sip_request,
    uac_argv,
    wait_until,
)

pytestmark = pytest.mark.sip


async def test_six_calls_fill_three_workers_and_the_seventh_gets_503(front: StartFront, tmp_path: Path) -> None:
    _, uas = await front()
    held = subprocess.Popen(uac_argv("uac_call.xml", calls=6, hold_ms=4000, rate=100),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        wait_until(lambda: sum(len(w.calls()) for w in uas) == 6, 5.0, "6 calls at the stand-in workers")
        time.sleep(0.3)
        trace = tmp_path / "seventh.msg"
        seventh = run_uac("uac_503.xml", trace=trace)
        assert seventh.returncode == 0, seventh.stdout[-2000:]
        assert f"Retry-After: {RETRY_AFTER}" in trace.read_text()
        out, _ = held.communicate(timeout=20)
        assert held.returncode == 0, out[-2000:]
    finally:
        held.kill()
    assert [len(w.calls()) for w in uas] == [2, 2, 2]
    assert {trunk for w in uas for _, trunk in w.calls()} == {"demo"}  # the forged X-IVR-Trunk was removed
    again = run_uac("uac_call.xml", calls=6, rate=100)  # load was released by the BYEs
    assert again.returncode == 0, again.stdout[-2000:]


async def test_killed_worker_is_skipped_and_used_again_after_restart(front: StartFront) -> None:
    _, uas = await front()
    uas[0].kill()
    started = time.monotonic()
    first = run_uac("uac_call.xml")  # w000 is first in line at zero load: times out, fails over
    failover = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-2000:]
    print(f"failover after a killed worker: {failover:.2f} s")
    assert 1.2 < failover < 4.0, failover
    assert len(uas[1].calls()) == 1
    started = time.monotonic()
    second = run_uac("uac_call.xml")  # w000 is now inactive: straight to w001
    assert second.returncode == 0 and time.monotonic() - started < 1.0, second.stdout[-2000:]
    assert len(uas[1].calls()) == 2
    uas[0].start()
    time.sleep(2.5)  # probe_interval 1 s: the next OPTIONS answered marks it active
    third = run_uac("uac_call.xml")
    assert third.returncode == 0, third.stdout[-2000:]
    assert len(uas[0].calls()) == 1


async def test_a_worker_answering_503_is_failed_over(front: StartFront) -> None:
    _, uas = await front(["uas_reject.xml", "uas.xml", "uas.xml"])
    result = run_uac("uac_call.xml")
    assert result.returncode == 0, result.stdout[-2000:]
    assert [len(w.calls()) for w in uas] == [1, 1, 0]


async def test_invite_from_a_non_trunk_address_gets_silence_and_reaches_no_worker(front: StartFront) -> None:
    _, uas = await front()
    for method in ("INVITE", "OPTIONS", "REGISTER", "MESSAGE"):
        assert sip_request(method, source="127.0.0.2", wait=0.5) is None, method
    assert [w.calls() for w in uas] == [[], [], []]


async def test_invite_from_a_non_trunk_address_gets_403_when_configured(front: StartFront) -> None:
    _, uas = await front(front={"stranger_invite_reply": "403"})
    result = run_uac("uac_403.xml", source="127.0.0.2")
    assert result.returncode == 0, result.stdout[-2000:]
    answer = sip_request("INVITE", source="127.0.0.2")
    assert answer is not None and answer.startswith("SIP/2.0 403 ")
    assert [w.calls() for w in uas] == [[], [], []]


async def test_scanner_user_agent_is_dropped_silently(front: StartFront) -> None:
    _, uas = await front()
    for agent in ("friendly-scanner", "Friendly-Scanner/1.0", "sipvicious 0.3"):
        assert sip_request("INVITE", headers={"User-Agent": agent}, wait=0.7) is None, agent
    assert sip_request("OPTIONS", headers={"User-Agent": "sipcli/v1.8"}, wait=0.5) is None
    assert [w.calls() for w in uas] == [[], [], []]
    options = sip_request("OPTIONS")  # the same source with an honest User-Agent is answered
    assert options is not None and options.startswith("SIP/2.0 200 ")


async def test_max_forwards_zero_gets_483_and_malformed_requests_400(front: StartFront) -> None:
    _, uas = await front()
    answer = sip_request("INVITE", headers={"Max-Forwards": "0"})
    assert answer is not None and answer.startswith("SIP/2.0 483 "), answer
    answer = sip_request("INVITE", headers={"CSeq": "1 OPTIONS"})  # CSeq method differs from the request's
    assert answer is not None and answer.startswith("SIP/2.0 400 "), answer
    assert [w.calls() for w in uas] == [[], [], []]


async def test_refer_from_the_worker_and_notify_back_pass_the_front(front: StartFront) -> None:
    _, uas = await front(["uas_refer.xml"] * 2)
    result = run_uac("uac_refer.xml")
    assert result.returncode == 0, result.stdout[-2000:]
    assert len(uas[0].calls()) == 1


async def test_pike_bans_a_flooding_source(front: StartFront) -> None:
    await front(front={"pike": {"sampling_time": 2, "reqs_density": 5, "remove_latency": 5},
                       "stranger_invite_reply": "403"})
    answers = [sip_request("INVITE", source="127.0.0.3", wait=0.3) for _ in range(15)]
    assert answers[0] is not None and answers[0].startswith("SIP/2.0 403 ")  # a stranger's INVITE: 403 ...
    assert answers[-1] is None and answers[-2] is None  # ... until pike bans it
    assert sip_request("OPTIONS") is not None  # other sources are not affected


async def test_pike_never_bans_a_trunk(front: StartFront) -> None:
    """A trunk carries all its provider's callers from one address: it is exempt from flood bans."""
    await front(front={"pike": {"sampling_time": 2, "reqs_density": 5, "remove_latency": 5}})
    answers = [sip_request("OPTIONS", wait=0.3) for _ in range(15)]  # 127.0.0.1 is the demo trunk
    assert all(answer is not None for answer in answers)


async def test_a_trunk_with_registration_registers_with_the_front_as_contact(front: StartFront,
                                                                            tmp_path: Path) -> None:
    trace = tmp_path / "registrar.msg"
    registrar = subprocess.Popen(
        ["sipp", "-sf", str(SCENARIOS / "registrar.xml"), "-i", HOST, "-p", str(REGISTRAR_PORT), "-mp", str(BASE + 150),
         "-m", "1", "-key", "password", "s3cret", "-key", "reg_expires", "300", "-nostdin", "-timeout", "15s",
         "-timeout_error",
         "-trace_msg", "-message_file", str(trace)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True)
    try:
        carrier = {"name": "carrier", "sources": ["127.0.0.1/32"],
                   "registration": {"registrar": f"sip:127.0.0.1:{REGISTRAR_PORT}", "user": "acme",
                                    "password": "s3cret"}}
        await front(trunks=[carrier])
        out, _ = registrar.communicate(timeout=15)
    finally:
        registrar.kill()
    assert registrar.returncode == 0, out[-2000:]
    text = trace.read_text()
    assert f"Contact: <sip:reg-carrier@127.0.0.1:{FRONT_PORT}>" in text and 'username="acme"' in text
    assert "403 Wrong Password" not in text  # the digest the front computed matched the password
