"""`ivr qa`: calls every path of the flows with SIPp against a live server and prints a verdict table.

Scenarios are generated from CONFIG (or taken from `--scenarios DIR`, as `ivr scenarios` wrote them).
Paths run `--parallel` at a time (default: half the config's sip.workers x calls_per_worker, at most 4), each
with its own SIPp process and ports; the CRM-fault paths (slow, down) switch the demo CRM's behaviour (POST
/_demo/behaviour, global) and so run last, one wave per fault class with nothing else up (ivr.scenarios.schedule),
and are skipped with "needs demo CRM control" when it does not answer. Rows keep the paths' order. SIGINT or
SIGTERM stops every SIPp child and restores the CRM's normal service (exit 130).
Paths of another time of day are reported "not reachable now". Exit status: 0 every path passed, 1 a path
failed, 2 bad arguments. Bounded: `--calls` per path (at most 1000), SIPp's own timeout per run, and a
loopback target unless `--allow-remote`.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from ivr.config.load import LoadedConfig, load_config
from ivr.errors import ConfigError
from ivr.scenarios import command as scenarios
from ivr.scenarios.children import Children, Stop, stop_on_signals
from ivr.scenarios.model import CallPath
from ivr.scenarios.ports import PortPool, Ports
from ivr.scenarios.schedule import Job, default_parallel, waves
from ivr.scenarios.slots import Slots, from_config
from ivr.scenarios.verdict import ObservedCall, judge, parse
from ivr.simulate import DEFAULT_CONFIG, parse_at

MAX_CALLS = 1000
BIND_RETRIES = 3
"""SIPp runs that could not bind a local port (taken by another process since it was found free) are started
again on other ports, this many times; no call was placed by such a run."""
CRM_FAULTS: dict[str, dict[str, object]] = {"slow": {"latency_ms": 3500.0}, "down": {"status": 503}}
SLOT_WAIT_S = 60.0
"""How long a path waits for room on the target (a call left up ends at the server's own timeouts)."""


@dataclass
class Row:
    name: str
    method: str
    expected: str
    observed: str
    verdict: str
    timing: str
    detail: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--target", required=True, metavar="HOST:PORT", help="the server's SIP address")
    parser.add_argument("--scenarios", type=Path, metavar="DIR", help="use these scenarios (ivr scenarios) "
                        "instead of generating them")
    parser.add_argument("--out", type=Path, metavar="DIR", help="keep the scenarios and SIPp logs here")
    parser.add_argument("--flow", action="append", metavar="NAME", help="a flow to test (repeatable; default all)")
    parser.add_argument("--path", action="append", metavar="GLOB", help="only paths whose name matches "
                        "(repeatable; e.g. 'vip_routing.gold*')")
    parser.add_argument("--dtmf", choices=("info", "rfc4733", "both"), default="both")
    parser.add_argument("--calls", type=int, default=1, help=f"calls per path (load run; at most {MAX_CALLS})")
    parser.add_argument("--rate", type=float, default=2.0, help="calls per second per path (default 2)")
    parser.add_argument("--parallel", type=int, metavar="N", help="paths run at once, each with its own SIPp "
                        "(default: half the config's sip.workers x calls_per_worker, at most 4)")
    parser.add_argument("--local-ip", default="127.0.0.1", help="SIPp's address (default 127.0.0.1)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a target that is not loopback")
    parser.add_argument("--crm-control", metavar="URL", help="the demo CRM's base URL for the CRM-fault paths "
                        "(default: from the config's demo_crm)")
    parser.add_argument("--admin", metavar="URL", help="the target's admin API: a path starts only when the "
                        "target has room for its calls (/healthz live calls; default: the config's admin address "
                        "for a loopback target)")
    parser.add_argument("--slot-wait", type=float, default=SLOT_WAIT_S, metavar="S", help="seconds a path waits "
                        f"for free call slots on the target before it starts anyway (default {SLOT_WAIT_S:g})")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    scenarios.add_generation_arguments(parser)


def command(args: argparse.Namespace) -> int:
    from ivr import logs

    logs.configure(level="warning", stream=sys.stderr)
    problem = _check_args(args)
    if problem:
        print(f"ivr qa: {problem}", file=sys.stderr)
        return 2
    try:
        loaded = load_config(args.config)
        directory, paths = _scenarios(args, loaded)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"ivr qa: {exc}", file=sys.stderr)
        return 2
    control = args.crm_control or _demo_url(loaded)
    if args.parallel is None:
        args.parallel = default_parallel(loaded.config.sip.workers * loaded.config.sip.calls_per_worker)
    overload = _over_capacity(paths, args, loaded)
    if overload:
        print(f"ivr qa: {overload}", file=sys.stderr)
    slots = _slots(args, loaded)
    try:
        with stop_on_signals():
            rows = run(paths, directory, args, control, slots)
    except KeyboardInterrupt:
        print("ivr qa: interrupted; every SIPp child stopped", file=sys.stderr)
        return 130
    if slots is not None and slots.waited:
        longest = max(slots.waited, key=lambda w: w[1])
        print(f"ivr qa: {len(slots.waited)} paths waited for free call slots on the target (longest "
              f"{longest[1]:.1f} s: {longest[0]})", file=sys.stderr)
    _print(rows, args.json)
    return 1 if any(r.verdict == "FAIL" for r in rows) else 0


