"""Measured capacity of the real server: `ivr run` behind its Kamailio front, driven by SIPp on 127.0.0.1.

A tool people run (not a test). It writes a bench copy of config/ivr.yaml (N workers, bench ports, the
labelled bench-only hold flow), starts the real server, drives SIPp through the front and reports a table
and JSON (bench/results/*.json). Phases (--phases, default all, in this order):

  rate      highest call rate of the full flow (answer, greeting, DTMF by SIP INFO, CRM lookups, REFER,
            NOTIFY, BYE; RTP both ways) sustained for --window s with zero failed calls, by steps (--rates)
  ladder    the peer kit's call (bench/peer/ivr_uac.xml on 700: answer, prompt, one INFO digit, one HTTP lookup,
            REFER; SIPp echoes the RTP) at rising rates (--ladder-rates, up to 250 cps), --window s each, stopping
            after the first step with a failed call: CPU per call comparable with the kit's Asterisk figures
  hold      most concurrent long calls with prompts playing and RTP both ways, zero failures and no RTP loss
            (--holds levels, each held --hold-window s); memory per concurrent call
  combined  --combined-hold long media calls AND --combined-rate calls/s of the full flow for --window s
  soak      --soak-minutes at --soak-rate cps of the full flow with --soak-hold media calls held alongside;
            samples RSS/PSS per role, open fds, the live-call gauge every --soak-sample s, reports their slopes
            (least squares, per minute) and verdicts: 0 failed, every call SIPp placed recorded exactly once
  scale     per worker count (--scale-workers): start-up time, idle CPU and memory per worker, CPU per call

Latency: SIPp's own timers (-trace_rtt, 1 ms resolution): INVITE -> 200, last digit -> REFER, answer ->
REFER; plus the server's call.ended timings. CPU: utime+stime of the server's process tree from /proc.
RTP: bench/rtpmeter.py (sequence gaps, 20 ms clock deficit, inter-arrival) + kernel UDP drop counters.

    .venv/bin/python bench/capacity.py --quick                      # a few minutes, short windows
    .venv/bin/python bench/capacity.py --phases rate,combined       # the 60 s windows
    .venv/bin/python bench/capacity.py --phases scale --scale-workers 2,8,24,48,72
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import digit_latency
import drive
import report
import rig
import soak

RESULTS = Path(__file__).resolve().parent / "results"
GOLD = "sip:gold@127.0.0.1:5070"
FULL_SETS = {"caller": "+15559999999", "digits": "100002#", "expected_refer": GOLD}
"""An unknown caller: greeting (barged in), phone lookup misses, account typed, account lookup -> gold
(Alan Turing: no account manager, so the gold queue itself)."""
SIPP_FULL, SIPP_HOLD = (25010, 25020), (25011, 25040)
"""SIPp's signalling port and media port (SIPp also binds media + 2)."""
PEER_SCENARIO = Path(__file__).resolve().parent / "peer" / "ivr_uac.xml"
METER_FULL, METER_HOLD = 26000, 29000
"""RTP ports of the callers (meters): below the kernel's ephemeral range (32768+), clear of the workers' 20000+."""


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.deadline = time.monotonic() + args.max_minutes * 60
        self.results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                        "machine": machine(), "args": vars(args)}
        self._n = 0

    def out_of_time(self, need_s: float) -> bool:
        if time.monotonic() + need_s > self.deadline:
            print(f"  (skipped: --max-minutes {self.args.max_minutes} would be exceeded)", flush=True)
            return True
        return False

    def run_dir(self, name: str) -> Path:
        self._n += 1
        return self.workdir / f"{self._n:02d}-{name}"

    # --- servers ---------------------------------------------------------------------------------------

    def server(self, workers: int) -> rig.Server:
        srv = rig.Server(workers, self.run_dir(f"server-{workers}w"), front_children=self.args.front_children,
                         strict_pike=self.args.strict_pike, variant=self.args.variant)
        print(f"server: {workers} workers ...", flush=True)
        srv.start()
        print(f"server: ready in {srv.started_s:.1f} s, {len(srv.pids)} processes", flush=True)
        return srv

    def idle(self, srv: rig.Server, seconds: float) -> dict[str, Any]:
        before, load, t0 = srv.cpu(), rig.loadavg(), time.monotonic()
        time.sleep(seconds)
        after, wall = srv.cpu(), time.monotonic() - t0
        cores = {k: round((after[k] - before[k]) / wall, 4) for k in before}
        memory = srv.memory()
        by_role = rig.memory_by_role(srv.pids, srv.proc.pid if srv.proc else 0)
        workers_pss = by_role.get("workers", {}).get("pss_kb", 0)
        return {"seconds": round(wall, 1), "cores": cores, "memory": memory, "memory_by_role": by_role,
                "worker_pss_kb_each": round(workers_pss / max(1, srv.workers)),
                "processes": len(srv.pids), "workers": srv.workers, "loadavg": load,
                "per_worker_pct_core": round(100 * cores["workers"] / srv.workers, 2)}

    # --- the full flow at a rate ----------------------------------------------------------------------------

    def full_flow(self, srv: rig.Server, rate: int, seconds: float, run: Path) -> drive.Sipp:
        return drive.Sipp("full_flow.xml", run, srv.ports.sip, *SIPP_FULL,
                          rtp_ports=[], rate=rate, total=int(rate * seconds), limit=max(100, rate * 10),
                          pause_ms=self.args.greeting_ms, service=rig.FULL_NUMBER, sets=FULL_SETS,
                          timeout_s=seconds + 60)

    def peer_call(self, srv: rig.Server, rate: int, seconds: float, run: Path) -> drive.Sipp:
        """The peer kit's SIPp call, as kit/bench.py places it (pause 1000 ms, limit 3000, SIPp's RTP echo)."""
        return drive.Sipp(str(PEER_SCENARIO), run, srv.ports.sip, *SIPP_FULL, rtp_ports=[SIPP_FULL[1]],
                          rate=rate, total=int(rate * seconds), limit=3000, pause_ms=1000,
                          service=rig.PEER_NUMBER, timeout_s=seconds + 90, extra=["-rtp_echo"])

    def rate_step(self, srv: rig.Server, rate: int, idle_cores: float, *, call: str = "full",
                  digits_alongside: bool = True) -> dict[str, Any]:
        """One rate step; `--digit-rate` digit callers run alongside the full flow (not the peer call, not scale)."""
        seconds = self.args.window
        run = self.run_dir(f"{'ladder' if call == 'peer' else 'rate'}-{rate}")
        meter: drive.Meter | drive.SippEcho
        if call == "peer":
            meter = drive.SippEcho(SIPP_FULL[1])
            sipp = self.peer_call(srv, rate, seconds, run)
        else:
            meter = drive.Meter(METER_FULL, min(1400, max(200, rate * 8)), run)
            sipp = self.full_flow(srv, rate, seconds, run)
            sipp.rtp_ports = meter.ports
        digits = self.digit_callers(srv, seconds, run) if call == "full" and digits_alongside else None
        offset, load0, gen0 = srv.log_offset(), rig.loadavg(), children_cpu()
        with rig.DropWatch(self.drop_ranges(srv)) as drops:
            cpu0, th0, t0 = srv.cpu(), srv.threads(), time.monotonic()
            sipp.start()
            if digits:
                digits.start()
            profile = self.profile(srv, seconds, run) if self.args.profile else None
            wprofile = self.profile_worker(srv, seconds, run) if self.args.profile else None
            sipp.wait()
            cpu1, th1, wall = srv.cpu(), srv.threads(), time.monotonic() - t0
            profile_summary = profile.summary() if profile else None
            wprofile_summary = wprofile.summary() if wprofile else None
            if digits:
                digits.wait()
            time.sleep(1.0)
        res, rtp = sipp.result(), meter.stop()
        out = {"call": call, "rate_cps": rate, "window_s": seconds, "wall_s": round(wall, 1), "loadavg_before": load0,
               "loadavg_after": rig.loadavg(), "sipp": res, "rtp": rtp, "drops": drops.result(),
               "load_generator_cores": round((children_cpu() - gen0) / wall, 3),
               "server": drive.summarize_calls(drive.call_ended_lines(srv.log, offset)),
               "cpu": cpu_report(cpu0, cpu1, wall, idle_cores, res["successful"]),
               "worker_thread_cores": rig.thread_delta(th0, th1, wall),
               "profile": profile_summary,
               "worker_profile": wprofile_summary,
               "digits": digits.result() if digits else None}
        out["ok"] = (res["failed"] == 0 and res["successful"] == int(rate * seconds) and res["exit_code"] == 0
                     and digit_latency.calls_ok(out["digits"]))
        out["rtp_clean"] = rtp_clean(out["rtp"], out["drops"])
        return out

    # --- long calls with media -----------------------------------------------------------------------------

    def hold(self, srv: rig.Server, calls: int, plateau_s: float, run: Path, *,
             ramp: int) -> tuple[drive.Sipp, drive.Meters | drive.SippEcho]:
        sipp_echo = self.args.hold_echo == "sipp"
        meter = drive.SippEcho(SIPP_HOLD[1]) if sipp_echo else drive.Meters(METER_HOLD, calls + 20, run)
        hold_ms = int((calls / ramp + plateau_s + 3) * 1000)
        sipp = drive.Sipp("media_hold.xml", run, srv.ports.sip, *SIPP_HOLD, rtp_ports=meter.ports,
                          rate=ramp, total=calls, limit=calls, pause_ms=hold_ms, service=rig.HOLD_NUMBER,
                          sets={"caller": "+15551000001"}, timeout_s=hold_ms / 1000 + 60,
                          extra=["-rtp_echo"] if sipp_echo else []).start()
        return sipp, meter

    def hold_level(self, srv: rig.Server, calls: int, idle: dict[str, Any]) -> dict[str, Any]:
        plateau_s, ramp = self.args.hold_window, self.args.ramp
        run = self.run_dir(f"hold-{calls}")
        load0, gen0, t00 = rig.loadavg(), children_cpu(), time.monotonic()
        with rig.DropWatch(self.drop_ranges(srv)) as drops:
            sipp, meter = self.hold(srv, calls, plateau_s, run, ramp=ramp)
            time.sleep(calls / ramp + 1.5)
            live, mem = live_calls(srv), srv.memory()
            cpu0, th0, t0 = srv.cpu(), srv.threads(), time.monotonic()
            time.sleep(plateau_s)
            cpu1, th1, wall = srv.cpu(), srv.threads(), time.monotonic() - t0
            live_end = live_calls(srv)
            sipp.wait()
            time.sleep(1.0)
        res, rtp = sipp.result(), meter.stop()
        idle_mem = idle["memory"]
        out = {"calls": calls, "plateau_s": plateau_s, "live_at_plateau": live, "live_at_end": live_end,
               "loadavg_before": load0, "loadavg_after": rig.loadavg(), "sipp": res, "rtp": rtp,
               "load_generator_cores_avg": round((children_cpu() - gen0) / (time.monotonic() - t00), 3),
               "drops": drops.result(), "memory": mem,
               "memory_per_call_kb": {k: round((mem[k] - idle_mem[k]) / max(1, live), 1) for k in mem},
               "cores": {k: round((cpu1[k] - cpu0[k]) / wall, 3) for k in cpu0},
               "worker_thread_cores": rig.thread_delta(th0, th1, wall)}
        out["ok"] = res["failed"] == 0 and res["rejected"] == 0 and res["successful"] == calls
        out["rtp_clean"] = rtp_clean(out["rtp"], out["drops"])
        return out

    def combined(self, srv: rig.Server, idle_cores: float) -> dict[str, Any]:
        calls, rate, seconds, ramp = self.args.combined_hold, self.args.combined_rate, self.args.window, self.args.ramp
        run = self.run_dir(f"combined-{calls}-{rate}")
        load0, gen0, t00 = rig.loadavg(), children_cpu(), time.monotonic()
        with rig.DropWatch(self.drop_ranges(srv)) as drops:
            hold, hold_meter = self.hold(srv, calls, seconds + 5, run / "hold", ramp=ramp)
            time.sleep(calls / ramp + 1.5)
            live = live_calls(srv)
            meter = drive.Meter(METER_FULL, min(1400, max(200, rate * 8)), run)
            flow = self.full_flow(srv, rate, seconds, run / "flow")
            flow.rtp_ports = meter.ports
            digits = self.digit_callers(srv, seconds, run)
            offset, cpu0, th0, t0 = srv.log_offset(), srv.cpu(), srv.threads(), time.monotonic()
            flow.start()
            if digits:
                digits.start()
            profile = self.profile(srv, seconds, run) if self.args.profile else None
            wprofile = self.profile_worker(srv, seconds, run) if self.args.profile else None
            flow.wait()
            cpu1, th1, wall = srv.cpu(), srv.threads(), time.monotonic() - t0
            profile_summary = profile.summary() if profile else None
            wprofile_summary = wprofile.summary() if wprofile else None
            hold.wait()
            if digits:
                digits.wait()
            time.sleep(1.0)
        res, hres, rtp_flow, rtp_hold = flow.result(), hold.result(), meter.stop(), hold_meter.stop()
        out = {"hold_calls": calls, "rate_cps": rate, "window_s": seconds, "live_before_flow": live,
               "loadavg_before": load0, "loadavg_after": rig.loadavg(), "flow": res, "hold": hres,
               "rtp_flow": rtp_flow, "rtp_hold": rtp_hold, "drops": drops.result(), "hold_echo": self.args.hold_echo,
               "load_generator_cores_avg": round((children_cpu() - gen0) / (time.monotonic() - t00), 3),
               "server": drive.summarize_calls(drive.call_ended_lines(srv.log, offset)),
               "cpu": cpu_report(cpu0, cpu1, wall, idle_cores, res["successful"]),
               "worker_thread_cores": rig.thread_delta(th0, th1, wall),
               "profile": profile_summary,
               "worker_profile": wprofile_summary,
               "digits": digits.result() if digits else None}
        p99 = [t["1"]["p99"] for t in (res["timers_ms"], hres["timers_ms"]) if "1" in t and t["1"]["p99"] is not None]
        out["invite_200_p99_ms"] = max(p99) if p99 else None
        out["ok"] = (res["failed"] == 0 and res["successful"] == int(rate * seconds) and hres["failed"] == 0
                     and hres["rejected"] == 0 and hres["successful"] == calls
                and digit_latency.calls_ok(out["digits"]))
        out["rtp_clean"] = rtp_clean(out["rtp_flow"], out["drops"]) and rtp_clean(out["rtp_hold"], out["drops"])
        out["target_met"] = bool(out["ok"] and out["rtp_clean"] and out["invite_200_p99_ms"] is not None
                                 and out["invite_200_p99_ms"] < 50)
        return out

    def digit_callers(self, srv: rig.Server, seconds: float, run: Path) -> digit_latency.DigitCallers | None:
        """`--digit-rate` RFC 4733 digit callers alongside a phase's load (None without the option)."""
        rate = self.args.digit_rate
        return digit_latency.DigitCallers(srv, rate, seconds, run / "digits") if rate else None

    def soak(self, srv: rig.Server, idle_cores: float) -> dict[str, Any]:
        return soak.run(self, srv, idle_cores, meter_base=METER_FULL, cpu_report=cpu_report)

    def crm_stub(self, srv: rig.Server) -> drive.CrmStub:
        return drive.CrmStub(srv.ports.stub, self.workdir / "crm-stub")

    # --- helpers -----------------------------------------------------------------------------------------

    def drop_ranges(self, srv: rig.Server) -> dict[str, tuple[int, int]]:
        p = srv.ports
        return {"worker_rtp": (p.rtp_start, p.rtp_start + 40 * srv.workers - 1),
                "meter_rtp": (METER_FULL, METER_HOLD + 2000), "sip": (p.sip, p.worker_base + srv.workers),
                "sipp_media": (SIPP_FULL[1], SIPP_HOLD[1] + 3)}

    def profile(self, srv: rig.Server, seconds: float, run: Path) -> Profile | None:
        """py-spy on the controller for most of the window (needs py-spy in the venv; not a dependency)."""
        spy = shutil.which("py-spy") or str(rig.ROOT / ".venv" / "bin" / "py-spy")
        if not Path(spy).exists() or srv.proc is None:
            return None
        return Profile(spy, srv.proc.pid, max(2, int(seconds - 4)), run / "controller-profile.txt")

    def profile_worker(self, srv: rig.Server, seconds: float, run: Path) -> Profile | None:
        """py-spy on worker w000 (the dispatcher fills workers in list order, so it is the busiest)."""
        spy = shutil.which("py-spy") or str(rig.ROOT / ".venv" / "bin" / "py-spy")
        pid = next((p for p in srv.refresh() if b"w000" in Path(f"/proc/{p}/cmdline").read_bytes()), None)
        if not Path(spy).exists() or pid is None:
            return None
        return Profile(spy, pid, max(2, int(seconds - 4)), run / "worker-w000-profile.txt")


