"""`ivr simulate`: play one call through a flow on a virtual clock, with real or fixture HTTP and no SIP.

The simulator drives the same `FlowSession` the controller does. Time is virtual: it starts at `--at`
and jumps to the next scheduled event or the session's deadline, whichever is first. The simulated
world answers commands like this:

* `Answer` -> `CallConnected` at once.
* `Play` -> `PlaybackFinished` after the prompts' real durations (the WAV headers in the prompts
  directory; 1 s for a missing file). A looping play (filler) never finishes; `StopPlayback` cancels.
* `Fetch` -> real HTTP through `ivr.crm.HttpClient` (the built-in demo CRM is started first when
  `demo_crm.enabled`), or the first matching `--http-fixtures` entry, offline. The answer arrives
  after the request's real (or the fixture's `delay_ms`) time in virtual time.
* `Transfer` -> NOTIFY 100 (provisional) after 0.05 s and NOTIFY 200 (final) after 0.5 s, unless a
  transfer fixture says otherwise (`{transfer: gold, result: 603}` or `result: no_notify`).
* `HangUp` -> `CallEnded("local_hangup")` at once.

The caller presses keys only while the flow waits for input (a menu or gather has finished its
prompts): each `--digits` key 0.5 s after the wait began (or after the previous key). A `.` means
"press nothing during this wait", so the input timer runs out (e.g. `12.` ends a gather by the
inter-digit timeout, `.` alone makes a menu time out once).

HTTP fixture file (YAML), a list; the first entry that matches a request answers it:

    - {endpoint: crm, method: GET, path: /api/v1/customers, query: {phone: "+15551000001"},
       status: 200, body: {data: [...]}, delay_ms: 40}
    - {endpoint: crm, fail: timeout}              # or connect_error; other fields optional
    - {transfer: gold, result: 603}               # a transfer to queue gold is rejected
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import heapq
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ivr.config.model import IvrConfig
from ivr.errors import ConfigError
from ivr.flow.commands import (
    Answer,
    Bridge,
    Fetch,
    FlowCommand,
    HangUp,
    Play,
    PlayRecording,
    Reject,
    Speak,
    StartRecording,
    StopPlayback,
    StopRecording,
    Transfer,
)
from ivr.flow.events import (
    BridgeProgress,
    CallConnected,
    CallEnded,
    DigitReceived,
    FetchCompleted,
    FetchFailed,
    FlowEvent,
    PlaybackFinished,
    RecordingFinished,
    TransferProgress,
)
from ivr.flow.session import CallInfo, FlowSession
from ivr.flow.targets import QueueCursors
from ivr.prompts import prompt_path, speech_seconds, wav_seconds
from ivr.records.model import CallRecord
from ivr.sim_fixtures import Fetcher, Fixtures, TransferFixture, fixture_fetcher, load_fixtures
from ivr.sim_recorder import SimRecorder

DEFAULT_CONFIG = "config/ivr.yaml"
KEY_DELAY = 0.5
"""Seconds between the flow starting to wait for input (or the previous key) and the next key."""
MISSING_PROMPT_S = 1.0
NOTIFY_TRYING_S = 0.05
NOTIFY_FINAL_S = 0.5

# --- the simulation ------------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One simulated call."""

    config: IvrConfig
    flow: str
    call: CallInfo
    start: float
    digits: str = ""
    prompts_dir: Path = Path("prompts")
    transfers: tuple[TransferFixture, ...] = ()
    cursors: QueueCursors = field(default_factory=QueueCursors)
    """Where round robin/weighted stand and the random seed (`--ticket`, `--seed`)."""
    record_seconds: float = 5.0
    """How long the caller speaks into a record step (`--record-seconds`)."""


