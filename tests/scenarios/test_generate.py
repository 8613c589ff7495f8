"""`ivr scenarios`: the paths come from the flow engine, the files are what SIPp accepts."""

from __future__ import annotations

import datetime as dt
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr.config.load import LoadedConfig, load_config
from ivr.scenarios import command, pcap
from ivr.scenarios.model import CallPath
from ivr.scenarios.verdict import judge, parse

ROOT = Path(__file__).resolve().parents[2]
OPEN = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC).timestamp()  # a Tuesday, office open in London
CLOSED = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC).timestamp()


def _config(tmp_path: Path, change: Any = None) -> LoadedConfig:
    data = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    data["prompts_dir"] = str(ROOT / "prompts")
    data["demo_crm"]["customers"] = str(ROOT / "config" / "customers.yaml")
    if change is not None:
        change(data)
    path = tmp_path / "ivr.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


@pytest.fixture(scope="module")
def open_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CallPath]:
    loaded = _config(tmp_path_factory.mktemp("cfg"))
    return {p.name: p for p in command.generate(loaded, None, OPEN)}


def _uris(path: CallPath) -> list[tuple[str, int]]:
    return [(t.uri, t.answer) for t in path.transfers]


def test_every_input_class_of_vip_routing_is_a_path(open_paths: dict[str, CallPath]) -> None:
    gold = "sip:gold@127.0.0.1:5070"
    default = "sip:default@127.0.0.1:5070"
    platinum = "sip:platinum@127.0.0.1:5070"
    expected = {
        "vip_routing.gold": [(gold, 200)],
        "vip_routing.platinum_managed": [(platinum, 200)],
        "vip_routing.silver": [(default, 200)],
        "vip_routing.unknown.account_gold": [(gold, 200)],
        "vip_routing.unknown.account_platinum_managed": [(platinum, 200)],
        "vip_routing.unknown.zero": [(default, 200)],
        "vip_routing.unknown.not_found": [(default, 200)],
        "vip_routing.unknown.invalid": [(default, 200)],
        "vip_routing.unknown.no_input": [(default, 200)],
        "vip_routing.unknown.crm_slow": [(default, 200)],
        "vip_routing.unknown.crm_down": [(default, 200)],
        "vip_routing.gold.refused_gold": [(gold, 603), (default, 200)],
        "vip_routing.silver.refused_default": [(default, 603)],
    }
    for name, transfers in expected.items():
        assert _uris(open_paths[name]) == transfers, name
    assert open_paths["vip_routing.silver.refused_default"].end_reason == "no_queue_available"
    assert open_paths["vip_routing.unknown.account_platinum_managed"].digits == "200001#"
    assert open_paths["vip_routing.unknown.zero"].digits == "0#"
    assert open_paths["vip_routing.gold"].digits == ""
    assert dict(open_paths["vip_routing.gold"].transfers[0].headers) == {"X-Customer-Id": "C-1002",
                                                                          "X-Customer-Tier": "gold"}
    # a gold customer with an account manager goes wherever the engine sends them (the manager's queue)
    managed = open_paths["vip_routing.gold_managed"].transfers[0]
    assert managed.uri != gold and managed.answer == 200
    # the slow CRM is heard: the filler prompt plays before the default queue
    assert "one_moment" in open_paths["vip_routing.unknown.crm_slow"].prompts
    assert open_paths["vip_routing.unknown.crm_slow"].fresh_caller


def test_support_menu_paths_follow_the_clock(open_paths: dict[str, CallPath], tmp_path: Path) -> None:
    assert _uris(open_paths["support.open.press_1"]) == [("sip:sales@127.0.0.1:5070", 200)]
    assert _uris(open_paths["support.open.press_2"]) == [("sip:support@127.0.0.1:5070", 200)]
    assert _uris(open_paths["support.open.press_0"]) == [("sip:default@127.0.0.1:5070", 200)]
    assert open_paths["support.open.invalid"].end == "hangup"
    assert open_paths["support.open.press_1"].reachable_now
    later = open_paths["support.closed.press_1"]  # after hours: the closed message, then "1" leaves a voicemail
    assert (later.end_reason, later.reachable_now) == ("voicemail", False)
    closed = {p.name: p for p in command.generate(_config(tmp_path), ["support"], CLOSED)}
    assert closed["support.closed.press_1"].end_reason == "voicemail" and closed["support.closed.press_1"].reachable_now
    assert not closed["support.open.press_2"].reachable_now


def test_path_names_carry_the_hours_branch_and_are_the_same_at_any_time(open_paths: dict[str, CallPath],
                                                                        tmp_path: Path) -> None:
    support = {n for n in open_paths if n.startswith("support.")}
    assert support and all(n.split(".")[1] in ("open", "closed") for n in support), support
    assert not [n for n in open_paths if n.endswith(".later") or re.search(r"-\d+$", n)]
    closed = {p.name for p in command.generate(_config(tmp_path), ["support"], CLOSED)}
    assert closed == support  # a path keeps its name whether the office is open or closed now
    assert "support.open.press_1.refused_sales" in closed


