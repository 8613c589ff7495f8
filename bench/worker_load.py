"""One SIP worker's cost per call and RFC 4733 digit delay, without the bench's fixed ports or lock.

The real worker process on the SIP tests' harness (tests/sip/sip_harness.py: a scripted controller on a
socketpair, the harness's last port slot), SIPp placing CALLS calls 4 at a time at 3 calls/s:
- default: answer + `welcome`, SIPp echoes the prompt's RTP (-rtp_echo) for the whole call, `100002#` as SIP
  INFO 150 ms apart, REFER, NOTIFYs, BYE (the worker's share of capacity.py's full flow; `--info-digits 1`: one
  INFO digit, the worker's share of the peer kit's call);
- `--digits`: the same with `1234#` as RFC 4733 events (SIPp play_pcap_audio, needs root), and the delay of
  each digit: (ACK seen by the worker + the digit's offset in the pcap) -> the controller's receipt, and
  the worker's own receipt (DigitReceived.received_at) -> the controller.
Prints the worker's CPU per call (utime+stime), its main thread's CPU and voluntary context switches
(wake-ups) per call, and the same per thread (main = the loop, python = the control reader, media = pjmedia's
I/O queue, clock = the conference bridge's clock); `--idle S` first measures the idle worker for S seconds.
`--spy FILE` writes a py-spy raw profile of the worker (py-spy in the venv by hand; `--native` adds C frames
but pauses the worker per sample), `--perf FILE` a `perf record -e cpu-clock -g` of it (perf on the machine).
REPO is the checkout whose worker runs (A/B: a second worktree with its own .venv):

    .venv/bin/python bench/worker_load.py /work/wt-media 60 [--digits] [--spy /tmp/w.txt]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

QUEUE = "sip:sales@127.0.0.1:5999"


def cpu_s(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_s(pid: int, tid: int) -> float:
    """A thread's time on a CPU from the scheduler (ns-exact; /proc/.../stat is sampled at clock ticks)."""
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def wakeups(pid: int, tid: int | None = None) -> int:
    with open(f"/proc/{pid}/task/{tid or pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))


def threads(pid: int) -> dict[str, tuple[float, int]]:
    """CPU seconds and voluntary context switches per thread, keyed "name/tid" (the main thread is "main")."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = "main" if int(tid) == pid else f.read().strip()
            out[f"{name}/{tid}"] = (run_s(pid, int(tid)), wakeups(pid, int(tid)))
        except (OSError, StopIteration):
            continue
    return out


def thread_split(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]], calls: int) -> str:
    total = sum(c for c, _ in after.values()) - sum(before.get(k, (0.0, 0))[0] for k in after)
    parts = [f"all {1000 * total / calls:.2f} ms"]
    for key, (cpu, vcs) in sorted(after.items()):
        c0, v0 = before.get(key, (0.0, 0))
        parts.append(f"{key.split('/')[0]} {1000 * (cpu - c0) / calls:.2f} ms {(vcs - v0) / calls:.0f} wk")
    return "per call by thread (schedstat): " + ", ".join(parts)


def event_offsets(pcap: Path) -> list[float]:
    """Seconds from the pcap's first packet to each telephone-event's first packet (marker bit)."""
    data, off, first, out = pcap.read_bytes(), 24, None, []
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        rtp = data[off + 16 + 42:off + 16 + incl]
        off += 16 + incl
        t = sec + usec / 1e6
        first = t if first is None else first
        if rtp[1] & 0x7F == 101 and rtp[1] & 0x80:
            out.append(t - first)
    return out


def quantiles(values: list[float]) -> str:
    values = sorted(values)
    at = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return f"{len(values)} digits: p50 {at(0.5):.1f} p99 {at(0.99):.1f} max {values[-1]:.1f} ms"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("repo", type=Path)
    p.add_argument("calls", type=int)
    p.add_argument("--digits", action="store_true")
    p.add_argument("--spy", default="")
    p.add_argument("--info-digits", default="100002#",
                   help="the SIP INFO digits of a call (default: the full flow's; '1': the peer kit's call)")
    p.add_argument("--idle", type=float, default=0.0, help="first measure the idle worker this many seconds")
    p.add_argument("--native", action="store_true", help="py-spy --native (C frames too; pauses the worker)")
    p.add_argument("--perf", default="", help="perf record -e cpu-clock -g of the worker into this file")
    args = p.parse_args()
    repo = args.repo.resolve()
    sys.path[:0] = [str(repo), str(repo / "tests" / "sip")]
    import sip_harness as h

    pcap = repo / "sipp-scenarios" / "pcap" / "dtmf_1234hash.pcap"
    ports = h.Ports(sip=15139, rtp=31780, sipp=15189, sipp_media=31996)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = Path(tempfile.mkdtemp(prefix="worker-load-"))
    argv = [str(repo / ".venv/bin/python"), "-m", "ivr.sip.worker", "--name", "w000", "--control-fd",
            str(theirs.fileno()), "--sip-host", h.HOST, "--sip-port", str(ports.sip), "--rtp-port", str(ports.rtp),
            "--rtp-port-count", "20", "--media-address", h.HOST, "--prompts", str(repo / "prompts"),
            "--max-calls", "4", "--log-level", "info"]
    with (tmp / "err").open("wb") as err:
        proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()], stderr=err, cwd=repo)
    theirs.close()
    ctl = h.Controller(ours, h.ivr_script(transfer_on="1234#" if args.digits else args.info_digits, uri=QUEUE))
    threading.Thread(target=ctl.run, daemon=True).start()
    if not ctl.ready.wait(20):
        proc.kill()
        return 1
    worker = h.Worker(proc, ctl, ports, tmp / "err")
    time.sleep(1)
    if args.idle:
        i0 = threads(proc.pid)
        time.sleep(args.idle)
        i1 = threads(proc.pid)
        print(f"idle {args.idle:.0f} s, per second: " + thread_split(i0, i1, max(1, int(args.idle))).split(": ", 1)[1])
    c0, m0, v0, t0 = cpu_s(proc.pid), cpu_s(proc.pid, proc.pid), wakeups(proc.pid), time.monotonic()
    th0 = threads(proc.pid)
    spy = None
    if args.spy:
        mode = ["--native"] if args.native else ["--nonblocking"]
        spy = subprocess.Popen([str(repo / ".venv/bin/py-spy"), "record", *mode, "-r", "200", "-f", "raw",
                                "-o", args.spy, "-d", str(int(args.calls / 2.5)), "-p", str(proc.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if args.perf:
        spy = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "499", "-g", "-o", args.perf,
                                "-p", str(proc.pid), "--", "sleep", str(int(args.calls / 2.5))],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scenario: list[Any] = (["dtmf_rfc4733_refer.xml", "-key", "dtmf_pcap", str(pcap)] if args.digits
                           else ["dtmf_info_refer.xml", "-set", "digits", args.info_digits, "-rtp_echo"])
    res = h.sipp(worker, scenario[0], *scenario[1:], "-set", "expected_refer", QUEUE, calls=args.calls, limit=4,
                 rate="3", timeout=args.calls + 60, check=False)
    c1, m1, v1, t1 = cpu_s(proc.pid), cpu_s(proc.pid, proc.pid), wakeups(proc.pid), time.monotonic()
    th1 = threads(proc.pid)
    if spy:
        spy.wait(60)
    done = sum(1 for e in ctl.of(h.events.TransferProgress) if e.final and e.code == 200)
    print(f"{repo}: sipp rc={res.returncode}, {done}/{args.calls} transferred in {t1 - t0:.1f} s; worker "
          f"{1000 * (c1 - c0) / args.calls:.1f} ms CPU/call, main thread {1000 * (m1 - m0) / args.calls:.1f} ms/call, "
          f"{(v1 - v0) / args.calls:.0f} wake-ups/call, {1e6 * (m1 - m0) / max(1, v1 - v0):.0f} us/wake-up; "
          f"load {os.getloadavg()[0]:.1f}")
    print(thread_split(th0, th1, args.calls))
    if args.digits:
        offsets, delays = event_offsets(pcap), []
        for call in ctl.calls():
            conn = [t for t, c, e in ctl.events if c == call and isinstance(e, h.events.CallConnected)]
            digits = [t for t, c, e in ctl.events if c == call and isinstance(e, h.events.DigitReceived)]
            if conn and len(digits) == len(offsets):
                delays += [(t - conn[0] - o) * 1000 for t, o in zip(digits, offsets, strict=True)]
        if delays:
            print(f"digit sent (ACK + pcap offset) -> controller, {quantiles(delays)}")
        wall = time.time() - time.monotonic()
        own = [(t + wall - e.received_at) * 1000 for t, _, e in ctl.events
               if isinstance(e, h.events.DigitReceived) and getattr(e, "received_at", 0)]
        if own:
            print(f"worker receipt -> controller, {quantiles(own)}")
    worker.close_control()
    proc.wait(15)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
