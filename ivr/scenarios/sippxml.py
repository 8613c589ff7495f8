"""Renders one SIPp caller scenario for a `CallPath`.

The caller sends its digits at the times the engine asked for them (SIP INFO, or one RFC 4733 pcap played
from the ACK), answers each REFER the way the path says (202 + NOTIFY 100 + NOTIFY 200, or a refusal) and
ends with the IVR's BYE. Nothing waits in a `<pause>`: every wait is a `<recv>` with a timeout, preceded
by optional receives, so a REFER, a BYE or a re-INVITE is taken whenever it comes; the 200 to the last
NOTIFY and the BYE are accepted in either order; in-dialog requests carry `[routes]` (Record-Route). A REFER
or BYE that overtakes the 200 to our last INFO or NOTIFY is answered after that 200 (`_Doc.answer_first`),
from the headers kept at its `<recv>`.
Every observation is a `QA ...` line of the `-trace_logs` file, read back by `ivr qa` (ivr/scenarios/verdict.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from ivr.scenarios.model import CallPath, DtmfMethod, ExpectedTransfer

FIRST_DIGIT_MARGIN_MS = 400
"""Sent this much later than the engine's press: the real prompt starts a little after the ACK."""
REASONS = {403: "Forbidden", 405: "Method Not Allowed", 480: "Temporarily Unavailable", 486: "Busy Here",
           487: "Request Terminated", 503: "Service Unavailable", 603: "Declined"}
REJECTIONS = (403, 404, 480, 486, 503)

_DIALOG = """      From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]"""
_SDP = """v=0
      o=sipp 53655765 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=ptime:20
"""


def _cdata(text: str) -> str:
    return f"    <![CDATA[\n\n{text}\n    ]]>"


@dataclass
class _Doc:
    """The scenario's main line plus handler blocks placed after it (reached only by `next=`)."""

    path: CallPath
    caller: str
    slack_ms: int
    main: list[str] = field(default_factory=list)
    handlers: list[str] = field(default_factory=list)
    unanswered: bool = False
    """Our last request (an INFO, the final NOTIFY) was just sent: the next wait may take a request before
    that request's 200."""
    answers_first: set[str] = field(default_factory=set)

    def request(self, method: str, extra: str = "", body: str = "", cseq: str = "[cseq]") -> str:
        head = f"""      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      [routes]
{_DIALOG.format(caller=self.caller)}
      CSeq: {cseq} {method}
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{extra}      Content-Length: [len]

      {body}"""
        retrans = "" if method == "ACK" else ' retrans="500"'
        return f"  <send{retrans}>\n{_cdata(head)}\n  </send>"

    def wait(self, label: str, anchor: str, timing: str, late_ok: bool = True, bye: str | None = "bye_early",
             extra: tuple[str, ...] = (), late: str = "true", then: str | None = None) -> None:
        """A wait point: optional OPTIONS, late 200s, re-INVITEs, BYEs, then the anchor `<recv>`. SIPp times
        a wait by its first `<recv>`, so `timing` (timeout=, ontimeout=) goes there. `then` names the label the
        anchor falls through to when it has no `next`.

        Right after an INFO or the final NOTIFY the wait comes twice: first a copy where every request (and the
        timeout) leads through `answer_first` (the 200 to our request is taken first), then the wait proper
        under `label`, where that 200 (or any handled request) returns."""
        if self.unanswered:
            self.unanswered = False
            self.main.append(f"  <!-- {label}: our last request may still be unanswered -->")
            self.main.extend(self._group(label, anchor, timing, True, bye, extra, late, then, self.answer_first))
        self.main.append(f'  <label id="{label}"/>')
        self.main.extend(self._group(label, anchor, timing, late_ok, bye, extra, late, None, None))
        self.handlers.append(_options(label))
        self.handlers.append(_reinvite(label))

    def _group(self, label: str, anchor: str, timing: str, late_ok: bool, bye: str | None,
               extra: tuple[str, ...], late: str, then: str | None, via: Callable[[str], str] | None) -> list[str]:
        def route(element: str, jumps: tuple[str, ...] = ("next", "ontimeout")) -> str:
            element = _keeping_request(element)
            if via is None:
                return element
            if then is not None and not _JUMP.search(element):  # an anchor that falls through: jump instead
                return element.replace("<recv ", f'<recv next="{via(then)}" ', 1)
            return _JUMP.sub(lambda m: f'{m[1]}="{via(m[2]) if m[1] in jumps else m[2]}"', element)

        # an OPTIONS or re-INVITE goes straight to its handler (answered from [last_*]; see _KEPT_FOR)
        lines = [route(f'  <recv request="OPTIONS" optional="true" {timing} next="options_{label}"/>', ("ontimeout",)),
                 *(route(e) for e in extra)]
        if late_ok:  # (not routed: this is the answer that `answer_first` waits for)
            lines.append(f'  <recv response="200" optional="{late}" next="{label}"/>')
            lines.append(f'  <recv response="481" optional="{late}" next="{label}"/>')
        lines.append(f'  <recv request="INVITE" optional="true" next="reinvite_{label}"/>')
        if bye is not None:
            lines.append(route(f'  <recv request="BYE" optional="true" next="{bye}"/>'))
        lines.append(route(anchor))
        return lines

    def answer_first(self, target: str) -> str:
        """A `<recv>` of the 200 (or 481) to our last request (INFO, NOTIFY), then on to `target`; returns its
        label.

        SIPp 3.6.1 sends nothing while a `<send retrans>` awaits its final answer (the request's retransmission
        timer holds every later `<send>`), and a response that arrives while the call sits on a `<send>` or
        a `<nop>` matches no `<recv>` there: the call is aborted as unexpected (call.cpp process_incoming
        looks forward from the current element, and back only across optional receives). A request that
        overtakes that 200 therefore jumps straight here, so the call is on this `<recv>` when the 200
        comes; an unexpected REFER or BYE still ends at its failing handler after it."""
        name = f"answer_first_{target}"
        if name not in self.answers_first:
            self.answers_first.add(name)
            self.handlers.append("\n".join([
                f'  <label id="{name}"/>',
                f'  <recv response="481" optional="true" next="{target}"/>',
                f'  <recv response="200" next="{target}"/>']))
        return name