def test_expectations_come_from_the_config(tmp_path: Path) -> None:
    def moved(data: dict[str, Any]) -> None:
        data["queues"]["platinum"]["uri"] = "sip:vip-desk@127.0.0.1:5071"

    paths = {p.name: p for p in command.generate(_config(tmp_path, moved), ["vip_routing"], OPEN)}
    assert _uris(paths["vip_routing.platinum_managed"]) == [("sip:vip-desk@127.0.0.1:5071", 200)]


def test_unknown_flow_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no flow named"):
        command.generate(_config(tmp_path), ["nope"], OPEN)


def test_written_scenarios_are_valid_sipp_xml(open_paths: dict[str, CallPath], tmp_path: Path) -> None:
    loaded = _config(tmp_path)
    command.write(list(open_paths.values()), tmp_path / "out", loaded, 10_000)
    files = sorted((tmp_path / "out").glob("*.xml"))
    assert len(files) > len(open_paths)  # INFO for every path, RFC 4733 for those with digits
    for file in files:
        text = file.read_text(encoding="ISO-8859-1")
        assert file.stat().st_size <= 65536, file.name  # SIPp 3.6.1 xp_parser: XP_MAX_FILE_LEN
        root = ET.fromstring(text.split("\n", 2)[2])  # past the XML declaration and DOCTYPE
        labels = {e.get("id") for e in root.iter("label")}
        targets = {e.get(a) for e in root for a in ("next", "ontimeout") if e.get(a)}
        assert targets <= labels, (file.name, targets - labels)
        assert not list(root.iter("pause")), file.name
        # SIPp refuses a variable that is assigned but never read (or read but never assigned)
        for name in set(re.findall(r'assign_to="([^"]+)"', text)):
            for var in name.split(","):
                assert len(re.findall(rf"\b{var}\b", text)) >= 2, (file.name, var)
        for recv in root.iter("recv"):
            assert recv.get("request") not in ("INFO", "NOTIFY"), file.name  # the IVR never sends these
        for send in root.iter("send"):
            body = send.text or ""
            if re.match(r"\s*(INFO|NOTIFY|ACK|BYE) ", body):
                assert "[routes]" in body, file.name
    manifest = (tmp_path / "out" / command.MANIFEST).read_text()
    back, _ = command.read_manifest(tmp_path / "out")
    assert {p.name for p in back} == set(open_paths) and "vip_routing.gold.info.xml" in manifest


def test_pcap_carries_the_digits_in_order_at_their_times() -> None:
    data = pcap.pcap_bytes([("1", 1000), ("1", 1500), ("#", 2000)])
    events, offset = [], 24
    while offset < len(data):
        _, usec, length, _ = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16: offset + 16 + length]
        offset += 16 + length
        rtp = frame[14 + 20 + 8:]
        if rtp[1] & 0x7F == pcap.PT_EVENT and rtp[1] & 0x80:  # marker: a new event
            events.append((rtp[12], struct.unpack("!I", rtp[4:8])[0]))
    assert [e for e, _ in events] == [1, 1, 11]
    assert events[0][1] < events[1][1] < events[2][1]  # distinct timestamps: "11" is two presses


def test_verdict_reads_the_scenario_log(open_paths: dict[str, CallPath]) -> None:
    path = open_paths["vip_routing.unknown.account_platinum_managed"]
    log = "\n".join([
        "QA c1 start caller=+19990000000 tick=1",
        "QA c1 answered tick=100",
        "QA c1 refer k=1 uri=sip:platinum@127.0.0.1:5070 tick=9600 sent=200001# "
        "h.X-Customer-Id= C-2001 h.X-Customer-Tier= platinum",
        "QA c1 bye tick=9610",
        "QA c2 answered tick=100",
        "QA c2 refer k=1 uri=sip:default@127.0.0.1:5070 tick=3000 sent=20 h.X-Customer-Id= h.X-Customer-Tier=",
        "QA c2 bye tick=3010"])
    calls = parse(log + "\nQA c3 refer k=1 uri=sip:m@h:5070?X-Customer-Id=C-1&X-Customer-Tier=gold tick=5 "
                  "sent= h.X-A= v")
    assert calls["c3"].refers[0].uri == "sip:m@h:5070?X-Customer-Id=C-1&X-Customer-Tier=gold"
    assert calls["c3"].refers[0].headers == (("X-A", "v"),)
    assert judge(path, calls["c1"], "info") == []
    assert calls["c1"].refer_ms() == 9500
    problems = judge(path, calls["c2"], "info")
    assert any("Refer-To" in p for p in problems) and any("digits '20'" in p for p in problems)
