"""Real calls with SIPp against the real server (single worker on the public address): menus by RFC 4733
and SIP INFO, repeated digits, invalid and no input, refused transfers, hang-ups, non-trunk callers,
more calls than a worker holds. Each test asserts SIPp's exit status and the call's canonical log line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import QUEUE_HOST
from ivrkit import IvrServer
from recordkit import hung_up, transferred
from sippkit import SCENARIOS, SippRun, sipp

pytestmark = pytest.mark.sip

CALLER = "+15553000006"  # a regular customer: the menu flows do not look callers up anyway


def call(server: IvrServer, scenario: str, workdir: Path, tag: str, *, service: str, **variables: str) -> SippRun:
    variables.setdefault("caller", CALLER)
    run = sipp(server.sip_port, scenario, service=service, tag=tag, workdir=workdir, variables=variables)
    assert isinstance(run, SippRun)
    return run


def test_menu_choice_by_rfc4733_refers_to_the_support_queue(server: IvrServer, workdir: Path) -> None:
    run = sipp(server.sip_port, "dtmf_rfc4733_refer.xml", service="300", tag="rfc4733", workdir=workdir,
               variables={"caller": CALLER, "expected_refer": f"sip:support@{QUEUE_HOST}"},
               keys={"dtmf_pcap": str(SCENARIOS / "pcap" / "dtmf_2.pcap")})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    line = server.call_ended("rfc4733-")
    assert line["outcome"] == transferred("support", f"sip:support@{QUEUE_HOST}")
    assert "".join(i["digits"] for i in line["inputs"]) == "2"
    assert line["path"][0] == "main_menu:2"


def test_menu_choice_by_sip_info_refers_to_the_sales_queue(server: IvrServer, workdir: Path) -> None:
    run = call(server, "dtmf_info_refer.xml", workdir, "info", service="300", digits="1",
               expected_refer=f"sip:sales@{QUEUE_HOST}")
    assert run.returncode == 0, run.describe()
    line = server.call_ended("info-")
    assert line["outcome"]["queue"] == "sales"
    assert line["variables"]["choice"] == "1"


def test_repeated_digits_by_rfc4733_are_each_counted(server: IvrServer, workdir: Path) -> None:
    expected = f"sip:digits@{QUEUE_HOST};entered=112"
    run = sipp(server.sip_port, "dtmf_rfc4733_refer.xml", service="400", tag="repeat", workdir=workdir,
               variables={"caller": CALLER, "expected_refer": expected},
               keys={"dtmf_pcap": str(SCENARIOS / "pcap" / "dtmf_112hash.pcap")})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    line = server.call_ended("repeat-")
    assert "".join(i["digits"] for i in line["inputs"]) == "112#"
    assert line["variables"]["entered"] == "112"
    assert line["outcome"]["uri"] == expected


def test_invalid_input_exhausts_the_menu_and_hangs_up(server: IvrServer, workdir: Path) -> None:
    run = call(server, "invalid_input.xml", workdir, "invalid", service="300", digits="999")
    assert run.returncode == 0, run.describe()
    line = server.call_ended("invalid-", timeout=90)
    assert line["outcome"] == hung_up("menu_exhausted")
    menu = [p for p in line["path"] if p.startswith("main_menu")]
    assert menu == ["main_menu:invalid"] * 3 + ["main_menu:exhausted"]
    assert "".join(i["digits"] for i in line["inputs"]) == "999"


def test_no_input_exhausts_the_menu_and_hangs_up(server: IvrServer, workdir: Path) -> None:
    run = call(server, "no_input.xml", workdir, "silent", service="301")  # the menu, with a short prompt
    assert run.returncode == 0, run.describe()
    line = server.call_ended("silent-", timeout=90)
    assert line["outcome"] == hung_up("menu_exhausted")
    menu = [p for p in line["path"] if p.startswith("main_menu")]
    assert menu == ["main_menu:no_input"] * 3 + ["main_menu:exhausted"]


@pytest.mark.parametrize("status", ["405", "603"])
def test_rejected_refer_falls_back_to_the_default_queue(server: IvrServer, workdir: Path, status: str) -> None:
    tag = f"reject{status}"
    run = call(server, "refer_reject.xml", workdir, tag, service="300", digits="1", refer_status=status,
               expected_refer=f"sip:sales@{QUEUE_HOST}")
    assert run.returncode == 0, run.describe()
    line = server.call_ended(f"{tag}-")
    first = line["transfers"][0]
    assert (first["queue"], first["result"], first["code"]) == ("sales", f"rejected_{status}", int(status))
    assert line["transfers"][1]["queue"] == "default"
    assert line["end_reason"] is not None


def test_notify_486_falls_back_to_the_default_queue(server: IvrServer, workdir: Path) -> None:
    run = call(server, "notify_fail.xml", workdir, "notify486", service="300", digits="2",
               expected_refer=f"sip:support@{QUEUE_HOST}")
    assert run.returncode == 0, run.describe()
    line = server.call_ended("notify486-")
    first = line["transfers"][0]
    assert (first["queue"], first["code"]) == ("support", 486)
    assert line["transfers"][1]["queue"] == "default"


def test_no_notify_at_all_times_out_to_the_fallback(server: IvrServer, workdir: Path) -> None:
    run = call(server, "no_notify.xml", workdir, "nonotify", service="300", digits="1",
               expected_refer=f"sip:sales@{QUEUE_HOST}")
    assert run.returncode == 0, run.describe()
    line = server.call_ended("nonotify-")
    assert line["transfers"][0]["result"] == "no_notify"
    assert line["transfers"][1]["queue"] == "default"


def test_caller_hangs_up_during_a_prompt(server: IvrServer, workdir: Path) -> None:
    run = call(server, "hangup_during_prompt.xml", workdir, "hangup", service="100")
    assert run.returncode == 0, run.describe()
    line = server.call_ended("hangup-")
    assert line["end_reason"] == "caller_hangup"
    # the slot is free again: a normal call right after is answered and transferred
    run = call(server, "dtmf_info_refer.xml", workdir, "after-hangup", service="300", digits="2",
               expected_refer=f"sip:support@{QUEUE_HOST}")
    assert run.returncode == 0, run.describe()


def test_invite_from_an_address_that_is_no_trunk_gets_403(server: IvrServer, workdir: Path) -> None:
    run = sipp(server.sip_port, "front/uac_403.xml", service="100", tag="stranger", workdir=workdir,
               local_ip="127.0.0.2")
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    rejected = server.wait_for(lambda e: e.get("event") == "call.rejected" and "stranger-" in str(e.get("sip_call_id")))
    assert (rejected["code"], rejected["trunk"]) == (403, None)
    assert rejected["source"].startswith("127.0.0.2:")


def test_five_calls_at_once_on_a_four_call_worker(server: IvrServer, workdir: Path) -> None:
    """pjsip itself answers the fifth INVITE with 486 Busy Here before Python sees it (the wheel's
    PJSUA_MAX_CALLS is 4): the caller gets an immediate final answer, never silence. Behind the front,
    Kamailio fails such a call over to another worker or answers 503 + Retry-After (tests/e2e/test_front.py)."""
    run = sipp(server.sip_port, "long_hold.xml", service="500", tag="five", workdir=workdir, calls=5,
               concurrency=5, rate=50, duration_ms=6000, variables={"caller": CALLER})
    assert isinstance(run, SippRun)
    assert run.returncode == 0, run.describe()
    assert run.log.count("answered") == 4, run.log
    assert run.log.count("rejected 486") == 1, run.log