_JUMP = re.compile(r'\b(next|ontimeout)="([^"]+)"')


_KEPT = (("From", "qf"), ("To", "qt"), ("CSeq", "qc"))
_VIAS = "[[:cntrl:]](Via:[^[:cntrl:]]*([[:cntrl:]]+Via:[^[:cntrl:]]*)*)"
"""Every Via line of the request, as written ("Via: a" CRLF "Via: b"), in `qv`. Not `search_in="hdr"`: that
takes one occurrence of a header, and a request the front relays has two Vias (the front's and the worker's).
An answer carrying only the front's reaches the worker with none: pjsip drops it (PJSIP_EMISSINGHDR) and
retransmits its REFER or BYE until the front's dialog is gone (481) or Timer F (32 s), and pjsua's call slot
stays taken meanwhile, after the call has ended for the controller (INVITEs then met 486 on every worker and
the front answered 503)."""
_KEEP = (f'<ereg regexp="{_VIAS}" search_in="msg" assign_to="whole,qv,qvn"/>'
         + "".join(f'<ereg regexp="[^[:cntrl:]]*" search_in="hdr" header="{name}:" assign_to="{var}"/>'
                   for name, var in _KEPT))
_KEPT_FOR = ("REFER", "BYE")
"""The requests that may overtake the 200 to our INFO / NOTIFY (an OPTIONS or re-INVITE that does is not
handled: rare, and a scenario file must stay under SIPp's 64 KiB)."""


def _keeping_request(element: str) -> str:
    """A REFER's or BYE's `<recv>` that keeps the headers its answer copies (`response(kept=True)`). Not
    `[last_Via:]` and the like: those name the last message received, which is the 200 to our own request
    when `answer_first` took that 200 between the request and its answer."""
    if not any(f' request="{m}"' in element for m in _KEPT_FOR):
        return element
    if "<action>" in element:
        return element.replace("<action>", "<action>" + _KEEP, 1)
    assert element.endswith("/>"), element
    return element[:-2].rstrip() + f"><action>{_KEEP}</action></recv>"


