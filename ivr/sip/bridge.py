"""Bridged transfer on a worker: call the queue's target (a second pjsua2 call) and join the two legs.

`Bridges.start` places the outgoing leg (`makeCall` with the queue's headers) and plays ringback to the
caller from a tone generator until the target answers; then the two calls' audio media transmit to each
other through pjsua2's conference bridge. Either side's end ends the other: the agent's BYE hangs up the
caller (end reason "agent_hangup"), the caller's end hangs up (or cancels) the agent leg. Each leg holds
one of the worker's pjsua call slots, so a leg is never attempted without a free slot (503 "no_slot").
Events go to the caller's call id: `BridgeProgress` for the leg's INVITE, `BridgeEnded` for its end.
All callbacks run on the loop thread; objects are kept until DISCONNECTED, tone generators are retired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pjsua2 as pj
import structlog

from ivr.flow import commands, events
from ivr.sip.call import IvrCall, sip_headers

log = structlog.get_logger()

RINGBACK = (440, 480, 2000, 4000)
"""North American ringback: 440+480 Hz, 2 s on, 4 s off."""


class BridgeHost(Protocol):
    """What the bridges need from their worker."""

    calls: dict[str, IvrCall]

    def emit(self, call_id: str, event: events.WorkerEvent) -> None: ...

    def retire(self, player: Any) -> None: ...

    def free_slots(self) -> int: ...

    def account(self) -> Any: ...


class AgentLeg(pj.Call):  # type: ignore[misc]
    """The outgoing call to the queue's target; its callbacks go to `Bridges`."""

    def __init__(self, account: Any, bridges: Bridges, call_id: str) -> None:
        super().__init__(account)
        self.call_id = call_id
        self._bridges = bridges

    def onCallState(self, prm: Any) -> None:  # noqa: N802 (pjsua2 override)
        try:
            self._bridges.leg_state(self.call_id)
        except Exception:
            log.exception("sip.bridge.state_failed", call=self.call_id)

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
        try:
            self._bridges.connect(self.call_id)
        except Exception:
            log.exception("sip.bridge.media_failed", call=self.call_id)


@dataclass(slots=True)
class _Bridged:
    caller: IvrCall
    leg: AgentLeg
    uri: str
    ring_by: float | None
    tone: Any = None
    sip_call_id: str = ""
    answered: bool = False
    joined: bool = False
    timed_out: bool = False
    end_reason: str = ""


