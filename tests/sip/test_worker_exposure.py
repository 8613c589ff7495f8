"""A worker with no front before it (single-worker mode) still makes no call for a stranger and names no product:
out-of-dialog REFER and MESSAGE make it call nobody, its answers carry no User-Agent/Server."""

from __future__ import annotations

import secrets
import socket
import time

import pytest
from sip_harness import HOST, ivr_script

pytestmark = pytest.mark.sip


def _request(method: str, port: int, sock: socket.socket, extra: str = "", body: str = "") -> str:
    local = sock.getsockname()
    return (f"{method} sip:100@{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            f"From: <sip:x@{local[0]}>;tag={secrets.token_hex(4)}\r\nTo: <sip:100@{HOST}:{port}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@exposure\r\nCSeq: 1 {method}\r\n"
            f"Contact: <sip:x@{local[0]}:{local[1]}>\r\nMax-Forwards: 70\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n{body}")


def _final(sock: socket.socket, text: str, port: int) -> str | None:
    sock.sendto(text.encode(), (HOST, port))
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65535).decode("utf-8", "replace")
        except TimeoutError:
            return None
        if not data.startswith("SIP/2.0 1"):
            return data
    return None


def test_out_of_dialog_refer_and_message_make_the_worker_call_nobody(spawn_worker):
    worker = spawn_worker(ivr_script(transfer_on="1", uri="sip:sales@127.0.0.1:5999"))
    port = worker.ports.sip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as target, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        target.bind((HOST, 0))
        sock.bind((HOST, 0))
        refer_to = f"Refer-To: <sip:victim@{HOST}:{target.getsockname()[1]}>\r\n"
        refer = _final(sock, _request("REFER", port, sock, refer_to), port)
        message = _final(sock, _request("MESSAGE", port, sock, "Content-Type: text/plain\r\n", "hi"), port)
        options = _final(sock, _request("OPTIONS", port, sock), port)
        target.settimeout(1.5)
        with pytest.raises(TimeoutError):
            target.recv(65535)  # no INVITE (nor anything else) reached the Refer-To
    assert refer is None or not refer.startswith("SIP/2.0 2"), refer  # pjsua ignores it, or refuses
    assert options is not None and options.startswith("SIP/2.0 200 "), options
    for answer in (refer, message, options):
        head = (answer or "").split("\r\n\r\n", 1)[0].lower()
        assert "user-agent:" not in head and "server:" not in head and "pjsip" not in head, answer
    assert not worker.ctl.calls()
