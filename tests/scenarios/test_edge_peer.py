"""A generated caller scenario against a SIPp UAS that plays the IVR's awkward moments on purpose: an
in-dialog OPTIONS and a re-INVITE before the REFER, and the BYE overtaking the 200 to the final NOTIFY.
The real server does these only sometimes (the front reorders; pjsip may refresh the session), so a scripted
SIP peer forces them here; real SIPp both sides, loopback only."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from ivr.config.load import load_config
from ivr.scenarios import command
from ivr.scenarios.model import CallPath
from ivr.scenarios.verdict import judge, parse

pytestmark = pytest.mark.sip
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_generated_caller_tolerates_options_reinvite_and_a_bye_before_the_notify_answer(tmp_path: Path) -> None:
    assert shutil.which("sipp"), "sipp is not installed: scripts/bootstrap installs Debian's sip-tester"
    data = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    data["prompts_dir"] = str(ROOT / "prompts")
    data["demo_crm"]["customers"] = str(ROOT / "config" / "customers.yaml")
    (tmp_path / "ivr.yaml").write_text(yaml.safe_dump(data))
    loaded = load_config(tmp_path / "ivr.yaml")
    at = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC).timestamp()
    gold = next(p for p in command.generate(loaded, ["vip_routing"], at) if p.name == "vip_routing.gold")
    command.write([gold], tmp_path, loaded, 10_000)
    port = _free_udp()
    headers = dict(gold.transfers[0].headers)
    uas = subprocess.Popen(["sipp", "-sf", str(HERE / "edge_ivr_uas.xml"), "-i", "127.0.0.1", "-p", str(port),
                            "-set", "refer_to", gold.transfers[0].uri, "-set", "cid", headers["X-Customer-Id"],
                            "-set", "tier", headers["X-Customer-Tier"],
                            "-mi", "127.0.0.1", "-mp", str(_free_udp()), "-m", "1", "-nostdin", "-timeout", "40s",
                            "-timeout_error", "-trace_err", "-error_file", str(tmp_path / "uas.err")],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        caller = subprocess.run(
            ["sipp", f"127.0.0.1:{port}", "-sf", "vip_routing.gold.info.xml", "-inf", "vip_routing.gold.csv",
             "-i", "127.0.0.1", "-p", str(_free_udp()), "-mi", "127.0.0.1", "-mp", str(_free_udp()), "-m", "1",
             "-nostdin", "-timeout", "40s", "-timeout_error", "-trace_logs", "-log_file", str(tmp_path / "c.log"),
             "-trace_err", "-error_file", str(tmp_path / "c.err")],
            cwd=tmp_path, capture_output=True, text=True, timeout=70)
        uas_out, _ = uas.communicate(timeout=60)
    finally:
        if uas.poll() is None:
            uas.kill()
    errors = (tmp_path / "c.err").read_text() if (tmp_path / "c.err").exists() else ""
    assert caller.returncode == 0, caller.stdout[-2000:] + errors
    assert uas.returncode == 0, uas_out[-2000:]
    log = (tmp_path / "c.log").read_text()
    assert " reinvite " in log
    (call,) = parse(log).values()
    assert judge(gold, call, "info") == []


class _Peer:
    """A scripted IVR on one UDP socket: answers the INVITE, takes the caller's INFOs and, at the last one,
    sends its next request (REFER or BYE) BEFORE the INFO's 200, in two back-to-back datagrams. Then it plays
    each expected REFER (the caller answers it as the path says) and ends with a BYE sent before the 200 to
    the caller's final NOTIFY."""

    def __init__(self, path: CallPath, hang_up: bool = False) -> None:
        self.path = path
        self.hang_up = hang_up  # a BYE instead of the path's REFER: the caller must fail
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(30)
        self.port = int(self.sock.getsockname()[1])
        self.cseq = 100
        self.seen: list[str] = []
        self.caller: tuple[str, int] = ("127.0.0.1", 0)
        self.dialog: dict[str, str] = {}
        self.vias: dict[str, list[str]] = {}
        """The Via lines of each request we sent, by CSeq: its answer must carry every one, in order."""

    def _recv(self) -> tuple[str, dict[str, str], str]:
        while True:
            data, self.caller = self.sock.recvfrom(65535)
            text = data.decode()
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")
            headers: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), value.strip())
            key = head[0] + headers.get("cseq", "")
            if key in self.seen:  # a retransmission: we answered it already (or it needs no answer)
                continue
            self.seen.append(key)
            return head[0], headers, text

    def _answer(self, headers: dict[str, str], code: str, extra: str = "", body: str = "") -> bytes:
        lines = [f"SIP/2.0 {code}", f"Via: {headers['via']}", f"From: {headers['from']}",
                 f"To: {headers['to']}" + ("" if "tag=" in headers["to"] else ";tag=peer1"),
                 f"Call-ID: {headers['call-id']}", f"CSeq: {headers['cseq']}",
                 f"Contact: <sip:ivr@127.0.0.1:{self.port}>", *filter(None, [extra]),
                 f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _request(self, method: str, extra: str = "") -> bytes:
        self.cseq += 1
        # two Vias, as a request the front relays from a worker has (the front's, then the worker's)
        vias = [f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-peer-{self.cseq}",
                f"Via: SIP/2.0/UDP 127.0.0.1:5101;rport=5101;branch=z9hG4bKPj-worker-{self.cseq}"]
        self.vias[f"{self.cseq} {method}"] = vias
        lines = [f"{method} {self.dialog['target']} SIP/2.0", *vias,
                 f"From: {self.dialog['local']}", f"To: {self.dialog['remote']}",
                 f"Call-ID: {self.dialog['call_id']}", f"CSeq: {self.cseq} {method}",
                 f"Contact: <sip:ivr@127.0.0.1:{self.port}>", "Max-Forwards: 70", *filter(None, [extra]),
                 "Content-Length: 0"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _refer(self, k: int) -> bytes:
        transfer = self.path.transfers[k]
        extra = "\r\n".join([f"Refer-To: <{transfer.uri}>", *(f"{n}: {v}" for n, v in transfer.headers)])
        return self._request("REFER", extra)

    def _expect(self, want: str, method: str = "") -> dict[str, str]:
        """The next message starts with `want`; a response must answer our request `method` (its CSeq)."""
        first, headers, text = self._recv()
        assert first.startswith(want), (want, first)
        assert not method or headers.get("cseq", "").endswith(f" {method}"), (want, method, headers.get("cseq"))
        if method:  # an answer with only the first Via would reach the worker behind a front with none
            vias = [ln for ln in text.split("\r\n\r\n", 1)[0].split("\r\n") if ln.lower().startswith("via:")]
            assert vias == self.vias[headers["cseq"]], (want, vias, self.vias[headers["cseq"]])
        return headers

    def run(self) -> None:
        headers = self._expect("INVITE ")
        sdp = (f"v=0\r\no=ivr 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {_free_udp()} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
        ok = self._answer(headers, "200 OK", "Content-Type: application/sdp", sdp)
        self.dialog = {"target": headers["contact"].strip("<>").split(">")[0], "remote": headers["from"],
                       "local": ok.decode().split("\r\nTo: ", 1)[1].split("\r\n", 1)[0],
                       "call_id": headers["call-id"]}
        self.sock.sendto(ok, self.caller)
        self._expect("ACK ")
        transfers = [] if self.hang_up else list(range(len(self.path.transfers)))
        for i in range(len(self.path.presses)):
            info = self._expect("INFO ")
            if i < len(self.path.presses) - 1:
                self.sock.sendto(self._answer(info, "200 OK"), self.caller)
                continue
            # the crossing: our next request first, the INFO's 200 right behind it
            self.sock.sendto(self._refer(transfers[0]) if transfers else self._request("BYE"), self.caller)
            self.sock.sendto(self._answer(info, "200 OK"), self.caller)
        if not transfers:
            self._expect("SIP/2.0 200", "BYE")
            return
        for k in transfers:
            if k > 0:
                self.sock.sendto(self._refer(k), self.caller)
            answer = self.path.transfers[k].answer
            self._expect(f"SIP/2.0 {202 if answer == 200 else answer} ", "REFER")
            if answer == 200:
                break
        else:  # every REFER refused: the IVR hangs up
            self.sock.sendto(self._request("BYE"), self.caller)
            self._expect("SIP/2.0 200", "BYE")
            return
        self.sock.sendto(self._answer(self._expect("NOTIFY "), "200 OK"), self.caller)
        final = self._expect("NOTIFY ")
        self.sock.sendto(self._request("BYE"), self.caller)  # the BYE overtakes the final NOTIFY's 200
        self.sock.sendto(self._answer(final, "200 OK"), self.caller)
        self._expect("SIP/2.0 200", "BYE")


def _call_peer(peer: _Peer, name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    problems: list[BaseException] = []

    def play() -> None:
        try:
            peer.run()
        except BaseException as exc:  # reported by the test thread
            problems.append(exc)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    try:
        caller = subprocess.run(
            ["sipp", f"127.0.0.1:{peer.port}", "-sf", f"{name}.info.xml", "-inf", f"{name}.csv",
             "-i", "127.0.0.1", "-p", str(_free_udp()), "-mi", "127.0.0.1", "-mp", str(_free_udp()), "-m", "1",
             "-nostdin", "-timeout", "60s", "-timeout_error", "-trace_logs", "-log_file", str(tmp_path / "c.log"),
             "-trace_err", "-error_file", str(tmp_path / "c.err")],
            cwd=tmp_path, capture_output=True, text=True, timeout=90)
        thread.join(timeout=10)
    finally:
        peer.sock.close()
    errors = (tmp_path / "c.err").read_text() if (tmp_path / "c.err").exists() else ""
    assert not problems, (problems, caller.stdout[-2000:] + errors)
    return caller, errors


def _written(name: str, tmp_path: Path) -> CallPath:
    data = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    data["prompts_dir"] = str(ROOT / "prompts")
    data["demo_crm"]["customers"] = str(ROOT / "config" / "customers.yaml")
    (tmp_path / "ivr.yaml").write_text(yaml.safe_dump(data))
    loaded = load_config(tmp_path / "ivr.yaml")
    at = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC).timestamp()
    path = next(p for p in command.generate(loaded, [name.split(".")[0]], at) if p.name == name)
    assert path.presses
    command.write([path], tmp_path, loaded, 10_000)
    return path


@pytest.mark.parametrize("name", ["support.open.press_2", "support.open.press_2.refused_support",
                                  "support.open.press_0.refused_default", "support.open.invalid"])
def test_generated_caller_takes_a_request_that_overtakes_the_info_answer(name: str, tmp_path: Path) -> None:
    """The IVR's REFER (accepted, or refused then another accepted) or its BYE arrives before the 200 to the
    caller's last INFO, and the BYE before the 200 to the final NOTIFY: the caller takes each, answers it
    (the peer checks the answer's CSeq) and passes (SIPp used to abort the call on the late 200)."""
    assert shutil.which("sipp"), "sipp is not installed: scripts/bootstrap installs Debian's sip-tester"
    path = _written(name, tmp_path)
    caller, errors = _call_peer(_Peer(path), name, tmp_path)
    assert caller.returncode == 0, caller.stdout[-2000:] + errors
    (call,) = parse((tmp_path / "c.log").read_text()).values()
    assert judge(path, call, "info") == []


def test_a_bye_that_overtakes_the_info_answer_still_fails_a_path_that_expects_a_refer(tmp_path: Path) -> None:
    assert shutil.which("sipp"), "sipp is not installed: scripts/bootstrap installs Debian's sip-tester"
    path = _written("support.open.press_2", tmp_path)
    _, errors = _call_peer(_Peer(path, hang_up=True), path.name, tmp_path)
    assert "unexpected message" not in errors  # the caller took the BYE and the late 200; `ivr qa` fails it
    (call,) = parse((tmp_path / "c.log").read_text()).values()
    problems = judge(path, call, "info")
    assert "BYE before the expected REFER" in problems and any("bye_before_refer" in p for p in problems)
