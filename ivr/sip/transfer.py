"""REFER plumbing of a worker that pjsua2 does not wrap: the REFER transactions of a call, and one pjsip setting.

Why a fallback transfer got `481 Subscription does not exist` (pjproject 2.15.1, verified with
IVR_PJSIP_LOG_LEVEL=5 and tests/sip/test_worker_fallback.py):

1. `Call.xfer` -> `pjsua_call_xfer` -> `pjsip_xfer_create_uac`, which creates the REFER's implicit subscription
   with `PJSIP_EVSUB_NO_EVENT_ID`: its Event id is empty and gets learnt from the first NOTIFY.
2. The queue refuses the REFER (405, 603; or the front answers 408 for a transferee that is silent). evsub
   sets that subscription TERMINATED but cannot destroy it: the REFER client transaction still counts as
   pending (`pending_tsx`) until it is TERMINATED, i.e. for Timer K = T4 = 5 s on UDP (0 on TCP). Until then
   the dead subscription stays in the dialog's list, in front of any later one (`pj_list_push_back`).
3. The fallback REFER creates a second subscription in the same dialog; the transferee's NOTIFY for it carries
   `Event: refer;id=<CSeq of the second REFER>` (RFC 3515 2.4.6). `on_new_transaction` (evsub.c) walks the
   list in order. For the dead subscription the ids differ (empty vs. CSeq), so the "skip terminated
   subscriptions" rule (ticket #1647, which applies only when the ids are equal) does not apply, but the next
   rule does: a UAC subscription with NO_EVENT_ID and an empty id matches any NOTIFY with an id, adopts that
   id, and is chosen. It is TERMINATED, so the NOTIFY is answered 481 "Subscription already terminated" and
   the live second subscription never sees it: the flow waits for a NOTIFY that was refused, times out and
   the caller hears "technical difficulties".
   A NOTIFY without `;id=` passed (the #1647 rule skips the dead one), which is why the suite, whose
   scenarios sent none and accepted a 481, stayed green. Nothing here depends on load: every fallback whose
   NOTIFY (with id) arrives within T4 of the refusal on UDP is hit. Measured without this fix: 1 call alone
   straight at a worker failed, and 20 of 20 calls at once through the front; only a NOTIFY delayed past
   5 s (a slow transferee, or a flow that plays a prompt between the attempts) escapes.

The fix, where the cause lives: before a call sends another REFER, its earlier REFER client transactions
that are not TERMINATED yet are terminated now (`pjsip_tsx_terminate`, 487), which is what Timer K would do
5 s later, and what TCP does at once. evsub then drops the dead subscription from the dialog (pending_tsx
reaches 0 on a TERMINATED subscription), and a subscription still waiting for its first NOTIFY (a REFER the
flow gave up on: no answer, or 202 and no NOTIFY within the step's timeout) is terminated with it, so it
cannot swallow the new REFER's NOTIFY either. The transfer status pjsua reports for those superseded
subscriptions is dropped by the call (it is not the new REFER's). A retransmitted final response to the
terminated transaction is a stray response pjsip drops. Left as it is: a first REFER answered 202 whose
transaction has already ended (more than 5 s earlier) but whose subscription has had no NOTIFY stays in the
dialog; it takes the fallback's NOTIFY instead of the new subscription and pjsua reports it for the same
call, so the flow still sees the right result.

`keep_inv_after_tsx_timeout`: on a 408 to any in-dialog request (RFC 3261 12.2.1.2), pjsip's invite session
sends BYE and the call ends, so a REFER that no one answers killed the call (`no_ack`) before the step's
`on_fail` could run. RFC 5057 says a 408 to a REFER ends only the subscription usage. pjsip's runtime
setting `pjsip_cfg()->endpt.keep_inv_after_tsx_timeout` keeps the call; pjsua2 does not wrap `pjsip_cfg()`,
so it is set on the exported `pjsip_sip_cfg_var`, after checking the struct's layout against its defaults.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pjsua2 as pj
import structlog
from pjsua2 import _pjsua2 as native_module

log = structlog.get_logger()

SUPERSEDED_CODE = 487
"""Status a superseded REFER transaction is ended with (not 408/481: those make pjsip end the call)."""

REQUEST_TIMEOUT = 408

# pjsip_cfg_t (pjsip/include/pjsip/sip_config.h, 2.15.1): 13 pj_bool_t in `endpt`, then `tsx`.
_KEEP_INV_AFTER_TSX_TIMEOUT = 12
_TSX_TIMERS = slice(14, 18)
_DEFAULT_TSX_TIMERS = [500, 4000, 5000, 32000]  # t1, t2, t4, td in ms


class _Native:
    """The two pjsip symbols used here, from the already loaded `_pjsua2` extension."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(native_module.__file__)
        self.lib.pjsip_tsx_terminate.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.lib.pjsip_tsx_terminate.restype = ctypes.c_int

    def terminate(self, tsx: int, code: int) -> int:
        return int(self.lib.pjsip_tsx_terminate(ctypes.c_void_p(tsx), code))

    def sip_cfg(self) -> Any:
        return (ctypes.c_uint * 18).in_dll(self.lib, "pjsip_sip_cfg_var")


