"""Open-relay attempts through the front, forged and replayed in-dialog requests, REFER from the caller.

"Not relayed" is proved by a listener at the would-be target (a `Sink`, or a SIPp UAS for Refer-To) that
received nothing, not only by the reply.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rawsip import Dialog, Peer, Sink, ack_for, in_dialog, invite, request, sdp, status
from seckit import ATTACKER, FRONT, ROOT, TRUNK, VICTIM, IvrServer, front_addr, worker_addrs

pytestmark = pytest.mark.sip

METHODS = ("INVITE", "MESSAGE", "BYE", "REFER", "OPTIONS", "NOTIFY", "INFO")


@pytest.fixture
def sink() -> Iterator[Sink]:
    target = Sink(VICTIM)
    yield target
    target.close()


@pytest.fixture
def peers() -> Iterator[dict[str, Peer]]:
    made = {"trunk": Peer(TRUNK), "attacker": Peer(ATTACKER)}
    yield made
    for peer in made.values():
        peer.close()


def _refused_or_silent(answer: str | None) -> bool:
    code = status(answer)
    return code is None or 400 <= code < 700


@pytest.mark.parametrize("source", ["trunk", "attacker"])
def test_preloaded_route_and_forged_to_tag_are_never_relayed(guarded: IvrServer, sink: Sink,
                                                              peers: dict[str, Peer], source: str) -> None:
    peer, front = peers[source], front_addr(guarded)
    answers = {}
    routes = (f"<sip:{FRONT}:{front[1]};lr>", f"<sip:{sink.host}:{sink.port};lr>")
    for method, to_tag, route in itertools.product(METHODS, ("", "forged-tag"), routes):
        text = request(peer, method, sink.uri, to_tag=to_tag, routes=(route,), body="hello" if method == "MESSAGE"
                       else "")
        answers[(method, to_tag, route)] = peer.final(text, front, wait=0.4)
    time.sleep(0.5)
    assert sink.received == [], sink.received[:3]
    assert all(_refused_or_silent(a) for a in answers.values()), answers
    if source == "attacker":  # a stranger gets silence: no code, no header to fingerprint
        assert all(a is None for a in answers.values()), answers
    else:  # the trunk is told why: a preloaded Route is 403, a dialog the front never made 481
        assert {status(a) for (m, tag, _), a in answers.items() if not tag and m != "INVITE"} <= {403}
        assert {status(a) for (_, tag, _), a in answers.items() if tag} == {481}


def test_strangers_and_the_trunk_cannot_steer_a_live_dialog(guarded: IvrServer, sink: Sink,
                                                            peers: dict[str, Peer]) -> None:
    trunk, attacker, front = peers["trunk"], peers["attacker"], front_addr(guarded)
    dialog = invite(trunk, front, "500")
    try:
        for method in METHODS:  # the attacker knows Call-ID and both tags, and points the request at the victim
            forged = in_dialog(attacker, dialog, method, ruri=sink.uri)
            assert attacker.final(forged, front, wait=0.4) is None, method
        for method in ("MESSAGE", "INFO", "OPTIONS"):  # the caller itself names the victim: goes to its worker
            answer = trunk.final(in_dialog(trunk, dialog, method, ruri=sink.uri), front)
            assert status(answer) is not None, method
        alive = trunk.final(in_dialog(trunk, dialog, "INFO"), front)  # the call survived the forged BYE
        assert status(alive) is not None and status(alive) != 481, alive
    finally:
        bye = trunk.final(in_dialog(trunk, dialog, "BYE"), front)
        _close(dialog)
    assert status(bye) == 200, bye
    time.sleep(0.5)
    assert sink.received == [], sink.received[:3]


def _close(dialog: Dialog) -> None:
    if dialog.media is not None:
        dialog.media.close()


class ReferTarget:
    """A SIPp UAS on the Refer-To address: every INVITE it gets is logged (none may come)."""

    def __init__(self, workdir: Path) -> None:
        self.sink = Sink(VICTIM)  # reserve a port pair, then hand the UDP port to SIPp
        self.port = self.sink.port
        self.sink.close()
        self.log = workdir / "refer-target.calls"
        self.messages = workdir / "refer-target.msg"
        self.proc = subprocess.Popen(
            ["sipp", "-sf", str(ROOT / "sipp-scenarios" / "front" / "uas.xml"), "-i", VICTIM, "-p", str(self.port),
             "-mi", VICTIM, "-mp", str(self.port + 2), "-key", "log", str(self.log), "-nostdin", "-trace_msg",
             "-message_file", str(self.messages), "-timeout", "60s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        time.sleep(0.5)

    @property
    def uri(self) -> str:
        return f"sip:queue@{VICTIM}:{self.port}"

    def received(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.log, self.messages) if p.exists()]
        return "".join(parts)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def test_refer_from_the_caller_never_makes_anyone_call_its_target(guarded: IvrServer, peers: dict[str, Peer],
                                                                  tmp_path: Path) -> None:
    trunk, attacker, front = peers["trunk"], peers["attacker"], front_addr(guarded)
    target = ReferTarget(tmp_path)
    refused_before = len(guarded.events("sip.call.refer_refused"))
    dialog = invite(trunk, front, "500")
    try:
        refer = {"Refer-To": f"<{target.uri}>", "Referred-By": f"<sip:caller@{TRUNK}>"}
        through_front = trunk.final(in_dialog(trunk, dialog, "REFER", extra=refer), front)
        assert status(through_front) == 603, through_front  # the worker's pjsua refused it (onCallTransferRequest)
        # Straight at the workers (the trunk sees only masked Contacts; try them all): the kernel filter drops
        # anyone but the front ...
        for peer, worker in itertools.product((trunk, attacker), worker_addrs(guarded)):
            direct = in_dialog(peer, dialog, "REFER", ruri=f"sip:w@{worker[0]}:{worker[1]}", extra=refer, routes=())
            assert peer.final(direct, worker, wait=0.6) is None, (peer.host, worker)
        # ... and a REFER that got past the front anyway is refused by the worker holding the call (603).
        front_side = Peer(FRONT)
        try:
            codes = sorted(status(front_side.final(in_dialog(front_side, dialog, "REFER", extra=refer, routes=(),
                                                             ruri=f"sip:w@{w[0]}:{w[1]}"), w)) or 0
                           for w in worker_addrs(guarded))
        finally:
            front_side.close()
        assert codes == [481, 603], codes  # the other worker knows no such dialog
        time.sleep(1.0)
    finally:
        trunk.final(in_dialog(trunk, dialog, "BYE"), front)
        _close(dialog)
        target.stop()
    assert target.received() == "", target.received()[:500]
    guarded.wait_for(lambda e: e.get("event") == "sip.call.refer_refused", 5, "refer_refused")
    assert len(guarded.events("sip.call.refer_refused")) >= refused_before + 2


def test_requests_replayed_after_bye_reach_nobody(guarded: IvrServer, sink: Sink, peers: dict[str, Peer]) -> None:
    trunk, front = peers["trunk"], front_addr(guarded)
    dialog = invite(trunk, front, "500")
    bye = in_dialog(trunk, dialog, "BYE")
    assert status(trunk.final(bye, front)) == 200
    _close(dialog)
    guarded.call_ended(dialog.call_id.split("@")[0])
    ended = len(guarded.events("call.ended"))
    again = trunk.final(bye, front)  # the same bytes: tm answers the retransmission from its cache, or 481
    assert status(again) in (200, 481), again
    replays = [in_dialog(trunk, dialog, "BYE", cseq=dialog.cseq),  # the same BYE in a new transaction
               in_dialog(trunk, dialog, "REFER", extra={"Refer-To": f"<{sink.uri}>"}),
               in_dialog(trunk, dialog, "INVITE"), in_dialog(trunk, dialog, "MESSAGE", ruri=sink.uri)]
    answers = [trunk.final(text, front) for text in replays]
    assert [status(a) for a in answers] == [481] * len(replays), answers
    assert all("Unknown Dialog" in (a or "") for a in answers), answers  # the front's own 481, not a worker's
    time.sleep(0.5)
    assert sink.received == []
    assert len(guarded.events("call.ended")) == ended


def test_an_invite_with_replaces_cannot_take_a_call_over(guarded: IvrServer, peers: dict[str, Peer]) -> None:
    trunk, front = peers["trunk"], front_addr(guarded)
    dialog = invite(trunk, front, "500")
    try:
        # From the worker's side of the dialog its own tag is the to-tag, the caller's the from-tag (RFC 3891).
        replaces = {"Replaces": f"{dialog.call_id};to-tag={dialog.to_tag};from-tag={dialog.from_tag}",
                    "Supported": "replaces"}
        hijack = request(trunk, "INVITE", f"sip:500@{FRONT}:{front[1]}", extra=replaces,
                         body=sdp(TRUNK, 9))
        answer = trunk.final(hijack, front, wait=6.0)
        code = status(answer)
        assert code is not None and code >= 300, answer  # the front sent it to the least loaded worker: 481
        trunk.send(ack_for(trunk, hijack, answer or ""), front)
        front_side = Peer(FRONT)  # straight at each worker, from the one address they let in
        try:
            codes = []
            for worker in worker_addrs(guarded):
                direct = request(front_side, "INVITE", f"sip:500@{worker[0]}:{worker[1]}", extra=replaces,
                                 body=sdp(FRONT, 9))
                reply = front_side.final(direct, worker, wait=6.0)
                codes.append(status(reply) or 0)
                front_side.send(ack_for(front_side, direct, reply or ""), worker)
        finally:
            front_side.close()
        assert sorted(codes) == [481, 603], codes  # the worker holding the call refuses (onCallReplaceRequest)
        alive = trunk.final(in_dialog(trunk, dialog, "INFO"), front)
        assert status(alive) not in (None, 481), alive  # the original call is untouched
    finally:
        trunk.final(in_dialog(trunk, dialog, "BYE"), front)
        _close(dialog)


def test_out_of_dialog_refer_and_message_from_the_trunk_get_405(guarded: IvrServer, sink: Sink,
                                                                 peers: dict[str, Peer]) -> None:
    trunk, front = peers["trunk"], front_addr(guarded)
    for method, extra in (("REFER", {"Refer-To": f"<{sink.uri}>"}), ("MESSAGE", {}),
                          ("SUBSCRIBE", {"Event": "refer"}), ("REGISTER", {})):
        answer = trunk.final(request(trunk, method, f"sip:500@{FRONT}:{front[1]}", extra=extra,
                                     body="hi" if method == "MESSAGE" else ""), front)
        assert status(answer) == 405, (method, answer)
    time.sleep(0.5)
    assert sink.received == []
