"""Walks a flow: plays every distinct input class through the real `FlowSession` (ivr simulate's machinery)
and keeps one call per distinct path, with the outcome the engine itself produced.

Input classes: the callers the demo CRM knows (one per loyalty tier, with and without an account manager)
and an unknown caller; for every menu
each option, an invalid key and silence; for every gather each tier's account number, "0" when the pattern
allows it, an account nobody has, invalid digits and silence; the CRM slow (no answer inside the budget)
and down (503) for an unknown caller; each queue refusing its first REFER (603). Business hours: the flow
is also played at the first times (15-minute steps over a week) its hours steps decide differently; those
paths are marked not reachable now. A path's name carries its hours decisions right after the flow's name
(`support.open.press_1`, `support.closed.press_1`), so the same keys in two branches never share a name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ivr import democrm
from ivr.config.load import LoadedConfig
from ivr.config.steps import GatherStep, HoursStep, MenuStep
from ivr.flow.session import CallInfo
from ivr.scenarios.model import CallPath, CrmClass, ExpectedTransfer, Press
from ivr.scenarios.world import World
from ivr.sim_fixtures import TransferFixture
from ivr.simulate import Scenario, SimResult, simulate

UNKNOWN_CALLER = "+19990000000"
FRESH_PREFIX = "+1999"
"""Callers of the CRM-fault paths: this prefix plus a per-call number, which no CRM or cache knows."""
REFUSAL = 603
HOURS_STEP_S = 900
HOURS_HORIZON_S = 8 * 86400


@dataclass(frozen=True)
class Candidate:
    labels: tuple[str, ...]
    caller: str
    keys: str = ""
    crm: CrmClass = "ok"
    refused: str | None = None


def callers(loaded: LoadedConfig) -> list[tuple[str, str]]:
    """(label, number): the first demo CRM customer of each loyalty tier, then an unknown number."""
    found = [(label, customer.phones[0]) for label, customer in _classes(loaded)]
    return [*found, ("unknown", UNKNOWN_CALLER)]


def _classes(loaded: LoadedConfig) -> list[tuple[str, democrm.Customer]]:
    """The first demo CRM customer of each class: loyalty tier, with or without an account manager."""
    demo = loaded.config.demo_crm
    if not demo.enabled:
        return []
    found: dict[str, democrm.Customer] = {}
    for customer in democrm.load_customers(loaded.root / demo.customers):
        label = (customer.loyalty.tier or "no_tier") + ("_managed" if customer.account_manager else "")
        found.setdefault(label, customer)
    return list(found.items())


def _accounts(loaded: LoadedConfig) -> list[tuple[str, str]]:
    return [(label, customer.account_number) for label, customer in _classes(loaded)]


def answers(loaded: LoadedConfig, flow: str) -> list[tuple[str, str]]:
    """(label, keys) for every input step of the flow: the first press(es) a caller can make."""
    found: list[tuple[str, str]] = []
    for step in loaded.config.flows[flow].steps:
        if isinstance(step, MenuStep):
            found += [(f"press_{key}", key) for key in step.options]
            invalid = next((k for k in "9876543210*#" if k not in step.options), None)
            if invalid is not None:
                found.append(("invalid", invalid))
            found.append(("no_input", "."))
        elif isinstance(step, GatherStep):
            found += _gather_answers(loaded, step)
    return found


def _gather_answers(loaded: LoadedConfig, step: GatherStep) -> list[tuple[str, str]]:
    end = step.terminator or "."

    def ok(digits: str) -> bool:
        return step.pattern is None or re.fullmatch(step.pattern, digits) is not None

    known = {account for _, account in _accounts(loaded)}
    found = [(f"account_{tier}", account + end) for tier, account in _accounts(loaded) if ok(account)]
    if ok("0"):
        found.append(("zero", "0" + end))
    missing = next((d for d in ("999999", "99999999", "9999", "99") if ok(d) and d not in known), None)
    if missing is not None:
        found.append(("not_found", missing + end))
    invalid = next((d for d in ("12", "1", "12345678901234") if not ok(d)), None)
    if invalid is not None:
        found.append(("invalid", invalid + end))
    found.append(("no_input", "."))
    return found


def dialed_for(loaded: LoadedConfig, flow: str) -> str:
    """The shortest configured number that reaches the flow."""
    numbers = [n for n, f in loaded.config.numbers.items() if f == flow and n != "*"]
    if not numbers:
        raise ValueError(f"no number reaches flow {flow!r} (only '*'?): add one to `numbers`")
    return min(numbers, key=lambda n: (len(n), n))


class Walker:
    """Plays candidates through the engine; keeps the first candidate of each distinct path."""

    def __init__(self, loaded: LoadedConfig, flow: str, world: World, start: float) -> None:
        self.loaded, self.flow, self.world, self.start = loaded, flow, world, start
        self.dialed = dialed_for(loaded, flow)
        self.seen: set[str] = set()
        self.paths: list[CallPath] = []

    async def walk(self) -> list[CallPath]:
        for when, now in await self._times():
            for candidate in self._candidates():
                await self._try(candidate, when, now)
            refused: set[str] = set()
            for path in list(self.paths):
                first = path.transfers[0] if path.transfers else None
                if path.crm == "ok" and first is not None and path.at == when and first.queue not in refused:
                    refused.add(first.queue)
                    await self._try(self._refused(path, first.queue), when, now)
        return self.paths

    def _candidates(self) -> Iterator[Candidate]:
        flow_answers = answers(self.loaded, self.flow)
        fetches = any(s.type == "fetch" for s in self.loaded.config.flows[self.flow].steps)
        who = callers(self.loaded) if fetches else [("", UNKNOWN_CALLER)]
        for label, number in who:
            prefix = (label,) if label else ()
            for answer, keys in flow_answers:
                yield Candidate((*prefix, answer), number, keys)
            yield Candidate(prefix or ("no_input",), number)
        if fetches:
            for crm in ("slow", "down"):
                yield Candidate(("unknown", f"crm_{crm}"), FRESH_PREFIX + "0000001", crm=crm)

    async def _times(self) -> list[tuple[float, bool]]:
        """(start time, is it now): now, plus the first time each other hours decision happens."""
        steps = self.loaded.config.flows[self.flow].steps
        if not any(isinstance(s, HoursStep) for s in steps):
            return [(self.start, True)]
        hours_ids = {s.id for s in steps if isinstance(s, HoursStep)}
        found: dict[tuple[str, ...], float] = {}
        for k in range(0, HOURS_HORIZON_S // HOURS_STEP_S):
            when = self.start + k * HOURS_STEP_S
            result = await self._simulate(Candidate((), UNKNOWN_CALLER, crm="down"), when)
            signature = tuple(p for p in _steps(result) if p.split(":")[0] in hours_ids)
            found.setdefault(signature, when)
            if len(found) >= 2 ** len(hours_ids):
                break
        return [(when, when == self.start) for when in sorted(found.values())]

    async def _simulate(self, candidate: Candidate, when: float) -> SimResult:
        call = CallInfo("qa-1", candidate.caller, self.dialed, self.loaded.config.trunks[0].name, "qa-1@ivr")
        refusals = (TransferFixture(transfer=candidate.refused, result=REFUSAL),) if candidate.refused else ()
        scenario = Scenario(self.loaded.config, self.flow, call, when, candidate.keys, self.loaded.prompts_dir,
                            refusals)
        async with self.world.fetcher(candidate.crm) as fetcher:
            return await simulate(scenario, fetcher)

    async def _try(self, candidate: Candidate, when: float, now: bool) -> None:
        result = await self._simulate(candidate, when)
        if not result.completed or result.digits_unused:
            return  # keys the flow never asked for: the same path as a shorter candidate
        outcome = result.record.outcome
        key = json.dumps([candidate.crm, _steps(result), outcome.kind, outcome.reason, outcome.uri])
        if key in self.seen:
            return
        self.seen.add(key)
        self.paths.append(self._path(candidate, result, when, now))

    def _refused(self, path: CallPath, queue: str) -> Candidate:
        """The path's caller and keys again, with `queue` refusing its REFER (named after the path)."""
        branch = _branch(self.loaded, self.flow, list(path.steps))
        labels = tuple(path.name.split(".")[1 + len(branch):])
        return Candidate((*labels, f"refused_{queue}"), path.caller, path.keys, path.crm, queue)

    def _path(self, candidate: Candidate, result: SimResult, when: float, now: bool) -> CallPath:
        timeline = result.timeline
        transfers = tuple(
            ExpectedTransfer(str(e["queue"]), str(e["uri"]), tuple(sorted(dict(e["headers"]).items())),  # type: ignore[call-overload]
                             REFUSAL if e["queue"] == candidate.refused else 200, float(str(e["t"])))
            for e in timeline if e["kind"] == "transfer")
        presses = tuple(Press(str(e["digit"]), float(str(e["t"]))) for e in timeline
                        if e["kind"] == "digit" and "digit" in e)
        prompts = tuple(str(p) for e in timeline if e["kind"] == "play" for p in e["prompts"])  # type: ignore[attr-defined]
        ended = next((e for e in timeline if e["kind"] == "hangup"), timeline[-1])
        reason = str(ended.get("reason", ""))
        labels = (*_branch(self.loaded, self.flow, _steps(result)),
                  *_labels(self.loaded, self.flow, candidate, _steps(result)))
        return CallPath(
            name=".".join((self.flow, *labels)), flow=self.flow, description=_describe(candidate, result, now),
            dialed=self.dialed, caller=candidate.caller, fresh_caller=candidate.crm != "ok", crm=candidate.crm,
            keys=candidate.keys, presses=presses, transfers=transfers,
            end="transferred" if reason == "transferred" else "hangup", end_reason=reason,
            end_at=float(str(ended["t"])), steps=tuple(_steps(result)), prompts=prompts, at=when,
            reachable_now=now)


