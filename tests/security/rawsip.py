"""Hand-made SIP for the adversarial tests: an attacker's socket, a caller that holds one real dialog, a sink.

Everything binds 127.0.0.0/8 addresses only and every wait is bounded.
"""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field


def header(message: str, name: str) -> list[str]:
    """Values of header `name` (case-insensitive, compact forms not handled) in a SIP message."""
    values = []
    for line in message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            values.append(value.strip())
    return values


def status(message: str | None) -> int | None:
    if message is None or not message.startswith("SIP/2.0 "):
        return None
    return int(message.split(" ", 2)[1])


class Peer:
    """One UDP socket on a loopback address: send requests, read responses and requests sent to it."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()

    def via(self) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{secrets.token_hex(8)};rport"

    def send(self, text: str, target: tuple[str, int]) -> None:
        self.sock.sendto(text.encode(), target)

    def receive(self, wait: float) -> list[str]:
        """Every datagram that arrives within `wait` seconds."""
        got: list[str] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.sock.recv(65535).decode("utf-8", "replace"))
            except TimeoutError:
                break
        return got

    def final(self, text: str, target: tuple[str, int], wait: float = 1.5) -> str | None:
        """Send a request; its first final response (>= 200) within `wait`, else None (silence)."""
        self.send(text, target)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535).decode("utf-8", "replace")
            except TimeoutError:
                return None
            code = status(data)
            if code is not None and code >= 200:
                return data
        return None


def request(peer: Peer, method: str, ruri: str, *, call_id: str | None = None, from_tag: str | None = None,
            to_tag: str = "", cseq: int = 1, routes: tuple[str, ...] = (), extra: dict[str, str] | None = None,
            body: str = "") -> str:
    """A request from `peer`; `routes` become Route headers, `to_tag` makes it (look) in-dialog."""
    to = f"<{ruri}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [f"{method} {ruri} SIP/2.0", f"Via: {peer.via()}",
             *(f"Route: {route}" for route in routes),
             f"From: <sip:caller@{peer.host}:{peer.port}>;tag={from_tag or secrets.token_hex(4)}",
             f"To: {to}", f"Call-ID: {call_id or secrets.token_hex(8) + '@sec-test'}",
             f"CSeq: {cseq} {method}", f"Contact: <sip:caller@{peer.host}:{peer.port}>", "Max-Forwards: 70",
             *(f"{k}: {v}" for k, v in (extra or {}).items())]
    if body:
        lines.append("Content-Type: application/sdp" if body.startswith("v=0") else "Content-Type: text/plain")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def sdp(host: str, port: int) -> str:
    return (f"v=0\r\no=caller 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")


@dataclass
class Dialog:
    """A call the trunk set up through the front: what a party (or an eavesdropper) knows of it."""

    call_id: str
    from_tag: str
    to_tag: str
    remote_target: str
    routes: tuple[str, ...]
    cseq: int = 1
    media: socket.socket | None = field(default=None, repr=False)
    answer: str = field(default="", repr=False)


def invite(peer: Peer, front: tuple[str, int], number: str, wait: float = 10.0) -> Dialog:
    """INVITE sip:number@front, wait for the 200, ACK it: an established dialog (RTP goes to a dead socket)."""
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind((peer.host, 0))
    call_id, from_tag = secrets.token_hex(8) + "@sec-test", secrets.token_hex(4)
    ruri = f"sip:{number}@{front[0]}:{front[1]}"
    text = request(peer, "INVITE", ruri, call_id=call_id, from_tag=from_tag,
                   body=sdp(peer.host, int(media.getsockname()[1])))
    answer = peer.final(text, front, wait)
    if status(answer) != 200 or answer is None:
        media.close()
        raise AssertionError(f"call to {number} not answered: {answer!r}")
    to_tag = re.search(r";tag=([^;>\s]+)", header(answer, "To")[0])
    contact = re.search(r"<([^>]+)>", header(answer, "Contact")[0])
    assert to_tag and contact, answer
    routes = tuple(r for value in reversed(header(answer, "Record-Route")) for r in value.split(","))
    dialog = Dialog(call_id, from_tag, to_tag.group(1), contact.group(1), routes, media=media, answer=answer)
    peer.send(in_dialog(peer, dialog, "ACK", cseq=1), front)
    return dialog


def in_dialog(peer: Peer, dialog: Dialog, method: str, *, ruri: str = "", cseq: int | None = None,
              extra: dict[str, str] | None = None, routes: tuple[str, ...] | None = None) -> str:
    """A request inside `dialog` from `peer` (which may be a stranger who learned the dialog's ids)."""
    if cseq is None:
        dialog.cseq += 1
        cseq = dialog.cseq
    return request(peer, method, ruri or dialog.remote_target, call_id=dialog.call_id, from_tag=dialog.from_tag,
                   to_tag=dialog.to_tag, cseq=cseq, routes=dialog.routes if routes is None else routes,
                   extra=extra)


class Sink:
    """A would-be relay target: UDP and TCP on host:port, records every byte anyone sends it."""

    def __init__(self, host: str) -> None:
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((host, 0))
        self.host, self.port = host, int(self.udp.getsockname()[1])
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((host, self.port))
        self.tcp.listen(8)
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._udp_loop, daemon=True),
                         threading.Thread(target=self._tcp_loop, daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def uri(self) -> str:
        return f"sip:victim@{self.host}:{self.port}"

    def _udp_loop(self) -> None:
        self.udp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                self.received.append(self.udp.recv(65535))
            except (TimeoutError, OSError):
                continue

    def _tcp_loop(self) -> None:
        self.tcp.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            self.received.append(b"<tcp connection>")
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self.udp.close()
        self.tcp.close()


def ack_for(peer: Peer, invite_text: str, answer: str) -> str:
    """The hop-by-hop ACK of a non-2xx final answer: the INVITE's Via branch, the answer's To."""
    head = invite_text.split("\r\n\r\n", 1)[0].split("\r\n")
    ruri = head[0].split(" ")[1]
    keep = [line for line in head[1:] if line.split(":", 1)[0] in ("Via", "From", "Call-ID")]
    cseq = header(invite_text, "CSeq")[0].split()[0]
    return "\r\n".join([f"ACK {ruri} SIP/2.0", *keep, f"To: {header(answer, 'To')[0]}", f"CSeq: {cseq} ACK",
                        "Max-Forwards: 70", "Content-Length: 0"]) + "\r\n\r\n"