def _check_args(args: argparse.Namespace) -> str | None:
    if shutil.which("sipp") is None:
        return "sipp is not installed (Debian package sip-tester; scripts/bootstrap installs it)"
    if not 1 <= args.calls <= MAX_CALLS or args.rate <= 0 or (args.parallel is not None and args.parallel < 1):
        return f"--calls must be 1..{MAX_CALLS}, --rate and --parallel positive"
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        return f"--target must be HOST:PORT, not {args.target!r}"
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, int(port), proto=socket.IPPROTO_UDP)}
    except OSError as exc:
        return f"--target {host}: {exc}"
    remote = [a for a in addresses if not ipaddress.ip_address(a).is_loopback]
    if remote and not args.allow_remote:
        return f"--target {args.target} is not a loopback address ({', '.join(remote)}): add --allow-remote"
    return None


def _scenarios(args: argparse.Namespace, loaded: LoadedConfig) -> tuple[Path, list[CallPath]]:
    if args.scenarios is not None:
        directory = args.scenarios
        paths, _ = scenarios.read_manifest(directory)
        paths = [p for p in paths if p.flow in set(args.flow or [p.flow for p in paths])]
    else:
        directory = args.out or Path(tempfile.mkdtemp(prefix="ivr-qa-"))
        paths = scenarios.generate(loaded, args.flow, parse_at(args.at))
        scenarios.write(paths, directory, loaded, int(args.slack * 1000))
    if args.path:
        paths = [p for p in paths if any(fnmatch.fnmatchcase(p.name, glob) for glob in args.path)]
        if not paths:
            raise ValueError(f"no path matches {' '.join(args.path)}")
    return directory, paths


def _at_once(path: CallPath, args: argparse.Namespace) -> int:
    """The calls of one path SIPp keeps up at once: --rate times the call's length, at most --calls."""
    return max(1, min(int(args.calls), int(args.rate * (path.end_at + 5))))


def _over_capacity(paths: Sequence[CallPath], args: argparse.Namespace, loaded: LoadedConfig) -> str | None:
    """A warning when the run would put up more calls at once than CONFIG's server takes (it answers 503)."""
    sip = loaded.config.sip
    capacity = sip.workers * sip.calls_per_worker
    sizes = sorted((_at_once(p, args) for p in paths if p.reachable_now), reverse=True)
    peak = sum(sizes[:args.parallel])
    if peak <= capacity:
        return None
    return (f"up to {peak} calls at once ({min(args.parallel, len(sizes))} paths at a time, --rate {args.rate:g} x "
            f"the call's length) but the config's server takes {capacity} ({sip.workers} workers x "
            f"{sip.calls_per_worker}): calls beyond that are refused with 503 and fail; lower --rate or --parallel")


def _slots(args: argparse.Namespace, loaded: LoadedConfig) -> Slots | None:
    """The target's admin API when there is one to read (ivr.scenarios.slots); else a warning."""
    port = int(args.target.rpartition(":")[2])
    slots = from_config(loaded.config, args.admin, _loopback(args.target), port, args.slot_wait)
    if slots is None:
        print("ivr qa: the target is not CONFIG's server on loopback and no --admin URL was given: paths start on "
              "--parallel alone, and a call the target still holds may get its next path a 503", file=sys.stderr)
        return None
    if slots.load() is None:
        print(f"ivr qa: the target's admin API ({slots.url}/healthz) does not answer: paths start on --parallel "
              "alone, and a call the target still holds may get its next path a 503", file=sys.stderr)
        return None
    return slots