def _branch(loaded: LoadedConfig, flow: str, steps: list[str]) -> tuple[str, ...]:
    """The decisions of the flow's hours steps on this path, in order ("open", "closed")."""
    hours = {s.id for s in loaded.config.flows[flow].steps if isinstance(s, HoursStep)}
    return tuple(s.split(":", 1)[1] for s in steps if s.split(":")[0] in hours)


def _labels(loaded: LoadedConfig, flow: str, candidate: Candidate, steps: list[str]) -> tuple[str, ...]:
    """A caller who was never asked for input is named by the hours branch alone (`support.closed`)."""
    inputs = {s.id for s in loaded.config.flows[flow].steps if isinstance(s, MenuStep | GatherStep)}
    if candidate.labels[-1:] != ("no_input",) or any(s.split(":")[0] in inputs for s in steps):
        return candidate.labels
    return candidate.labels[:-1] if _branch(loaded, flow, steps) else candidate.labels


def _steps(result: SimResult) -> list[str]:
    return [str(s) for s in result.record.path]


def _describe(candidate: Candidate, result: SimResult, now: bool) -> str:
    keys = candidate.keys.replace(".", "") or "nothing"
    crm = {"ok": "", "slow": ", the CRM too slow to answer", "down": ", the CRM answering 503"}[candidate.crm]
    refused = f", queue {candidate.refused} refuses the REFER ({REFUSAL})" if candidate.refused else ""
    when = "" if now else " (at another time of day: not reachable now)"
    return (f"caller {candidate.caller} ({candidate.labels[0]}) presses {keys}{crm}{refused}{when}: "
            + " > ".join(_steps(result)))


def rename_unique(paths: list[CallPath]) -> list[CallPath]:
    """Path names are unique (a repeated one gets -2, -3...)."""
    seen: dict[str, int] = {}
    out = []
    for path in paths:
        seen[path.name] = seen.get(path.name, 0) + 1
        out.append(path if seen[path.name] == 1 else replace(path, name=f"{path.name}-{seen[path.name]}"))
    return out