def response(code: int, reason: str, sdp: bool = False, next_label: str | None = None, kept: bool = False) -> str:
    body = "Content-Type: application/sdp\n      Content-Length: [len]\n\n      " + _SDP.format(
        version="2353687638") if sdp else "Content-Length: 0\n"
    nxt = f' next="{next_label}"' if next_label else ""
    copied = ("      [$qv]\n      From:[$qf]\n      To:[$qt]\n      Call-ID: [call_id]\n      CSeq:[$qc]" if kept
              else "      [last_Via:]\n      [last_From:]\n      [last_To:]\n      [last_Call-ID:]\n      [last_CSeq:]")
    text = f"""      SIP/2.0 {code} {reason}
{copied}
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      {body}"""
    return f"  <send{nxt}>\n{_cdata(text)}\n  </send>"


def _options(label: str) -> str:
    """An in-dialog OPTIONS (a keep-alive) is answered 200; then back to the wait."""
    return "\n".join([f'  <label id="options_{label}"/>', response(200, "OK", next_label=label)])


def _reinvite(label: str) -> str:
    """A re-INVITE (hold, session refresh) is answered with our SDP; then back to the wait it interrupted."""
    return "\n".join([
        f'  <label id="reinvite_{label}"/>',
        '  <nop><action><log message="QA [call_id] reinvite tick=[clock_tick]"/></action></nop>',
        response(200, "OK", sdp=True),
        f'  <recv request="ACK" timeout="5000" next="{label}"/>'])


def _log(text: str) -> str:
    return f"<log message={quoteattr('QA [call_id] ' + text)}/>"


def _fail(why: str) -> str:
    """Ends the call as failed in SIPp's count (a check that cannot pass), after logging why."""
    return (f'  <nop><action>{_log("fail why=" + why)}<assignstr assign_to="why" value="{why}"/>'
            '<ereg regexp="^never$" search_in="var" variable="why" check_it="true" assign_to="never"/>'
            '</action></nop>')


def _refer_capture(k: int, transfer: ExpectedTransfer) -> str:
    """Actions of a REFER `<recv>`: Refer-To and the expected headers into variables, logged, checked."""
    actions = ['<ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="refer_cseq"/>',
               f'<ereg regexp="(sips?:[^&gt; ]*)" search_in="hdr" header="Refer-To:" check_it="true" '
               f'assign_to="whole,r{k}_uri"/>']
    logged = [f"refer k={k} uri=[$r{k}_uri] tick=[clock_tick] sent=[$sent]"]
    for i, (name, _) in enumerate(transfer.headers):
        actions.append(f'<ereg regexp="(.+)" search_in="hdr" header="{escape(name)}:" '
                       f'assign_to="whole,r{k}_h{i}"/>')
        logged.append(f"h.{name}=[$r{k}_h{i}]")
    actions.append(_log(" ".join(logged)))
    actions.append(f'<assignstr assign_to="r{k}_want" value={quoteattr(transfer.uri)}/>')
    actions.append(f'<strcmp variable="r{k}_uri" variable2="r{k}_want" check_it="true" assign_to="cmp"/>')
    return "<action>" + "".join(actions) + "</action>"


def render(path: CallPath, method: DtmfMethod = "info", pcap: str | None = None, slack_ms: int = 10_000) -> str:
    """The scenario XML; `pcap` (a file name next to it) carries the digits when `method` is rfc4733."""
    caller = "[field0][pid][call_number]" if path.fresh_caller else "[field0]"
    doc = _Doc(path, caller, slack_ms)
    _invite(doc)
    last_at = _digits(doc, method, pcap)
    _transfers(doc, last_at)
    title = f"{path.name} ({method})"
    return "\n".join([
        '<?xml version="1.0" encoding="ISO-8859-1" ?>',
        '<!DOCTYPE scenario SYSTEM "sipp.dtd">',
        f"<!-- Generated by `ivr scenarios` from flow {escape(path.flow)}: do not edit.",
        f"  {escape(path.description)}",
        f"  Expected: {escape(path.expected)}; digits {escape(path.digits) or '(none)'} by {method}.",
        "  Injection file: caller;dialed;digits;expected (run with -inf <name>.csv). -->",
        f"<scenario name={quoteattr(title)}>",
        *doc.main,
        '  <nop next="end"/>',
        _UNREACHED,
        *doc.handlers,
        *_endings(doc),
        '  <label id="end"/>',
        *_LATE_NOTIFY_ANSWER,
        "</scenario>", ""])


