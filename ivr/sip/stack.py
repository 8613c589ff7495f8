"""The pjsua2 endpoint of one worker: library, transports, G.711 codecs and one local account per SRTP mode.

SRTP per call: pjsua fixes a call's SRTP use from its account before the application sees the INVITE, and
`CallSetting` has no SRTP field, so the stack holds three accounts (off, optional, mandatory) and
`Endpoint.onSelectAccount` picks one per INVITE from `srtp.SrtpPolicy`. SDES only (no DTLS-SRTP);
`srtpSecureSignaling = 0`: pjsua would otherwise demand TLS on the hop that carries the keys, and the
front -> worker hop is plain UDP on the internal address. The TLS hop is the trunk's, ended at the front;
the internal hop is trusted like the X-IVR-Trunk header is (loopback or a private network to the front).

Threading. SIP has no pjsip thread (`uaConfig.threadCnt=0`): the loop thread pumps `libHandleEvents`, and
every SIP callback runs on it. Media has pjmedia's own I/O queue (`medConfig.hasIoqueue`) polled by one
thread of ours in C with the GIL released (mediapoll.py: it replaces pjmedia's thread, which woke every 10
ms even with no call): RTP is received, decoded and put in the jitter buffer without waking the loop, so
the loop wakes for SIP, commands and its own deadlines only (it used to wake for every RTP packet, 130-210
us of CPU each; bench/README.md). What the media thread raises must still reach the loop promptly:

- RFC 4733 digits (`onDtmfDigit`/`onDtmfEvent`). With `mainThreadOnly=True` pjsua2 queues them as pending
  jobs and runs those at the *start* of the next `libHandleEvents` (endpoint.cpp, `utilAddPendingJob`,
  `performPendingJobs`), with nothing to end the poll already blocking: a digit waited up to a whole
  block (<= 1 s). So `mainThreadOnly=False`: with no SIP thread it changes only where the media thread's
  callbacks (DTMF, media events, log lines; we set no log writer) run, and `IvrCall.onDtmfDigit` hands a
  digit from that thread to the loop (control queue + Waker), as `Prompter.onEof2` always did for EOF.
- Player end-of-file: `AudioMediaPlayer.onEof2` is called on the media thread whatever the setting.
- Recordings raise nothing: the loop polls the WAV file (recorder.py).

Lifetimes follow /work/shared/PJSUA2_NOTES.md: everything created here is released in `close()` in the
documented order.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj
import structlog

from ivr.sip.mediapoll import MediaPoller
from ivr.sip.srtp import MODES, Mode, SrtpPolicy
from ivr.sip.transfer import keep_calls_after_request_timeout

log = structlog.get_logger()

WHEEL_MAX_CALLS = 4
"""PJSUA_MAX_CALLS of the pjsua2-python 2.15.1 wheel: `maxCalls` above it is clamped by pjsua."""
_CODECS = ("PCMU/8000/1", "PCMA/8000/1")


@dataclass(frozen=True, slots=True)
class StackConfig:
    """What the endpoint needs from the command line."""

    name: str
    sip_host: str
    sip_port: int
    rtp_port: int
    rtp_port_count: int
    media_address: str
    max_calls: int
    public_host: str = ""
    outbound_proxy: str = ""
    """Route set of calls this worker places (bridged legs); incoming calls follow their Record-Route."""
    srtp: SrtpPolicy = SrtpPolicy()


@contextmanager
def _quiet_output() -> Iterator[None]:
    """Silence fds 1 and 2 (pjlib prints to stdout before its log level can be set)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


_SRTP_USE = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
             "mandatory": pj.PJMEDIA_SRTP_MANDATORY}


class Account(pj.Account):  # type: ignore[misc]
    """A local account (no registration) of one SRTP mode: hands its INVITEs to `on_incoming(self, prm)`."""

    def __init__(self, srtp: Mode, on_incoming: Callable[[Any, Any], None]) -> None:
        super().__init__()
        self.srtp = srtp
        self._on_incoming = on_incoming

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802 (pjsua2 override)
        try:
            self._on_incoming(self, prm)
        except Exception:
            log.exception("sip.account.incoming_failed")


