"""The bench's caller side: SIPp runs of sipp-scenarios/bench/*.xml and the RTP meter, and what they report.

Each run has its own directory holding SIPp's files: `stat.csv` (-trace_stat: created, successful, failed
calls), `*_rtt.csv` (-trace_rtt -rtt_freq 1: every response-time timer of every call), `*_logs.log`
(-trace_logs: "rejected CODE" lines of the hold scenario), `errors.log` (-trace_err), `sipp.out`.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "sipp-scenarios" / "bench"
HOST = "127.0.0.1"


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return {"n": len(values), "p50": round(statistics.median(values), 2), "p99": round(p99, 2),
            "max": round(values[-1], 2)}


class Meter:
    """bench/rtpmeter.py as a child: `count` echo ports from `base`; `stop()` returns its report."""

    def __init__(self, base: int, count: int, workdir: Path) -> None:
        self.base, self.count = base, count
        workdir.mkdir(parents=True, exist_ok=True)
        self.out = workdir / f"rtp-{base}.json"
        self.err = workdir / f"rtp-{base}.err"
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("rtpmeter.py")),
                                          "--base", str(base), "--count", str(count), "--out", str(self.out),
                                          "--max-seconds", "1200"], stdin=subprocess.DEVNULL, stderr=err)
        end = time.monotonic() + 10
        while b"listening" not in self.err.read_bytes():  # printed once every port is bound
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"rtpmeter did not start: {self.err.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    @property
    def ports(self) -> list[int]:
        return [self.base + 2 * i for i in range(self.count)]

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        from rig import TICK
        return (int(fields[11]) + int(fields[12])) / TICK

    def stop(self) -> dict[str, Any]:
        cpu = self.cpu_s() if self.proc.poll() is None else 0.0
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        report: dict[str, Any] = (json.loads(self.out.read_text()) if self.out.exists()
                                  else {"error": self.err.read_text(errors="replace")[-2000:]})
        report["meter_cpu_s"] = round(cpu, 2)
        return report


class Meters:
    """Several rtpmeter.py processes side by side, `per_meter` streams each (one Python process cannot echo
    400 calls' 20,000 packets/s on a busy machine: its sockets overflow); `stop()` sums their reports."""

    SUMMED = ("streams", "packets", "lost_seq", "deficit_time", "deficit_time_raw", "out_of_order",
              "streams_with_loss", "echoed", "echo_send_errors", "rtcp", "meter_cpu_s")

    def __init__(self, base: int, count: int, workdir: Path, per_meter: int = 100) -> None:
        self.meters: list[Meter] = []
        try:
            for first in range(0, count, per_meter):
                self.meters.append(Meter(base + 2 * first, min(per_meter, count - first), workdir))
        except RuntimeError:
            self.stop()
            raise

    @property
    def ports(self) -> list[int]:
        return [port for meter in self.meters for port in meter.ports]

    def stop(self) -> dict[str, Any]:
        reports = [meter.stop() for meter in self.meters]
        out: dict[str, Any] = {"meters": len(reports)}
        for key in self.SUMMED:
            out[key] = round(sum(r.get(key, 0) for r in reports), 2)
        out["max_gap_ms"] = max((r.get("max_gap_ms", 0.0) for r in reports), default=0.0)
        hist: dict[str, int] = {}
        for r in reports:
            for bucket, n in (r.get("interarrival") or {}).items():
                hist[bucket] = hist.get(bucket, 0) + n
        out["interarrival"] = hist
        worst = [w for r in reports for w in r.get("worst_streams", [])]
        out["worst_streams"] = sorted(worst, key=lambda s: (s["lost_seq"], s["deficit_time"]), reverse=True)[:5]
        errors = [r["error"] for r in reports if "error" in r]
        if errors:
            out["error"] = " | ".join(errors)
            out["lost_seq"] = out["deficit_time"] = -1  # a meter that did not report cannot count as clean
        return out


class CrmStub:
    """The peer kit's CRM stub (bench/peer/crm_stub.py) as a child on 127.0.0.1:`port`."""

    def __init__(self, port: int, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        with (workdir / "crm-stub.log").open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("peer") / "crm_stub.py"),
                                          str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        while self.hits() < 0:
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"CRM stub did not start on {HOST}:{port}")
            time.sleep(0.1)

    def hits(self) -> int:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/stats", timeout=2) as r:
                return int(r.read())
        except (OSError, ValueError):
            return -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SippEcho:
    """Instead of a meter: SIPp's own C `-rtp_echo` on its media port echoes every call's RTP (cheaper than the
    Python meter, but it measures nothing: loss is judged by the sockets' receive drops only)."""

    def __init__(self, media_port: int) -> None:
        self.media_port = media_port

    @property
    def ports(self) -> list[int]:
        return [self.media_port]

    def stop(self) -> dict[str, Any]:
        return {"mode": "sipp -rtp_echo (loss judged by socket drops only)"}