def _invite(doc: _Doc) -> None:
    sdp = _SDP.format(version="2353687637")
    invite = f"""      INVITE sip:[field1]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{doc.caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      User-Agent: SIPp ivr-qa
      Content-Type: application/sdp
      Content-Length: [len]

      {sdp}"""
    doc.main.append(f'  <nop><action><assignstr assign_to="sent" value=""/>'
                    f'{_log("start caller=" + doc.caller + " tick=[clock_tick]")}</action></nop>')
    doc.main.append(f'  <send retrans="500">\n{_cdata(invite)}\n  </send>')
    for code in (100, 180, 183):
        doc.main.append(f'  <recv response="{code}" optional="true" timeout="10000"/>')
    for code in REJECTIONS:
        doc.main.append(f'  <recv response="{code}" optional="true" timeout="10000" next="rejected_{code}"/>')
        doc.handlers.append("\n".join([
            f'  <label id="rejected_{code}"/>', f'  <nop><action>{_log(f"rejected code={code}")}</action></nop>',
            doc.request("ACK", cseq="1"), _fail(f"rejected_{code}")]))
    doc.main.append(f'  <recv response="200" rrs="true" timeout="10000"><action>'
                    f'{_log("answered tick=[clock_tick]")}</action></recv>')
    doc.main.append(doc.request("ACK", cseq="1"))


def _digits(doc: _Doc, method: DtmfMethod, pcap: str | None) -> float:
    """Sends the digits; returns the engine time of the last press (0 without digits)."""
    presses = doc.path.presses
    if not presses:
        return 0.0
    if method == "rfc4733":
        assert pcap is not None
        doc.main.append(f'  <nop><action><exec play_pcap_audio="{escape(pcap)}"/>'
                        f'<assignstr assign_to="sent" value="{escape(doc.path.digits)}"/>'
                        f'{_log("pcap " + pcap + " tick=[clock_tick]")}</action></nop>')
        return 0.0
    previous = 0.0
    for i, press in enumerate(presses):
        delay = int((press.at - previous) * 1000) + (FIRST_DIGIT_MARGIN_MS if i == 0 else 0)
        previous = press.at
        refer = _refer_capture(1, doc.path.transfers[0]) if doc.path.transfers else ""
        if refer:
            anchor = f'  <recv request="REFER" next="refer_1">{refer}</recv>'
        else:
            anchor = f'  <recv request="REFER" next="refer_unexpected">{_CAPTURE_ANY}</recv>'
        doc.wait(f"before_press_{i}", anchor, f'timeout="{delay}" ontimeout="press_{i}"', late_ok=i > 0)
        sent = escape(doc.path.digits[: i + 1])
        doc.main.append(f'  <label id="press_{i}"/>')
        doc.main.append(f'  <nop><action><assignstr assign_to="sent" value="{sent}"/>'
                        f'{_log(f"digit d={escape(press.digit)} tick=[clock_tick]")}</action></nop>')
        body = f"Signal={press.digit}\n      Duration=160"
        doc.main.append(doc.request("INFO", "      Content-Type: application/dtmf-relay\n", body))
        doc.unanswered = True
    return presses[-1].at


_LATE_NOTIFY_ANSWER = (
    # The BYE may overtake the answer to our last NOTIFY: wait up to 1 s for it in a <recv> (a <timewait>
    # cannot receive); the label must not be the scenario's end (SIPp counts a jump there as a failure).
    '  <recv response="200" optional="true" timeout="1000" ontimeout="done" next="done"/>',
    '  <recv response="481" next="done"/>',
    '  <label id="done"/>',
    '  <nop display="done"/>')