def _loopback(target: str) -> bool:
    host = target.rpartition(":")[0]
    try:
        return all(ipaddress.ip_address(str(info[4][0])).is_loopback
                   for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP))
    except (OSError, ValueError):
        return False


def _demo_url(loaded: LoadedConfig) -> str | None:
    demo = loaded.config.demo_crm
    return f"http://{demo.host}:{demo.port}" if demo.enabled else None


def run(paths: Sequence[CallPath], directory: Path, args: argparse.Namespace, control: str | None,
        slots: Slots | None = None) -> list[Row]:
    """Every job, wave by wave (ivr.scenarios.schedule): the ordinary paths `--parallel` at a time, then each
    CRM-fault class with the demo CRM switched to it; rows in the paths' order. With `slots` (the target's admin
    API) each job starts when the target has room for its calls, and a fault wave when the target is idle.
    KeyboardInterrupt (Ctrl-C, SIGTERM) stops every SIPp child, restores the CRM's normal service and
    propagates."""
    rows: list[Row] = []
    jobs: list[Job] = []
    can_control = control is not None and _behaviour(control, {})
    ports = PortPool(args.local_ip)
    children = Children()
    for path in paths:
        for method in scenarios.variants(path):
            if args.dtmf not in ("both", method):
                continue
            job = Job(path, method, f"{path.name}.{method}.xml", f"{path.name}.csv")
            if not path.reachable_now:
                rows.append(_skip(job, "not reachable now (another time of day)"))
            elif path.crm != "ok" and not can_control:
                rows.append(_skip(job, "needs demo CRM control (POST /_demo/behaviour) on the target's CRM"))
            else:
                jobs.append(job)
    executor = ThreadPoolExecutor(max_workers=args.parallel, thread_name_prefix="ivr-qa")
    try:
        for wave in waves(jobs):
            Stop.check()
            if wave.crm != "ok":
                assert control is not None
                if slots is not None:  # the switch is global: no call left up may see it
                    slots.wait_idle(lambda: Stop.requested)
                    Stop.check()
                _behaviour(control, CRM_FAULTS[wave.crm])
            try:
                calls = args.calls if wave.crm == "ok" else 1
                futures = [executor.submit(_run_job, job, directory, args, calls, ports, children, slots)
                           for job in wave.jobs]
                rows += _results(futures)
            finally:
                if wave.crm != "ok" and control is not None:
                    _behaviour(control, {})
    except BaseException:
        children.stop()
        executor.shutdown(wait=False, cancel_futures=True)
        if control is not None and can_control:
            _behaviour(control, {})
        raise
    executor.shutdown(wait=True)
    order = {p.name: i for i, p in enumerate(paths)}
    return sorted(rows, key=lambda r: (order.get(r.name, 0), r.method))


def _results(futures: list[Future[Row]]) -> list[Row]:
    """The rows of a wave once all its jobs are done; waits in short steps so a signal is seen at once."""
    pending: set[Future[Row]] = set(futures)
    while pending:
        Stop.check()
        _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
    Stop.check()
    return [f.result() for f in futures]


