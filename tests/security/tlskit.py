"""TLS/SRTP test helpers: a throwaway PKI (openssl), baresip as an independent TLS+SRTP client, a tcpdump
capture of the workers' RTP ports and a reader of what it caught. Loopback only; every process is bounded
in time and stopped by the test that started it."""

from __future__ import annotations

import math
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import wave
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sippkit import SCENARIOS, free_udp_port

RTP_PCMU = 0
SRTP_TAG_80 = 10
"""Bytes of the auth tag of AES_CM_128_HMAC_SHA1_80 (RFC 4568 default suite) after the encrypted payload."""


# --- a throwaway PKI -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_key: Path
    """A valid key that belongs to no certificate here (for the mismatch check)."""
    client: Path
    """A client certificate signed by the CA, its key appended (baresip's `sip_certificate` format)."""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(directory: Path, ip: str = "127.0.0.1") -> Pki:
    """A CA and a server certificate for `ip` (IP SAN), EC P-256 keys."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ivr test CA",
             cwd=directory)
    _openssl("req", *ec, "-keyout", "front.key", "-out", "front.csr", "-subj", f"/CN={ip}", cwd=directory)
    (directory / "ext.cnf").write_text(f"subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("x509", "-req", "-in", "front.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "front.pem", "-days", "2", "-extfile", "ext.cnf", cwd=directory)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", "other.key",
             cwd=directory)
    _openssl("req", *ec, "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=trunk client", cwd=directory)
    (directory / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "client.crt", "-days", "2", "-extfile", "client.cnf", cwd=directory)
    client = directory / "client.pem"
    client.write_text((directory / "client.crt").read_text() + (directory / "client.key").read_text())
    return Pki(ca=directory / "ca.pem", cert=directory / "front.pem", key=directory / "front.key",
               other_key=directory / "other.key", client=client)


# --- baresip ---------------------------------------------------------------------------------------------

BARESIP_CONFIG = """poll_method\tepoll
net_interface\t{ip}
sip_listen\t{ip}:{port}
sip_trans_def\ttls
sip_cafile\t{ca}
audio_player\taufile,{out}
audio_source\taufile,{source}
audio_alert\taufile,/dev/null
module_path\t/usr/lib/baresip/modules
module\tstdio.so
module\tg711.so
module\taufile.so
module\tsrtp.so
module_app\taccount.so
module_app\tmenu.so
"""


def baresip_port() -> int:
    """A SIP port P for baresip with P free on UDP and TCP and P+1 free on TCP (its TLS listener)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        try:
            with socket.socket() as tls, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                    socket.socket() as tcp:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
                tls.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for baresip")