@dataclass
class SimResult:
    """What happened: the session's record plus the timeline."""

    completed: bool
    record: CallRecord
    timeline: list[dict[str, object]]
    digits_unused: str

    def to_json(self) -> dict[str, object]:
        record = self.record.as_dict()
        return {"completed": self.completed, "flow": record["flow"], "outcome": record["outcome"],
                "path": record["path"], "variables": record["variables"], "timeline": self.timeline,
                "digits_unused": self.digits_unused, "record": record}


@dataclass(order=True)
class _Scheduled:
    at: float
    seq: int
    event: FlowEvent = field(compare=False)


class _Simulator:
    def __init__(self, scenario: Scenario, fetcher: Fetcher) -> None:
        self.s = scenario
        self.fetcher = fetcher
        self.session = FlowSession(scenario.config, scenario.flow, scenario.call, scenario.start,
                                   scenario.cursors)
        self.queue: list[_Scheduled] = []
        self.seq = itertools.count()
        self.cancelled: set[int] = set()
        self.plays: dict[int, int] = {}
        self.timeline: list[dict[str, object]] = []
        self.keys = list(scenario.digits)
        self.key_pending = False
        self.idle = False
        self.durations: dict[str, float] = {}
        self.seen_path = 0
        self.seen_vars = self.session.variables
        self.recorder = SimRecorder(scenario.record_seconds)
        self.recording_end: dict[int, int] = {}

    async def run(self) -> SimResult:
        now = self.s.start
        limit = now + self.s.config.sip.max_call_duration + 60
        await self._execute(self.session.start(now), now)
        while not self.session.finished and now <= limit:
            deadline = self.session.deadline
            while self.queue and self.queue[0].seq in self.cancelled:
                heapq.heappop(self.queue)
            if self.queue and (deadline is None or self.queue[0].at < deadline):
                item = heapq.heappop(self.queue)
                now = max(now, item.at)
                commands = self._deliver(item.event, now)
            elif deadline is not None:
                now = max(now, deadline)
                commands = self.session.handle_timer(now)
            else:
                self._log(now, "stuck", "the flow waits for nothing (engine bug)")
                break
            self._observe(now)
            await self._execute(commands, now)
            self._observe(now)
            self._caller(now)
        return SimResult(self.session.finished, self.session.record(), self.timeline, "".join(self.keys))

    def _at(self, delay: float, now: float, event: FlowEvent) -> int:
        seq = next(self.seq)
        heapq.heappush(self.queue, _Scheduled(now + delay, seq, event))
        return seq

    def _log(self, now: float, kind: str, text: str, **extra: object) -> None:
        self.timeline.append({"t": round(now - self.s.start, 3), "kind": kind, "text": text, **extra})

    def _step_log(self, now: float, kind: str, text: str, **extra: object) -> None:
        """A command, prefixed with the step that issued it."""
        step = self.session.current_step
        self._log(now, kind, f"{step}: {text}" if step else text, step=step, **extra)

    def _deliver(self, event: FlowEvent, now: float) -> list[FlowCommand]:
        match event:
            case DigitReceived(digit=digit):
                self.key_pending = False
                shown = "*" if self.session.collecting_secret else digit
                self._log(now, "digit", f"caller presses {shown}", digit=shown)
            case FetchCompleted(status=status, elapsed_ms=ms, cached=cached):
                self._log(now, "http", f"HTTP {status} in {ms:.0f} ms{' (cached)' if cached else ''}",
                          status=status, elapsed_ms=round(ms, 1), cached=cached)
            case FetchFailed(reason=reason, elapsed_ms=ms):
                self._log(now, "http", f"HTTP failed: {reason} after {ms:.0f} ms", reason=reason,
                          elapsed_ms=round(ms, 1))
            case TransferProgress(code=code, final=final):
                self._log(now, "notify", f"transfer progress {code}{' (final)' if final else ''}", code=code,
                          final=final)
            case CallEnded(reason=reason):
                self._log(now, "ended", f"call ended ({reason})", reason=reason)
            case RecordingFinished(recording_id=rid, reason=reason, file=file, duration_s=length, voiced_s=voiced):
                self.recording_end.pop(rid, None)
                self._log(now, "recorded", f"recorded #{rid}: {file}, {length:.2f} s ({voiced:.2f} s of voice), "
                          f"ended by {reason}", recording_id=rid, file=file, duration_s=length, voiced_s=voiced,
                          reason=reason)
        return self.session.handle(event, now)

    def _observe(self, now: float) -> None:
        """Log new path entries and variable changes."""
        record = self.session.record()
        variables = self.session.variables
        changed = {k: v for k, v in variables.items() if self.seen_vars.get(k) != v}
        removed = sorted(set(self.seen_vars) - set(variables))
        if changed or removed:
            shown = dict(record.variables)
            text = ", ".join([f"{k}={shown.get(k, v)}" for k, v in changed.items()] + [f"{k} unset" for k in removed])
            self._log(now, "variables", f"set {text}", set={k: shown.get(k, v) for k, v in changed.items()},
                      unset=removed)
        path = record.path
        for entry in path[self.seen_path:]:
            self._log(now, "step", str(entry), step=str(entry))
        self.seen_path = len(path)
        self.seen_vars = variables

    async def _execute(self, commands: list[FlowCommand], now: float) -> None:
        for command in commands:
            match command:
                case Answer():
                    self._log(now, "answer", "answer")
                    self._at(0.0, now, CallConnected())
                case Play(play_id=play_id, prompts=prompts, loop=loop, lang=lang):
                    seconds = sum(self._duration(p, lang) for p in prompts)
                    how = "looping" if loop else f"{seconds:.2f} s"
                    self._step_log(now, "play", f"play {', '.join(prompts)} [{lang or '-'}] ({how})",
                                   prompts=list(prompts), play_id=play_id)
                    if not loop:
                        self.plays[play_id] = self._at(seconds, now, PlaybackFinished(play_id))
                case Speak(play_id=play_id, parts=parts, lang=lang):
                    said = " ".join(text if kind.startswith("say") else f"[{text}]" for kind, text in parts)
                    seconds = sum(speech_seconds(t) if k.startswith("say") else self._duration(t, lang)
                                  for k, t in parts)
                    self._step_log(now, "say", f"say ({lang}) \"{said}\" (~{seconds:.2f} s)", said=said, lang=lang,
                                   play_id=play_id)
                    self.plays[play_id] = self._at(seconds, now, PlaybackFinished(play_id))
                case StopPlayback(play_id=play_id):
                    self._step_log(now, "stop", f"stop playback {play_id}", play_id=play_id)
                    self.cancelled.add(self.plays.pop(play_id, -1))
                case Fetch():
                    await self._fetch(command, now)
                case Transfer(queue=queue, uri=uri, headers=headers):
                    self._step_log(now, "transfer", f"REFER to {queue} <{uri}>", queue=queue, uri=uri,
                              headers=dict(headers))
                    self._transfer(queue, uri, now)
                case Bridge(queue=queue, uri=uri, headers=headers):
                    self._step_log(now, "transfer", f"bridge to {queue} <{uri}>", queue=queue, uri=uri,
                                   headers=dict(headers))
                    self._bridge(queue, uri, now)
                case HangUp(reason=reason):
                    self._step_log(now, "hangup", f"hang up ({reason})", reason=reason)
                    self._at(0.0, now, CallEnded("local_hangup"))
                case Reject(code=code):
                    self._log(now, "reject", f"reject {code}", code=code)
                    self._at(0.0, now, CallEnded("rejected", code))
                case StartRecording() | StopRecording() | PlayRecording():
                    self._recording(command, now)

    def _recording(self, command: StartRecording | StopRecording | PlayRecording, now: float) -> None:
        match command:
            case StartRecording(recording_id=rid):
                delay, finished = self.recorder.start(command, now)
                self._step_log(now, "record", f"record #{rid}: caller speaks {self.s.record_seconds:g} s "
                               f"(max {command.max_s:g} s, stops after {command.silence_s:g} s of silence)",
                               recording_id=rid)
                self.recording_end[rid] = self._at(delay, now, finished)
            case StopRecording(recording_id=rid):
                self.cancelled.add(self.recording_end.pop(rid, -1))
                self._at(0.0, now, self.recorder.stop(rid, now))
            case PlayRecording(play_id=play_id, recording_id=rid):
                seconds = self.recorder.lengths.get(rid, 0.0)
                self._step_log(now, "play", f"play recording #{rid} ({seconds:.2f} s)", play_id=play_id)
                self.plays[play_id] = self._at(seconds, now, PlaybackFinished(play_id))

    async def _fetch(self, cmd: Fetch, now: float) -> None:
        query = "&".join(f"{k}={v}" for k, v in cmd.query)
        target = cmd.path + (("&" if "?" in cmd.path else "?") + query if query else "")
        self._step_log(now, "fetch", f"{cmd.method} {cmd.endpoint} {target} (budget {cmd.budget_s:g} s)",
                  endpoint=cmd.endpoint, method=cmd.method, path=cmd.path, query=dict(cmd.query))
        result = await self.fetcher(cmd)
        self._at(result.elapsed_ms / 1000, now, result)

    def _transfer(self, queue: str, uri: str, now: float) -> None:
        fixture = next((f for f in self.s.transfers
                        if f.transfer == queue and (f.uri is None or uri.startswith(f.uri))), None)
        result = fixture.result if fixture is not None else 200
        self._at(NOTIFY_TRYING_S, now, TransferProgress(100, False, "Trying"))
        if result != "no_notify":
            self._at(NOTIFY_FINAL_S, now, TransferProgress(result, True))

    def _bridge(self, queue: str, uri: str, now: float) -> None:
        """The target rings, then answers (or fails with the fixture's code); a bridged call then stays up."""
        fixture = next((f for f in self.s.transfers
                        if f.transfer == queue and (f.uri is None or uri.startswith(f.uri))), None)
        result = fixture.result if fixture is not None else 200
        self._at(NOTIFY_TRYING_S, now, BridgeProgress(180, False, "Ringing"))
        if result != "no_notify":
            self._at(NOTIFY_FINAL_S, now, BridgeProgress(result, True))

    def _caller(self, now: float) -> None:
        """Press the next key when the flow waits for input (see the module docstring)."""
        if not self.session.awaiting_digits:
            self.idle = False
            return
        if self.key_pending or self.idle or not self.keys:
            return
        key = self.keys.pop(0)
        if key == ".":
            self.idle = True
            self._log(now, "digit", "caller presses nothing")
            return
        self.key_pending = True
        speaking = self.recorder.active is not None and self.recorder.active in self.recording_end
        self._at(self.s.record_seconds if speaking else KEY_DELAY, now, DigitReceived(key))

    def _duration(self, prompt: str, lang: str = "") -> float:
        key = f"{lang}/{prompt}"
        if key not in self.durations:
            self.durations[key] = wav_seconds(prompt_path(self.s.prompts_dir, prompt, lang), MISSING_PROMPT_S)
        return self.durations[key]


