"""The worker's pure parts: INVITE parsing, the command line, the DTMF pcap generator."""

from __future__ import annotations

import importlib.util
import os
import struct
import sys
import wave
from pathlib import Path

from sip_harness import SCENARIOS

from ivr.prompts import WavLengths
from ivr.sip.sipmsg import call_offered, uri_user
from ivr.sip.worker import boot_id, parse_args


def _pcap_module():
    spec = importlib.util.spec_from_file_location("make_dtmf_pcap", SCENARIOS / "make_dtmf_pcap.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_dtmf_pcap"] = module
    spec.loader.exec_module(module)
    return module


def test_call_offered_from_an_invite():
    msg = ("INVITE sip:100@10.0.0.1:5100;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2\r\n"
           'f: "Alice" <sip:+15551234@trunk.example>;tag=1\r\ni: abc@host\r\nX-IVR-Trunk: carrier-a\r\n'
           "User-Agent: Kamailio\r\n  folded\r\nSubject: ignored\r\nContent-Length: 0\r\n\r\n")
    offer = call_offered("10.0.0.2:5060", msg)
    assert (offer.source, offer.caller, offer.dialed, offer.sip_call_id) == (
        "10.0.0.2:5060", "+15551234", "100", "abc@host")
    assert offer.headers == (("X-IVR-Trunk", "carrier-a"), ("User-Agent", "Kamailio folded"),
                             ("Subject", "ignored"))


def test_garbage_gives_empty_fields_not_exceptions():
    for junk in ("", "\x00\xff", "INVITE", "INVITE <> SIP/2.0\r\nFrom: <<<\r\n\r\n", ":" * 5000):
        offer = call_offered("", junk)
        assert offer.caller == "" and offer.dialed == ""
    assert uri_user("tel:+4930123;phone-context=x") == "+4930123"
    assert uri_user("<sip:example.com>") == ""


def test_command_line_of_the_contract():
    args = parse_args(["--name", "w000", "--control-fd", "5", "--sip-host", "127.0.0.1", "--sip-port", "5100",
                       "--rtp-port", "20000", "--rtp-port-count", "40", "--media-address", "127.0.0.1",
                       "--prompts", "prompts", "--max-calls", "4", "--public-host", "sip.example.com",
                       "--log-level", "info", "--answer-timeout", "5"])
    assert (args.name, args.control_fd, args.sip_port, args.rtp_port_count, args.public_host) == (
        "w000", 5, 5100, 40, "sip.example.com")
    assert args.answer_timeout == 5.0 and args.max_calls == 4


def test_dtmf_pcap_has_continuous_sequence_and_timestamps():
    gen = _pcap_module()
    packets = [p for _, p in gen.rtp_packets("112#")]
    seqs = [struct.unpack("!H", p[2:4])[0] for p in packets]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    starts = []
    for p in packets:
        pt, ts = p[1] & 0x7F, struct.unpack("!I", p[4:8])[0]
        if pt == gen.PT_EVENT and p[1] & 0x80:  # marker: a new event
            starts.append((p[12], ts))
    assert [e for e, _ in starts] == [1, 1, 2, 11]
    assert len({ts for _, ts in starts}) == 4  # each digit its own timestamp


def test_committed_pcaps_match_the_generator():
    gen = _pcap_module()
    for digits in ("1", "112#"):
        assert (SCENARIOS / "pcap" / gen.file_name(digits)).read_bytes() == gen.pcap_bytes(digits)


def test_recording_messages_round_trip_on_the_wire():
    from ivr.flow import commands, events
    from ivr.sip import wire

    for message in (commands.StartRecording(3, 120.0, 5.0), commands.StopRecording(3), commands.PlayRecording(7, 3),
                    events.RecordingFinished(3, "silence", "w000-1-3.wav", 9.5, 4.25)):
        assert wire.decode(wire.encode("w000-1", message)) == ("w000-1", message)


def test_boot_ids_are_short_and_follow_the_clock():
    """Call ids are `<worker>-<boot id>-<counter>`: a restarted worker (a later start) never repeats one."""
    first, later = boot_id(1_796_094_743_096_000_000), boot_id(1_796_094_743_097_000_000)
    assert first != later and len(first) == len(later) == 8 and first.isalnum()
    assert int(first, 36) == 1_796_094_743_096 and int(later, 36) == 1_796_094_743_097


def _wav(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * int(8000 * seconds))


def test_wav_lengths_are_read_once_per_version_of_a_file(tmp_path):
    lengths, prompt = WavLengths(), tmp_path / "welcome.wav"
    assert lengths.seconds(str(prompt)) is None  # missing
    assert lengths.seconds(str(tmp_path)) is None  # not a regular file
    _wav(prompt, 0.5)
    assert lengths.seconds(str(prompt)) == 0.5
    st = prompt.stat()
    prompt.write_bytes(b"RIFF" + b"\0" * (st.st_size - 4))  # same size, broken header ...
    os.utime(prompt, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the same mtime: still the same file
    assert lengths.seconds(str(prompt)) == 0.5
    _wav(prompt, 1.25)  # replaced: read again
    assert lengths.seconds(str(prompt)) == 1.25
    prompt.write_bytes(b"not a wav")
    assert lengths.seconds(str(prompt)) == 1.0  # unreadable header: the default, as wav_seconds


def test_wav_lengths_forget_everything_at_the_limit(tmp_path):
    lengths = WavLengths(limit=2)
    for i in range(3):
        _wav(tmp_path / f"{i}.wav", 0.25 * (i + 1))
        assert lengths.seconds(str(tmp_path / f"{i}.wav")) == 0.25 * (i + 1)
    assert len(lengths._known) == 1