@dataclass
class Sipp:
    """One SIPp UAC run against the front."""

    scenario: str
    workdir: Path
    target_port: int
    local_port: int
    media_port: int
    rtp_ports: list[int]
    rate: float
    total: int
    limit: int
    pause_ms: int
    service: str
    sets: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 120.0
    rate_period_ms: int = 1000
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> Sipp:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = self.workdir / "rtp_ports.csv"
        ports.write_text("SEQUENTIAL\n" + "".join(f"{p};\n" for p in self.rtp_ports))
        argv = ["sipp", f"{HOST}:{self.target_port}", "-sf", str(SCENARIOS / self.scenario), "-inf", str(ports),
                "-i", HOST, "-p", str(self.local_port), "-mi", HOST, "-mp", str(self.media_port),
                "-s", self.service, "-r", f"{self.rate:g}", "-rp", str(self.rate_period_ms),
                "-m", str(self.total), "-l", str(self.limit), "-d", str(self.pause_ms),
                "-trace_stat", "-stf", str(self.workdir / "stat.csv"), "-fd", "1",
                "-trace_rtt", "-rtt_freq", "1", "-trace_logs", "-trace_err",
                "-error_file", str(self.workdir / "errors.log"),
                "-nostdin", "-timeout", f"{int(self.timeout_s)}s", "-timeout_error"]
        for key, value in self.sets.items():
            argv += ["-set", key, value]
        argv += self.extra
        (self.workdir / "argv.txt").write_text(" ".join(argv) + "\n")
        self.started = time.monotonic()
        with (self.workdir / "sipp.out").open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout if timeout is not None else self.timeout_s + 30)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def created(self) -> int:
        """Calls placed so far (SIPp rewrites its stat file every second with -fd 1)."""
        return int(_last_row(self.workdir / "stat.csv").get("TotalCallCreated", 0) or 0)

    def call_ids(self) -> set[str]:
        """The Call-IDs of every call this run placed: SIPp numbers them `<call number>-<its pid>@<local ip>`."""
        assert self.proc is not None
        created = int(_last_row(self.workdir / "stat.csv").get("TotalCallCreated", 0) or 0)
        return {f"{n}-{self.proc.pid}@{HOST}" for n in range(1, created + 1)}

    def result(self) -> dict[str, Any]:
        """Calls created/successful/failed, rejections, timers' p50/p99 (ms), the first error lines."""
        stats = _last_row(self.workdir / "stat.csv")
        rtd: dict[str, list[float]] = {}
        for path in self.workdir.glob("*_rtt.csv"):
            with path.open() as f:
                for row in csv.reader(f, delimiter=";"):
                    if len(row) >= 3 and row[1].replace(".", "", 1).isdigit():
                        rtd.setdefault(row[2].strip(), []).append(float(row[1]))
        rejected = answered = 0
        for path in self.workdir.glob("*_logs.log"):
            text = path.read_text(errors="replace")
            rejected += text.count(" rejected ")
            answered += text.count(" answered")
        kinds, errors = failure_kinds(self.workdir / "errors.log")
        return {
            "exit_code": None if self.proc is None else self.proc.returncode,
            "created": int(stats.get("TotalCallCreated", 0) or 0),
            "successful": int(stats.get("SuccessfulCall(C)", 0) or 0),
            "failed": int(stats.get("FailedCall(C)", 0) or 0),
            "rejected": rejected,
            "answered_logged": answered,
            "timers_ms": {name: percentiles(v) for name, v in sorted(rtd.items())},
            "failure_kinds": kinds,
            "errors_head": errors,
        }


_ABORT = re.compile(r"Aborting call on unexpected message for Call-Id '[^']*': "
                    r"while (\w+(?: '[^']*')?) \(index (\d+)\), "
                    r"received '([^\r\n]*)[\s\S]*?CSeq: *\d+ (\w+)")


def failure_kinds(path: Path) -> tuple[dict[str, int], str]:
    """Why SIPp aborted calls: "while <state> (index N): <first line> [CSeq method]" -> count; and the first
    other error lines (a receive timeout that jumps to a label is a scenario's wait, not an error)."""
    if not path.exists():
        return {}, ""
    text = path.read_text(errors="replace")
    kinds: dict[str, int] = {}
    for m in _ABORT.finditer(text):
        key = f"while {m.group(1)} (index {m.group(2)}): {m.group(3)[:40]} [{m.group(4)}]"
        kinds[key] = kinds.get(key, 0) + 1
    others = [line for line in re.split(r"(?=\d{4}-\d\d-\d\d\t)", text)
              if line.strip() and "jumping to label" not in line and "Aborting call" not in line]
    return kinds, "".join(x[:400] for x in others[:6])


def _last_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.reader(f, delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def call_ended_lines(log: Path, offset: int) -> list[dict[str, Any]]:
    """The server's `call.ended` lines written after byte `offset` of its log."""
    out = []
    with log.open("rb") as f:
        f.seek(offset)
        for raw in f:
            if b'"call.ended"' not in raw:
                continue
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out


def summarize_calls(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Outcomes and the server's own timings (answer_ms = offered -> ACK seen, to_transfer_ms = ACK -> REFER
    sent) and CRM fetch times, from call.ended lines."""
    outcomes: dict[str, int] = {}
    timings: dict[str, list[float]] = {}
    fetch_ms: list[float] = []
    for line in lines:
        outcome = line.get("outcome") or {}
        key = "transfer:" + str(outcome["transfer"].get("queue")) if "transfer" in outcome else f"hangup:{outcome}"
        key += f"/{line.get('end_reason')}"
        outcomes[key] = outcomes.get(key, 0) + 1
        for name, value in (line.get("timings") or {}).items():
            if value is not None:  # a call that never reached that point (no answer, no REFER) has no timing
                timings.setdefault(name, []).append(float(value))
        for fetch in line.get("fetches") or []:
            if "elapsed_ms" in fetch:
                fetch_ms.append(float(fetch["elapsed_ms"]))
    return {"calls": len(lines), "outcomes": outcomes,
            "timings_ms": {k: percentiles(v) for k, v in sorted(timings.items())
                           if k in ("answer_ms", "to_transfer_ms", "transfer_ms", "duration_ms")},
            "fetch_ms": percentiles(fetch_ms)}