_UNREACHED = ("  <nop><action>" + "".join(f'<assignstr assign_to="{v}" value=""/>' for v in
                                          ("whole", "cmp", "never", "why", "ru_uri", "sent", "refer_cseq", "qvn"))
              + '<log message="unreached [$whole] [$cmp] [$never] [$why] [$ru_uri] [$sent] [$refer_cseq] [$qvn]"/>'
              + "</action></nop>")
_CAPTURE_ANY = ('<action><ereg regexp="(sips?:[^&gt; ]*)" search_in="hdr" header="Refer-To:" '
                'assign_to="whole,ru_uri"/></action>')


def _transfers(doc: _Doc, last_at: float) -> None:
    """Each expected REFER in turn (accepted, or refused and followed by the next), then the BYE."""
    previous = last_at
    for k, transfer in enumerate(doc.path.transfers, start=1):
        timeout = int((transfer.at - previous) * 1000) + doc.slack_ms
        anchor = f'  <recv request="REFER">{_refer_capture(k, transfer)}</recv>'
        doc.wait(f"wait_refer_{k}", anchor, f'timeout="{timeout}"', then=f"refer_{k}")
        doc.main.append(f'  <label id="refer_{k}"/>')
        if transfer.answer == 200:
            _accept(doc)
            return
        # logged before the answer: SIPp takes no message while it sits on an element after a <send>
        doc.main.append(f'  <nop><action>{_log(f"refused k={k} code={transfer.answer}")}</action></nop>')
        doc.main.append(response(transfer.answer, REASONS.get(transfer.answer, "Refused"), kept=True))
        previous = transfer.at
    timeout = int((doc.path.end_at - previous) * 1000) + doc.slack_ms
    _await_bye(doc, "wait_bye", timeout,
               (f'  <recv request="REFER" optional="true" next="refer_unexpected">{_CAPTURE_ANY}</recv>',))


def _accept(doc: _Doc) -> None:
    """202, NOTIFY 100 (active), its 200, NOTIFY 200 (terminated), then the BYE and that NOTIFY's 200
    in either order."""
    doc.main.append(response(202, "Accepted", kept=True))
    notify = ("      Event: refer;id=[$refer_cseq]\n      Subscription-State: {state}\n"
              "      Content-Type: message/sipfrag;version=2.0\n")
    doc.main.append(doc.request("NOTIFY", notify.format(state="active;expires=60"), "SIP/2.0 100 Trying"))
    doc.wait("notify_trying", '  <recv response="200"/>', 'timeout="5000"', late_ok=False)
    doc.main.append(doc.request("NOTIFY", notify.format(state="terminated;reason=noresource"), "SIP/2.0 200 OK"))
    doc.unanswered = True  # the BYE may overtake this NOTIFY's 200: it is answered after that 200
    # "global": a 200 (or 481) that still comes while SIPp is past this wait (on a <send>) is taken here
    _await_bye(doc, "await_end", 5000 + doc.slack_ms, late="global")


def _await_bye(doc: _Doc, label: str, timeout: int, extra: tuple[str, ...] = (), late: str = "true") -> None:
    doc.wait(label, '  <recv request="BYE"/>', f'timeout="{timeout}"', bye=None, extra=extra, late=late,
             then=f"{label}_bye")
    doc.main.append(f'  <label id="{label}_bye"/>')
    doc.main.append(f'  <nop><action>{_log("bye tick=[clock_tick]")}</action></nop>')
    doc.main.append(response(200, "OK", next_label="end", kept=True))


def _endings(doc: _Doc) -> list[str]:
    return [
        '  <label id="bye_early"/>',
        f'  <nop><action>{_log("bye tick=[clock_tick] early=1")}</action></nop>',
        response(200, "OK", kept=True),
        _fail("bye_before_refer"),
        '  <nop next="end"/>',
        '  <label id="refer_unexpected"/>',
        f'  <nop><action>{_log("refer_unexpected uri=[$ru_uri] tick=[clock_tick]")}</action></nop>',
        response(603, "Declined", kept=True),
        _fail("unexpected_refer"),
        '  <nop next="end"/>']
