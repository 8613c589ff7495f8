"""pjmedia's I/O queue (all RTP/RTCP of the worker) polled by a thread of ours that blocks up to POLL_MS.

pjmedia's own worker thread polls that queue with a fixed 10 ms timeout (pjmedia/endpoint.c `worker_proc`;
not a setting of the wheel): an idle worker woke ~100 times a second, 2-3 ms of CPU per second (0.2-0.3
cores for 96 idle workers; bench/README.md, worker session 17). pjsua always starts that thread when
pjmedia has its own queue (`pjsua_media_subsys_init` raises `threadCnt=0` to 1), so after `libInit` this
module stops it (`pjmedia_endpt_stop_threads`, exported by the wheel) and calls the same
`pj_ioqueue_poll` on the same queue through ctypes, which releases the GIL for the whole call: RTP is still
received, decoded and put in the jitter buffer in C; the thread wakes for packets, not for a clock (idle:
5 wake-ups/s). What the media path raises (RFC 4733 digits, player end-of-file) now comes on this thread,
a Python thread registered with pjlib, and is handed to the loop as before (stack.py).

Trade-off: select() sees a socket registered while it waits only when it returns, so when no other RTP
reaches the worker (the first call of an idle worker) a new call's first packets wait in their socket up to
POLL_MS before they are read (nothing is lost; with other calls' RTP flowing the poll returns per packet).
The poll must end before `libDestroy`: `stop()` sets a flag and joins (the poll returns within POLL_MS).
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Any

import structlog
from pjsua2 import _pjsua2 as native_module

log = structlog.get_logger()

POLL_MS = 200
"""Longest single wait in the media poll; also the longest `stop()` waits for the thread."""


_PR_SET_NAME = 15


class _TimeVal(ctypes.Structure):
    """pj_time_val: seconds and milliseconds, both `long`."""

    _fields_ = [("sec", ctypes.c_long), ("msec", ctypes.c_long)]


def _media_ioqueue() -> tuple[Any, int]:
    """The `pj_ioqueue_poll` function and pjmedia's I/O queue (after `libInit`)."""
    lib = ctypes.CDLL(native_module.__file__)
    lib.pjsua_get_pjmedia_endpt.restype = ctypes.c_void_p
    lib.pjsua_get_pjmedia_endpt.argtypes = []
    lib.pjmedia_endpt_get_ioqueue.restype = ctypes.c_void_p
    lib.pjmedia_endpt_get_ioqueue.argtypes = [ctypes.c_void_p]
    lib.pjmedia_endpt_stop_threads.restype = ctypes.c_int
    lib.pjmedia_endpt_stop_threads.argtypes = [ctypes.c_void_p]
    lib.pj_ioqueue_poll.restype = ctypes.c_int
    lib.pj_ioqueue_poll.argtypes = [ctypes.c_void_p, ctypes.POINTER(_TimeVal)]
    endpt = lib.pjsua_get_pjmedia_endpt()
    ioqueue = lib.pjmedia_endpt_get_ioqueue(endpt) if endpt else None
    if not ioqueue:
        raise RuntimeError("pjmedia has no I/O queue of its own (medConfig.hasIoqueue must be set)")
    if lib.pjmedia_endpt_stop_threads(endpt) != 0:
        raise RuntimeError("pjmedia_endpt_stop_threads failed")
    return lib.pj_ioqueue_poll, int(ioqueue)


def _name_thread(name: bytes) -> None:
    """The calling thread's kernel name (`comm`, 15 bytes), Linux only; elsewhere nothing happens."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


class MediaPoller:
    """One thread polling pjmedia's I/O queue until `stop()` (built after `libInit`: stops pjmedia's thread)."""

    def __init__(self, register: Any) -> None:
        self._poll, self._ioqueue = _media_ioqueue()
        self._register = register
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="media-poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        _name_thread(b"media")  # as pjmedia's thread was named: ps, top and the bench's per-thread figures
        self._register("media-poll")  # pjlib asserts on threads it does not know
        timeout = _TimeVal(0, POLL_MS)
        poll, ioqueue, ref = self._poll, ctypes.c_void_p(self._ioqueue), ctypes.byref(timeout)
        failures = 0
        while not self._stopping:
            if poll(ioqueue, ref) >= 0:
                failures = 0
                continue
            # A socket closed between pjlib copying its fd sets and select() (a call ending) fails one poll,
            # and pjmedia's own thread simply polls again; only a failure that persists is logged and paced.
            failures += 1
            if failures % 100 == 0:
                log.warning("sip.media.poll_failing", failures=failures)
                time.sleep(0.01)

    def stop(self) -> None:
        self._stopping = True
        if self._thread.is_alive():
            self._thread.join(POLL_MS / 1000 * 5)