async def simulate(scenario: Scenario, fetcher: Fetcher) -> SimResult:
    """Run one call to its end (or until max_call_duration + 60 s of virtual time)."""
    return await _Simulator(scenario, fetcher).run()


# --- the command ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--to", required=True, metavar="NUMBER", help="the dialed number (chooses the flow)")
    parser.add_argument("--from", dest="caller", required=True, metavar="CALLER", help="the caller's number")
    parser.add_argument("--digits", default="", help="keys the caller presses when asked, e.g. 100001#; "
                        "'.' lets one input wait time out")
    parser.add_argument("--at", metavar="ISO_TIME", help="virtual start time, e.g. 2026-12-24T18:30:00+01:00 "
                        "(no offset: local time; default: now)")
    parser.add_argument("--trunk", metavar="NAME", help="trunk the call comes from (default: the first)")
    parser.add_argument("--http-fixtures", metavar="FILE", type=Path, help="answer fetches (and transfers) "
                        "from this YAML file, offline")
    parser.add_argument("--ticket", type=int, default=0, metavar="N", help="the call's place in each queue's "
                        "round robin / weighted sequence (default 0: the first target)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random strategy (default 0)")
    parser.add_argument("--record-seconds", type=float, default=5.0, metavar="S", help="how long the caller "
                        "speaks into a record step before silence (or the next key, e.g. '#') (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a timeline")