class Profile:
    """`py-spy record --nonblocking` of one process; `summary()` waits for it and folds the stacks."""

    RATE = 50

    def __init__(self, spy: str, pid: int, seconds: int, out: Path) -> None:
        self.out, self.seconds = out, seconds
        self.proc = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", str(self.RATE),
                                      "-f", "raw", "-o", str(out), "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def summary(self) -> dict[str, Any]:
        try:
            self.proc.wait(self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self.out.exists():
            return {"error": "no profile"}
        return report.fold_profile(self.out.read_text(errors="replace"), self.RATE * self.seconds) | {
            "raw": str(self.out)}


def children_cpu() -> float:
    """CPU seconds of this tool's reaped children: SIPp, meters, py-spy (the load generator's cost)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_report(cpu0: dict[str, float], cpu1: dict[str, float], wall: float, idle_cores: float,
               calls: int) -> dict[str, Any]:
    delta = {k: cpu1[k] - cpu0[k] for k in cpu0}
    per_call = {k: round(1000 * v / max(1, calls), 2) for k, v in delta.items()}
    net = (delta["total"] - idle_cores * wall) * 1000 / max(1, calls)
    return {"cores": {k: round(v / wall, 3) for k, v in delta.items()}, "ms_per_call": per_call,
            "ms_per_call_net_of_idle": round(net, 2)}


def rtp_clean(rtp: dict[str, Any], drops: dict[str, int]) -> bool:
    """No sequence gap, no clock deficit, no receive-buffer drop on a worker or meter RTP socket. (The kernel's
    system-wide RcvbufErrors is reported but not judged: other programs on the machine add to it.)"""
    no_drops = all(drops.get(f"{k}_socket_drops", 0) == 0 for k in ("worker_rtp", "meter_rtp", "sipp_media"))
    if "mode" in rtp:  # SIPp's echo: nothing measured but the drops
        return no_drops
    return rtp.get("lost_seq", 1) == 0 and rtp.get("deficit_time", 1) == 0 and no_drops


def live_calls(srv: rig.Server) -> int:
    try:
        with urllib.request.urlopen(f"http://{rig.HOST}:{srv.ports.admin}/healthz", timeout=2) as r:
            return int(json.load(r).get("live_calls", -1))
    except (OSError, ValueError):
        return -1


def machine() -> dict[str, Any]:
    rev = subprocess.run(["git", "-C", str(rig.ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"nproc": len(__import__("os").sched_getaffinity(0)), "loadavg": rig.loadavg(),
            "git": rev.stdout.strip(), "sipp": "3.6.1"}


def check_ports(ports: rig.Ports) -> None:
    for port, kind in ((ports.sip, socket.SOCK_DGRAM), (ports.admin, socket.SOCK_STREAM),
                       (ports.crm, socket.SOCK_STREAM), (ports.stub, socket.SOCK_STREAM),
                       (SIPP_FULL[0], socket.SOCK_DGRAM),
                       (SIPP_HOLD[0], socket.SOCK_DGRAM), (SIPP_FULL[1], socket.SOCK_DGRAM),
                       (SIPP_HOLD[1], socket.SOCK_DGRAM), (METER_FULL, socket.SOCK_DGRAM)):
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does (TIME_WAIT is fine)
            try:
                s.bind((rig.HOST, port))
            except OSError as exc:
                sys.exit(f"port {port} on {rig.HOST} is busy ({exc}): is another bench or server running?")


def main(argv: list[str] | None = None) -> int:
    args = report.parse_args(argv)
    check_ports(rig.Ports())
    workdir = Path(tempfile.mkdtemp(prefix="ivr-capacity-"))
    bench = Bench(args, workdir)
    print(f"capacity: run files in {workdir}; loadavg {rig.loadavg()}", flush=True)
    try:
        report.run_phases(bench)
    finally:
        bench.results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        bench.results["run_dir"] = str(workdir)
        RESULTS.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = Path(args.out) if args.out else RESULTS / f"capacity-{stamp}.json"
        out.write_text(json.dumps(bench.results, indent=1, default=str))
        print(report.table(bench.results))
        print(f"JSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