class Baresip:
    """baresip 1.0 headless: keys and /commands go to its stdin (the stdio module), `-s` traces SIP to the
    log file, which the test reads."""

    def __init__(self, workdir: Path, *, ip: str, ca: Path, source_wav: Path, mediaenc: str | None,
                 certificate: Path | None = None) -> None:
        port = baresip_port()
        self.dir = workdir / "baresip"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = BARESIP_CONFIG.format(ip=ip, port=port, ca=ca, out=self.dir / "heard.wav", source=source_wav)
        if certificate is not None:
            config += f"sip_certificate\t{certificate}\n"
        (self.dir / "config").write_text(config)
        enc = f";mediaenc={mediaenc}" if mediaenc else ""
        (self.dir / "accounts").write_text(f"<sip:caller@{ip};transport=tls>;regint=0;answermode=manual{enc}\n")
        self.log_path = self.dir / "baresip.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Baresip:
        binary = shutil.which("baresip")
        assert binary, "baresip is not installed: scripts/bootstrap installs Debian's baresip-core"
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen([binary, "-f", str(self.dir), "-s", "-t", "120"], stdin=subprocess.PIPE,
                                         stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
        self.wait_log("baresip is ready", 15)
        return self

    def type(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def dial(self, uri: str) -> None:
        self.type(f"/dial {uri}\n")

    def digit(self, key: str) -> None:
        """One DTMF key (RFC 4733 telephone-event once the call is up); stdio releases it by itself."""
        self.type(key)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float) -> re.Match[str]:
        end = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log)
            if match:
                return match
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"baresip exited ({self.proc.returncode}) before {pattern!r}:\n"
                                     f"{self.log[-3000:]}")
            if time.monotonic() > end:
                raise AssertionError(f"baresip: no {pattern!r} within {timeout:.0f}s:\n{self.log[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.type("/quit\n")
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# --- capture and analysis --------------------------------------------------------------------------------


class Capture:
    """tcpdump on lo of UDP in a port range (needs root), written to a pcap file."""

    def __init__(self, path: Path, ports: range) -> None:
        self.path = path
        self.filter = f"udp and portrange {ports.start}-{ports.stop - 1}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        binary = shutil.which("tcpdump") or "/usr/bin/tcpdump"
        err = self.path.with_suffix(".err")
        self.proc = subprocess.Popen([binary, "-i", "lo", "-U", "-n", "-s", "0", "-w", str(self.path), self.filter],
                                     stdout=subprocess.DEVNULL, stderr=err.open("wb"))
        end = time.monotonic() + 10
        while "listening on" not in err.read_text(errors="replace"):
            assert self.proc.poll() is None, f"tcpdump failed: {err.read_text(errors='replace')}"
            assert time.monotonic() < end, "tcpdump did not start listening within 10 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass(frozen=True)
class Datagram:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def read_pcap(path: Path) -> list[Datagram]:
    """IPv4 UDP datagrams of a pcap (Ethernet or Linux cooked link type)."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    link = struct.unpack(endian + "I", data[20:24])[0]
    skip = {1: 14, 113: 16, 276: 20}[link]
    out, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[pos + 8:pos + 12])[0]
        frame, pos = data[pos + 16:pos + 16 + incl], pos + 16 + incl
        ip = frame[skip:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport, length = struct.unpack("!HHH", ip[ihl:ihl + 6])
        src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        out.append(Datagram((src, sport), (dst, dport), ip[ihl + 8:ihl + length]))
    return out


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    payload: bytes
    """Everything after the fixed header and CSRCs: for SRTP, ciphertext + auth tag."""


def rtp(datagram: Datagram) -> RtpPacket | None:
    """The RTP view of a datagram, or None for RTCP and non-RTP."""
    data = datagram.payload
    if len(data) < 12 or data[0] >> 6 != 2 or 72 <= (data[1] & 0x7F) <= 76 or 200 <= data[1] <= 204:
        return None
    start = 12 + 4 * (data[0] & 0x0F)
    return RtpPacket(data[1] & 0x7F, data[start:])


def byte_entropy(chunks: list[bytes]) -> float:
    """Shannon entropy in bits per byte of all chunks together (ciphertext is ~8, PCMU audio far less)."""
    counts = Counter(b for chunk in chunks for b in chunk)
    total = sum(counts.values())
    return -sum(n / total * math.log2(n / total) for n in counts.values()) if total else 0.0


def pcmu_of_wav(path: Path) -> bytes:
    """The G.711 u-law bytes of a 16-bit mono WAV (the algorithm of pjmedia's and CPython's encoders)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    with wave.open(str(path)) as w:
        return audioop.lin2ulaw(w.readframes(w.getnframes()), 2)


def audible(payloads: list[bytes]) -> list[bytes]:
    """Payloads that are not (near) silence: more than 4 distinct byte values."""
    return [p for p in payloads if len(set(p)) > 4]


def clear_prompt_frames(payloads: list[bytes], prompt_pcmu: bytes) -> int:
    """How many 160-byte payloads appear verbatim in the prompt's u-law bytes (audio sent in clear)."""
    return sum(1 for p in audible(payloads) if len(p) == 160 and p in prompt_pcmu)


# --- what the tests share -------------------------------------------------------------------------------


def transferee(port: int, workdir: Path, calls: int = 1) -> subprocess.Popen[str]:
    """SIPp as the queue's transfer target on 127.0.0.1:port (sipp-scenarios/tls/transferee_uas.xml)."""
    binary = shutil.which("sipp")
    assert binary
    cmd = [binary, "-sf", str(SCENARIOS / "tls" / "transferee_uas.xml"), "-i", "127.0.0.1", "-p", str(port),
           "-mi", "127.0.0.1", "-mp", str(free_udp_port()), "-m", str(calls), "-timeout", "60s", "-timeout_error",
           "-nostdin", "-trace_logs", "-log_file", str(workdir / "uas.log"), "-trace_err",
           "-error_file", str(workdir / "uas.err")]
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


Pair = tuple[int, int]
"""(worker's RTP port, caller's RTP port) of one call, from its SDP offer and answer."""


def media_pair(baresip_log: str) -> Pair:
    """The RTP ports of baresip's first call: the worker's from the 200 OK's SDP, baresip's from the INVITE's."""
    offer = re.search(r"\nINVITE sip:[^\n]*\n.*?\nm=audio (\d+) ", baresip_log, re.S)
    answer = re.search(r"\nSIP/2.0 200 OK\n.*?\nm=audio (\d+) ", baresip_log, re.S)
    assert offer and answer, "no SDP offer/answer in baresip's SIP trace"
    return int(answer.group(1)), int(offer.group(1))


def flows(pcap: Path) -> dict[tuple[int, int], list[bytes]]:
    """PCMU payloads (after the RTP header) per (source port, destination port), 127.0.0.1 only. The capture
    may hold other people's RTP on lo (a shared machine): tests pick their own calls' flows."""
    out: dict[tuple[int, int], list[bytes]] = {}
    for datagram in read_pcap(pcap):
        packet = rtp(datagram)
        if packet is None or packet.payload_type != RTP_PCMU or datagram.src[0] != "127.0.0.1":
            continue
        out.setdefault((datagram.src[1], datagram.dst[1]), []).append(packet.payload)
    return out


def call_rtp(pcap: Path, pair: Pair) -> tuple[list[bytes], list[bytes]]:
    """PCMU payloads the worker sent on this call, and those it received."""
    found = flows(pcap)
    worker, caller = pair
    return found.get((worker, caller), []), found.get((caller, worker), [])


def wait_packets(pcap: Path, pairs: list[Pair], count: int) -> None:
    """Until the capture holds `count` RTP packets from the worker on every call (bounded: 20 s)."""
    end = time.monotonic() + 20
    while min(len(call_rtp(pcap, pair)[0]) for pair in pairs) < count:
        assert time.monotonic() < end, f"fewer than {count} RTP packets from the worker of some call in 20 s"
        time.sleep(0.2)


def wait_text(path: Path, text: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text(errors="replace")):
        assert time.monotonic() < end, f"no {text!r} in {path} within {timeout:.0f}s"
        time.sleep(0.1)


def handshake(port: int, ctx: ssl.SSLContext) -> tuple[str | None, str]:
    """(protocol version, cipher) of a TLS handshake with the front, or raises ssl.SSLError."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else ""


def weak_client(*, version: ssl.TLSVersion, ciphers: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.MINIMUM_SUPPORTED, version
    ctx.set_ciphers(ciphers)
    return ctx


def tls_invite(port: int, ca: Path, source: str, call_id: str) -> str:
    """One INVITE over TLS from `source` (a loopback address); the first response's status line."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        local = tls.getsockname()
        tls.sendall((f"INVITE sip:300@127.0.0.1:{port};transport=tls SIP/2.0\r\n"
                     f"Via: SIP/2.0/TLS {local[0]}:{local[1]};branch=z9hG4bK{random.getrandbits(48):x};rport\r\n"
                     f"From: <sip:probe@{source}>;tag={random.getrandbits(32):x}\r\nTo: <sip:300@127.0.0.1>\r\n"
                     f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
                     f"Contact: <sip:probe@{local[0]}:{local[1]};transport=tls>\r\nMax-Forwards: 70\r\n"
                     "X-IVR-Srtp: off\r\nContent-Length: 0\r\n\r\n").encode())
        data = b""
        while b"\r\n" not in data:
            chunk = tls.recv(4096)
            assert chunk, "the front closed the connection without an answer"
            data += chunk
        return data.split(b"\r\n", 1)[0].decode()