def command(args: argparse.Namespace) -> int:
    """Exit status: 0 the call reached its end, 1 it did not (or the number has no flow), 2 bad input."""
    from ivr import logs
    from ivr.config.load import load_config

    logs.configure(level="warning", stream=sys.stderr)
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    try:
        start = parse_at(args.at)
        fixtures = load_fixtures(args.http_fixtures) if args.http_fixtures else None
    except ValueError as exc:
        print(f"ivr simulate: {exc}", file=sys.stderr)
        return 2
    config = loaded.config
    trunk = args.trunk or config.trunks[0].name
    if trunk not in {t.name for t in config.trunks}:
        print(f"ivr simulate: no trunk named {trunk!r}", file=sys.stderr)
        return 2
    flow = config.flow_for(args.to)
    if flow is None:
        print(f"ivr simulate: no flow for {args.to!r}: the call would be rejected with 404", file=sys.stderr)
        return 1
    call = CallInfo(call_id="sim-1", caller=args.caller, dialed=args.to, trunk=trunk, sip_call_id="sim-1@ivr")
    scenario = Scenario(config, flow, call, start, args.digits, loaded.prompts_dir,
                        fixtures.transfers if fixtures else (), QueueCursors(args.seed, args.ticket),
                        args.record_seconds)
    result = asyncio.run(_run(scenario, fixtures, loaded.root))
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print_timeline(result, scenario)
    return 0 if result.completed else 1