_native: _Native | None = None


def native() -> _Native:
    global _native
    if _native is None:
        _native = _Native()
    return _native


def keep_calls_after_request_timeout() -> bool:
    """Set `keep_inv_after_tsx_timeout`; False (and a warning) when the struct is not the expected one."""
    cfg = native().sip_cfg()
    timers = list(cfg[_TSX_TIMERS])
    if timers != _DEFAULT_TSX_TIMERS or cfg[_KEEP_INV_AFTER_TSX_TIMEOUT] not in (0, 1):
        log.warning("sip.stack.pjsip_cfg_unexpected", timers=timers)
        return False
    cfg[_KEEP_INV_AFTER_TSX_TIMEOUT] = 1
    return True


class ReferTransactions:
    """The REFER client transactions of one call that pjsip has not terminated yet (their addresses)."""

    def __init__(self) -> None:
        self._live: set[int] = set()
        self._timed_out = False
        self._expecting = False

    @property
    def watching(self) -> bool:
        """Whether the call's transactions need observing: a REFER is being sent or is not TERMINATED yet.

        A call that never transfers has ~30 transaction state changes (INVITE, INFO digits, BYE) and none of
        them is a REFER of ours: `IvrCall.onCallTsxState` returns before reading `prm` (a SWIG proxy per
        attribute: `prm.e.body.tsxState.tsx` was 9 % of the loop's active time, bench/README.md session 17)."""
        return self._expecting or bool(self._live)

    def expect(self, sent: bool = True) -> None:
        """Before `Call.xfer` (False: it failed): watch until the REFER's transaction shows up."""
        self._expecting = sent

    def take_timeout(self) -> bool:
        """Whether a REFER transaction of this call timed out since the last call (then forgets it).

        pjsua reports a REFER that timed out as transfer status 500 (no response to quote, xfer_client_on_
        evsub_state): the call uses this to report the 408 it really is."""
        timed_out, self._timed_out = self._timed_out, False
        return timed_out

    def observe(self, tsx: Any) -> None:
        """Feed every `onCallTsxState` transaction; REFERs we sent are tracked until TERMINATED."""
        if tsx.role != pj.PJSIP_ROLE_UAC or str(tsx.method) != "REFER":
            return
        address = int(tsx.pjTransaction)
        if tsx.state >= pj.PJSIP_TSX_STATE_TERMINATED:
            self._live.discard(address)
            self._timed_out = self._timed_out or int(tsx.statusCode) == REQUEST_TIMEOUT
        else:
            self._live.add(address)
            self._expecting = False

    def supersede(self) -> int:
        """Terminate every live REFER transaction (on the loop thread, outside pjsip's callbacks)."""
        ended = 0
        while self._live:
            address = self._live.pop()
            status = native().terminate(address, SUPERSEDED_CODE)
            if status == 0:
                ended += 1
            else:
                log.warning("sip.transfer.terminate_failed", status=status)
        return ended