class Bridges:
    """The worker's bridged calls by the caller's call id (the only strong references to the legs)."""

    def __init__(self, host: BridgeHost) -> None:
        self._host = host
        self._by_caller: dict[str, _Bridged] = {}

    def __len__(self) -> int:
        return len(self._by_caller)

    def start(self, caller: IvrCall, cmd: commands.Bridge, now: float) -> None:
        """Ring `cmd.uri` for `caller`; a failure to even start is reported as a final BridgeProgress."""
        call_id = caller.call_id
        if call_id in self._by_caller:
            self._host.emit(call_id, events.BridgeProgress(409, True, "bridge_in_progress"))
            return
        if self._host.free_slots() < 1:
            log.warning("sip.bridge.no_slot", call=call_id, queue=cmd.queue)
            self._host.emit(call_id, events.BridgeProgress(503, True, "no_slot"))
            return
        leg = AgentLeg(self._host.account(), self, call_id)
        prm = pj.CallOpParam(True)
        prm.txOption.headers = sip_headers(cmd.headers)
        try:
            leg.makeCall(cmd.uri, prm)
        except pj.Error as exc:
            log.warning("sip.bridge.call_failed", call=call_id, uri=cmd.uri, error=exc.info())
            self._host.emit(call_id, events.BridgeProgress(500, True, "make_call_failed"))
            return
        bridged = _Bridged(caller, leg, cmd.uri, now + cmd.ring_timeout)
        bridged.sip_call_id = str(leg.getInfo().callIdString)
        self._by_caller[call_id] = bridged
        log.info("sip.bridge.ringing", call=call_id, queue=cmd.queue, uri=cmd.uri, leg_call_id=bridged.sip_call_id)
        self._ringback(bridged)

    # --- leg callbacks -----------------------------------------------------------------------------

    def leg_state(self, call_id: str) -> None:
        bridged = self._by_caller.get(call_id)
        if bridged is None:
            return
        info = bridged.leg.getInfo()
        state, code = info.state, int(info.lastStatusCode)
        if state == pj.PJSIP_INV_STATE_EARLY and not bridged.answered:
            self._host.emit(call_id, events.BridgeProgress(code, False, str(info.lastReason), bridged.sip_call_id))
        elif state == pj.PJSIP_INV_STATE_CONFIRMED and not bridged.answered:
            bridged.answered = True
            bridged.ring_by = None
            self._stop_ringback(bridged)
            log.info("sip.bridge.answered", call=call_id, leg_call_id=bridged.sip_call_id)
            self._host.emit(call_id, events.BridgeProgress(200, True, "answered", bridged.sip_call_id))
            self.connect(call_id)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._leg_gone(bridged, code)

    def connect(self, call_id: str) -> None:
        """Join the answered leg and the caller both ways (once both have active audio). Called again on a
        media change of the leg (re-INVITE): connecting connected ports is a no-op in pjmedia's bridge."""
        bridged = self._by_caller.get(call_id)
        if bridged is None or not bridged.answered:
            return
        if not (_has_audio(bridged.leg) and _has_audio(bridged.caller)):
            return
        caller_media, leg_media = bridged.caller.getAudioMedia(-1), bridged.leg.getAudioMedia(-1)
        caller_media.startTransmit(leg_media)
        leg_media.startTransmit(caller_media)
        if not bridged.joined:
            bridged.joined = True
            log.info("sip.bridge.joined", call=call_id)

    def _leg_gone(self, bridged: _Bridged, code: int) -> None:
        call_id = bridged.caller.call_id
        del self._by_caller[call_id]
        self._stop_ringback(bridged)
        self._unjoin(bridged)
        if not bridged.answered:
            final = 408 if bridged.timed_out else (code if code >= 300 else 500)
            log.info("sip.bridge.failed", call=call_id, code=final, uri=bridged.uri)
            self._host.emit(call_id, events.BridgeProgress(final, True, bridged.end_reason or "failed",
                                                           bridged.sip_call_id))
            return
        reason = bridged.end_reason or "agent_hangup"
        log.info("sip.bridge.ended", call=call_id, reason=reason, code=code)
        self._host.emit(call_id, events.BridgeEnded(reason, code))
        caller = self._host.calls.get(call_id)
        if caller is not None and reason == "agent_hangup":
            caller.end_reason = caller.end_reason or "agent_hangup"
            try:
                caller.hang_up(200)
            except pj.Error as exc:  # the caller's leg is already ending
                log.warning("sip.bridge.caller_hangup_failed", call=call_id, error=exc.info())

    # --- the caller's side and the worker's loop -----------------------------------------------------

    def caller_gone(self, call_id: str) -> None:
        """The caller's leg ended: hang up (or cancel) the agent leg."""
        bridged = self._by_caller.get(call_id)
        if bridged is not None:
            self._end_leg(bridged, "caller_hangup")

    def deadlines(self) -> list[float]:
        return [b.ring_by for b in self._by_caller.values() if b.ring_by is not None]

    def fire(self, now: float) -> None:
        """Cancel legs that rang past their ring timeout (reported as 408 once DISCONNECTED)."""
        for bridged in [b for b in self._by_caller.values() if b.ring_by is not None and b.ring_by <= now]:
            bridged.ring_by = None
            bridged.timed_out = True
            log.info("sip.bridge.ring_timeout", call=bridged.caller.call_id, uri=bridged.uri)
            self._end_leg(bridged, "ring_timeout")

    def _end_leg(self, bridged: _Bridged, reason: str) -> None:
        bridged.end_reason = bridged.end_reason or reason
        self._stop_ringback(bridged)
        self._unjoin(bridged)
        try:
            bridged.leg.hangup(pj.CallOpParam())
        except pj.Error as exc:
            log.warning("sip.bridge.hangup_failed", call=bridged.caller.call_id, error=exc.info())

    def _ringback(self, bridged: _Bridged) -> None:
        """Ringback to the caller until the target answers: the caller never waits in silence."""
        if not _has_audio(bridged.caller):
            return
        tone = pj.ToneGenerator()
        try:
            tone.createToneGenerator(8000, 1)
            desc = pj.ToneDesc()
            desc.freq1, desc.freq2, desc.on_msec, desc.off_msec = RINGBACK
            tones = pj.ToneDescVector()
            tones.append(desc)
            tone.play(tones, True)
            tone.startTransmit(bridged.caller.getAudioMedia(-1))
        except pj.Error as exc:
            log.warning("sip.bridge.ringback_failed", call=bridged.caller.call_id, error=exc.info())
        bridged.tone = tone

    def _stop_ringback(self, bridged: _Bridged) -> None:
        tone, bridged.tone = bridged.tone, None
        if tone is None:
            return
        try:
            tone.stop()
            tone.stopTransmit(bridged.caller.getAudioMedia(-1))
        except pj.Error:
            pass  # the caller's media is gone, and with it the connection
        self._host.retire(tone)

    def _unjoin(self, bridged: _Bridged) -> None:
        if not bridged.joined:
            return
        bridged.joined = False
        for source, sink in ((bridged.caller, bridged.leg), (bridged.leg, bridged.caller)):
            try:
                source.getAudioMedia(-1).stopTransmit(sink.getAudioMedia(-1))
            except pj.Error:
                pass  # that side's media is already gone


def _has_audio(call: Any) -> bool:
    info = call.getInfo()  # keep it: iterating a temporary's `.media` reads freed memory (SWIG)
    for media in info.media:
        if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
            return True
    return False