async def _run(scenario: Scenario, fixtures: Fixtures | None, config_dir: Path) -> SimResult:
    if fixtures is not None:
        return await simulate(scenario, fixture_fetcher(fixtures.http))
    from ivr import democrm
    from ivr.crm import HttpClient

    runner = None
    if scenario.config.demo_crm.enabled:
        try:
            runner = await democrm.start(scenario.config.demo_crm, config_dir)
        except (OSError, democrm.CustomerDataError) as exc:
            print(f"ivr simulate: demo CRM not started ({exc}); using whatever answers there", file=sys.stderr)
    try:
        async with HttpClient(scenario.config.http) as client:
            return await simulate(scenario, client.fetch)
    finally:
        if runner is not None:
            await runner.cleanup()


def parse_at(text: str | None) -> float:
    """--at as epoch seconds; an ISO time without an offset is local time."""
    if text is None:
        return time.time()
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--at: not an ISO date-time: {text!r}") from None


def print_timeline(result: SimResult, scenario: Scenario) -> None:
    call = scenario.call
    when = dt.datetime.fromtimestamp(scenario.start).astimezone().isoformat(timespec="seconds")
    print(f"call {call.caller} -> {call.dialed} via {call.trunk}: flow {scenario.flow}, at {when}")
    for entry in result.timeline:
        print(f"  t+{float(str(entry['t'])):7.2f}s  {entry['text']}")
    record = result.record
    print(f"outcome: {json.dumps(record.as_dict()['outcome'])}")
    print(f"path: {' > '.join(record.path)}")
    for attempt in record.transfers:
        print(f"transfer target: {attempt.queue} {attempt.uri or '-'} -> {attempt.result}")
    if result.digits_unused:
        print(f"digits not used: {result.digits_unused}")
    if not result.completed:
        print("the call did not reach its end", file=sys.stderr)