def _behaviour(base_url: str, body: dict[str, object]) -> bool:
    """Set the demo CRM's behaviour ({} restores normal service); False when it does not answer."""
    request = urllib.request.Request(base_url.rstrip("/") + "/_demo/behaviour", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 (operator-given URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _skip(job: Job, why: str) -> Row:
    return Row(job.path.name, job.method, job.path.expected, "-", "SKIP", "-", why)


def _run_job(job: Job, directory: Path, args: argparse.Namespace, calls: int, pool: PortPool,
             children: Children, slots: Slots | None = None) -> Row:
    for _ in range(BIND_RETRIES):
        ports = pool.reserve()
        try:
            row, unbound = _run_sipp(job, directory, args, calls, ports, children, slots)
        finally:
            pool.release(ports)
        if not unbound:
            break
    return row


def _run_sipp(job: Job, directory: Path, args: argparse.Namespace, calls: int, ports: Ports,
              children: Children, slots: Slots | None = None) -> tuple[Row, bool]:
    """One SIPp run on `ports`, started when `slots` says the target has room: its row, and whether SIPp died
    on a local port it could not bind."""
    path = job.path
    bound = int(path.end_at + args.slack + calls / args.rate + 30)
    started: list[tuple[subprocess.Popen[str], Path, Path]] = []

    def start() -> Callable[[], bool]:
        tag = f"{path.name}.{job.method}.{int(time.time() * 1000)}"  # the start time, after any wait for slots
        log, err = directory / f"{tag}.log", directory / f"{tag}.errors"
        cmd = ["sipp", args.target, "-sf", job.xml, "-inf", job.csv, "-i", args.local_ip,
               "-p", str(ports.sip), "-mi", args.local_ip, "-mp", str(ports.media),
               "-m", str(calls), "-r", str(args.rate), "-l", str(_at_once(path, args) if calls > 1 else 1),
               "-nostdin", "-timeout", f"{bound}s", "-timeout_error", "-trace_logs", "-log_file", str(log),
               "-trace_err", "-error_file", str(err), "-cid_str", f"qa-%u-%p@{args.local_ip}"]
        proc = children.start(cmd, directory)
        started.append((proc, log, err))
        return lambda: proc.poll() is not None

    note = ""
    if slots is None:
        start()
    else:
        at_once = _at_once(path, args) if calls > 1 else 1
        _, note = slots.admit(f"{path.name} ({job.method})", at_once, start, lambda: children.stopped)
    proc, log, err = started[0]
    try:
        output, _ = proc.communicate(timeout=bound + 30)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        code, output = -1, f"sipp did not finish within {bound + 30} s"
    finally:
        children.done(proc)
    observed = parse(log.read_text(errors="replace")) if log.exists() else {}
    errors = err.read_text(errors="replace") if err.exists() else ""
    unbound = code != 0 and not observed and "Unable to bind" in output + errors
    return _row(job, code, output, observed, calls, err, note), unbound


def _row(job: Job, code: int, output: str, observed: dict[str, ObservedCall], calls: int, err: Path,
         note: str = "") -> Row:
    path = job.path
    problems = {cid: judge(path, call, job.method) for cid, call in observed.items()}
    bad = [cid for cid, found in problems.items() if found]
    missing = calls - len(observed)
    ok = code == 0 and not bad and missing <= 0
    summaries = sorted({c.summary() for c in observed.values()})
    observed_text = " | ".join(summaries) or "no call"
    if calls > 1:
        observed_text = f"{calls - len(bad) - max(missing, 0)}/{calls} ok: {observed_text}"
    detail = "; ".join(sorted({p for cid in bad for p in problems[cid]}))
    if not ok and not detail:
        detail = _sipp_reason(code, output, err)
    if not ok and note:  # started without room on the target: say so next to the failure
        detail += f" ({note})"
    return Row(path.name, job.method, path.expected, observed_text, "PASS" if ok else "FAIL",
               _timing(path, list(observed.values())), detail)


def _sipp_reason(code: int, output: str, err: Path) -> str:
    lines = err.read_text(errors="replace").splitlines() if err.exists() else []
    useful = [ln for ln in lines if ln.strip() and "jumping to label" not in ln]
    last = useful[-1] if useful else (output.strip().splitlines() or [""])[-1]
    return f"sipp exit {code}: {last.strip()[:200]}"


def _timing(path: CallPath, calls: list[ObservedCall]) -> str:
    """Answer -> first REFER (or -> BYE): the engine's seconds, then the observed median."""
    if path.transfers:
        want, got = path.transfers[0].at, [c.refer_ms() for c in calls]
        what = "refer"
    else:
        want, got = path.end_at, [c.end_ms() for c in calls]
        what = "bye"
    seen = [g for g in got if g is not None]
    median = f"{statistics.median(seen) / 1000:.1f}s" if seen else "-"
    return f"{what} {want:.1f}s/{median}"


def _print(rows: Sequence[Row], as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    header = ("path", "dtmf", "expected", "observed", "verdict", "engine/seen")
    table = [header] + [(r.name, r.method, r.expected, r.observed, r.verdict, r.timing) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for r in rows:
        if r.detail and r.verdict != "PASS":
            print(f"{r.verdict} {r.name} ({r.method}): {r.detail}")
    counts = {v: sum(1 for r in rows if r.verdict == v) for v in ("PASS", "FAIL", "SKIP")}
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