class Endpoint(pj.Endpoint):  # type: ignore[misc]
    """Routes each INVITE to the account of its SRTP mode; logs INVITEs pjsua refused on its own (488)."""

    def __init__(self, policy: SrtpPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.account_ids: dict[Mode, int] = {}

    def onSelectAccount(self, prm: Any) -> None:  # noqa: N802 (pjsua2 override)
        try:
            msg = str(prm.rdata.wholeMsg)
            if not msg.startswith("INVITE ") or not self.account_ids:
                return
            mode = self.policy.mode_for(str(prm.rdata.srcAddress), msg)
            prm.accountIndex = self.account_ids[mode]
        except Exception:
            log.exception("sip.account.select_failed")

    def onRejectedIncomingCall(self, prm: Any) -> None:  # noqa: N802 (pjsua2 override)
        try:
            log.info("sip.call.refused_by_stack", code=int(prm.statusCode), reason=str(prm.reason),
                     source=str(prm.rdata.srcAddress))
        except Exception:
            log.exception("sip.call.refused_log_failed")


class Stack:
    """Owns the endpoint and the account; `pump` blocks in pjsip's poll with the GIL released."""

    def __init__(self, config: StackConfig, on_incoming: Callable[[Any, Any], None]) -> None:
        self.config = config
        self.max_calls = min(config.max_calls, WHEEL_MAX_CALLS)
        if self.max_calls < config.max_calls:
            log.warning("sip.stack.max_calls_clamped", requested=config.max_calls, used=self.max_calls)
        self.ep: Any = Endpoint(config.srtp)
        with _quiet_output():
            self.ep.libCreate()  # logs a few lines at the default level before libInit can set 0
        self.accounts: dict[Mode, Account] = {}
        self.media: MediaPoller | None = None
        try:
            self.ep.libInit(self._ep_config())
            self.media = MediaPoller(self.ep.libRegisterThread)
            self.media.start()
            if not keep_calls_after_request_timeout():  # a REFER nobody answers must not end the call
                log.warning("sip.stack.refer_timeout_ends_calls")
            self.ep.audDevManager().setNullDev()
            self._codecs()
            self._transports()
            self.ep.libStart()
            for mode in MODES:
                account = Account(mode, on_incoming)
                account.create(self._account_config(mode), mode == "off")
                self.accounts[mode] = account
                self.ep.account_ids[mode] = account.getId()
        except (pj.Error, RuntimeError):  # RuntimeError: mediapoll found no pjmedia I/O queue to poll
            self.close()
            raise

    def _ep_config(self) -> Any:
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False  # media-thread callbacks are handed over by us (module docstring)
        cfg.uaConfig.maxCalls = self.max_calls
        cfg.uaConfig.userAgent = ""  # no User-Agent/Server header: nothing to fingerprint
        level = int(os.environ.get("IVR_PJSIP_LOG_LEVEL", "0") or 0)  # debugging aid; 0 in production
        cfg.logConfig.level = level
        cfg.logConfig.consoleLevel = level
        cfg.logConfig.msgLogging = int(level >= 4)
        cfg.medConfig.hasIoqueue = True  # RTP on pjmedia's own I/O queue (MediaPoller's thread), not the loop's
        cfg.medConfig.threadCnt = 1  # pjsua's minimum with hasIoqueue; MediaPoller stops it and polls instead
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        return cfg

    def _codecs(self) -> None:
        for codec in self.ep.codecEnum2():
            wanted = codec.codecId in _CODECS
            self.ep.codecSetPriority(codec.codecId, 200 - _CODECS.index(codec.codecId) if wanted else 0)

    def _transports(self) -> None:
        for kind in (pj.PJSIP_TRANSPORT_UDP, pj.PJSIP_TRANSPORT_TCP):
            tcfg = pj.TransportConfig()
            tcfg.port = self.config.sip_port
            if self.config.sip_host not in ("", "0.0.0.0"):
                tcfg.boundAddress = self.config.sip_host
            if self.config.public_host:
                tcfg.publicAddress = self.config.public_host
            self.ep.transportCreate(kind, tcfg)

    def _account_config(self, srtp: Mode) -> Any:
        cfg = pj.AccountConfig()
        host = self.config.public_host or self.config.sip_host
        user = self.config.name if srtp == "off" else f"{self.config.name}-srtp-{srtp}"
        cfg.idUri = f"sip:{user}@{host}:{self.config.sip_port}"
        cfg.regConfig.registerOnAdd = False
        media = cfg.mediaConfig.transportConfig
        media.port = self.config.rtp_port
        media.portRange = self.config.rtp_port_count
        media.boundAddress = self.config.media_address
        media.publicAddress = self.config.media_address
        cfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_OPTIONAL
        if self.config.outbound_proxy:
            cfg.sipConfig.proxies.append(self.config.outbound_proxy)
        cfg.mediaConfig.srtpUse = _SRTP_USE[srtp]
        cfg.mediaConfig.srtpSecureSignaling = 0
        keyings = pj.IntVector()
        keyings.append(pj.PJMEDIA_SRTP_KEYING_SDES)
        cfg.mediaConfig.srtpOpt.keyings = keyings
        return cfg

    def pump(self, timeout_ms: int) -> None:
        """Handle SIP/RTP events, blocking up to `timeout_ms` (a keep-alive datagram ends it early)."""
        self.ep.libHandleEvents(max(0, timeout_ms))

    def hangup_all(self) -> None:
        self.ep.hangupAllCalls()

    def close(self) -> None:
        """Release the accounts, then the library. Calls and players must be gone already."""
        for account in self.accounts.values():
            account.shutdown()
        self.accounts.clear()
        self.ep.account_ids.clear()
        if self.media is not None:
            self.media.stop()
        self.ep.libDestroy()
        self.ep = None
