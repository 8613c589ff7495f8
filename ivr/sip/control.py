"""The worker's side of the control socket, and the waker that interrupts pjsip's blocking poll.

No pjsua2 here: the reader thread only reads, decodes and queues; the loop thread does all SIP work.
"""

from __future__ import annotations

import queue
import socket
import threading
from dataclasses import dataclass

import structlog

from ivr.flow import commands, events
from ivr.sip import wire

log = structlog.get_logger()

_KEEPALIVE = b"\r\n\r\n"
"""pjsip treats a datagram of bare CRLFs as a keep-alive and drops it; it still ends the poll."""


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded controller command for call `call`."""

    call: str
    command: commands.WorkerCommand


@dataclass(frozen=True, slots=True)
class ControlClosed:
    """The controller closed its end (or the socket failed)."""


@dataclass(frozen=True, slots=True)
class PlayerEof:
    """A player reached its end (posted from pjmedia's thread by `AudioMediaPlayer.onEof2`)."""

    call: str
    token: int


@dataclass(frozen=True, slots=True)
class Digit:
    """An RFC 4733 digit (posted from pjmedia's thread by `IvrCall.onDtmfDigit`)."""

    call: str
    event: events.DigitReceived


Work = Command | ControlClosed | PlayerEof | Digit


class Waker:
    """Sends a keep-alive datagram to the worker's own SIP UDP port to end `libHandleEvents` early."""

    def __init__(self, host: str, port: int) -> None:
        target = "127.0.0.1" if host in ("0.0.0.0", "") else host
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind((target, 0))  # from our own address, which the source filter lets in (sockfilter)
        self._sock.connect((target, port))

    def fileno(self) -> int:
        return self._sock.fileno()

    def wake(self) -> None:
        try:
            self._sock.send(_KEEPALIVE)
        except OSError:
            pass  # a full buffer means a wake-up is already pending

    def close(self) -> None:
        self._sock.close()


class ControlLink:
    """Line-oriented JSON messages over the inherited socket: a reader thread in, `send` out."""

    def __init__(self, fd: int, waker: Waker) -> None:
        self._sock = socket.socket(fileno=fd)
        self._waker = waker
        self._lock = threading.Lock()
        self._closed = False
        self.work: queue.SimpleQueue[Work] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._read, name="control-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def post(self, item: Work) -> None:
        """Queue work for the loop thread and wake it (safe from any thread)."""
        self.work.put(item)
        self._waker.wake()

    def _read(self) -> None:
        try:
            with self._sock.makefile("rb") as stream:
                for line in stream:
                    self._decode(line)
        except (OSError, ValueError) as exc:
            log.warning("sip.control.read_failed", error=str(exc))
        self.post(ControlClosed())

    def _decode(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            call, message = wire.decode(line)
        except wire.WireError as exc:
            log.warning("sip.control.bad_line", error=str(exc))
            return
        if isinstance(message, commands.WorkerCommand):
            self.post(Command(call, message))
        else:
            log.warning("sip.control.not_a_command", type=type(message).__name__)

    def send(self, call: str, message: wire.Message) -> None:
        """Send one message; after the link broke, drop it silently (the controller is gone)."""
        data = wire.encode(call, message)
        with self._lock:
            if self._closed:
                return
            try:
                self._sock.sendall(data)
            except OSError as exc:
                self._closed = True
                log.warning("sip.control.send_failed", error=str(exc))

    def close(self) -> None:
        with self._lock:
            self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
