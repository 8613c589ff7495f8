"""Cross-checks of a validated config: references, prompt files, variables, flow graphs, ports, secrets."""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.config.check_files import demo_crm_file, prompt_files, tls_files
from ivr.config.check_logic import called_flows, logic_issues
from ivr.config.check_queues import queue_issues
from ivr.config.check_speech import speech_issues
from ivr.config.logic_steps import CallStep, CounterStep, ReturnStep
from ivr.config.model import IvrConfig
from ivr.config.record_steps import RecordStep
from ivr.config.speech import SayStep
from ivr.config.steps import (
    BranchStep,
    FetchStep,
    GatherStep,
    GotoStep,
    HangupStep,
    HoursStep,
    MenuStep,
    PlayStep,
    SetStep,
    Step,
    TransferStep,
)
from ivr.config.tls_check import transport_problems
from ivr.errors import Issue

if TYPE_CHECKING:
    from ivr.config.load import Source, YamlPath

BUILTIN_VARIABLES = ("caller", "dialed", "trunk", "call_id", "last_error")
_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*\}\}")  # as ivr.flow.template
_SECRET_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "x-auth-token"}
Node = tuple[str, int]  # (flow, step index)
_Check = Callable[["_Ctx"], None]


def check_config(config: IvrConfig, source: Source, *, root: Path, prompts_dir: Path,
                 check_files: bool = True) -> list[Issue]:
    """Every cross-reference problem of `config` at once: errors, then warnings (see the module doc)."""
    ctx = _Ctx(config, source)
    checks: list[_Check] = [_step_refs, _config_refs, _variables, _reachability, _loops, _trunks, _ports, _queues,
              _logic, _unused_endpoints, _secrets, _holidays, _transports, _records, _speech]
    if check_files:
        checks += [prompt_files(prompts_dir), demo_crm_file(root), tls_files(root)]
    for check in checks:
        check(ctx)
    return ctx.issues


@dataclass
class _Ctx:
    config: IvrConfig
    source: Source

    def __post_init__(self) -> None:
        self.issues: list[Issue] = []
        self.index = {name: _first_index(flow.steps) for name, flow in self.config.flows.items()}

    def error(self, path: YamlPath, message: str) -> None:
        self.issues.append(self.source.issue(path, message))

    def warn(self, path: YamlPath, message: str) -> None:
        self.issues.append(self.source.issue(path, message, "warning"))

    def steps(self) -> Iterator[tuple[str, int, Step, YamlPath]]:
        for name, flow in self.config.flows.items():
            for i, step in enumerate(flow.steps):
                yield name, i, step, ("flows", name, "steps", i)


def _first_index(steps: tuple[Step, ...]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        index.setdefault(step.id, i)
    return index


# --- the flow graph -----------------------------------------------------------------------------------


def step_targets(step: Step) -> list[tuple[YamlPath, str]]:
    """The step ids a step names, each with its path relative to the step."""
    refs: list[tuple[YamlPath, str | None]]
    match step:
        case PlayStep() | SetStep() | SayStep():
            refs = [(("next",), step.next)]
        case GatherStep():
            refs = [(("next",), step.next), (("on_exhausted",), step.on_exhausted)]
        case FetchStep():
            refs = [(("next",), step.next), (("on_error",), step.on_error)]
        case MenuStep():
            refs = [(("options", d), t) for d, t in step.options.items()] + [(("on_exhausted",), step.on_exhausted)]
        case BranchStep():
            refs = [(("cases", i, "goto"), c.goto) for i, c in enumerate(step.cases)] + [(("default",), step.default)]
        case HoursStep():
            refs = [(("open",), step.open), (("closed",), step.closed)]
        case TransferStep():
            refs = [(("on_fail",), step.on_fail)]
        case GotoStep():
            refs = [(("step",), step.step)]
        case CounterStep():
            refs = [(("next",), step.next), (("on_limit",), step.on_limit)]
        case CallStep():
            refs = [(("next",), step.next)]
        case RecordStep():
            refs = [(("next",), step.next), (("on_empty",), step.on_empty)]
        case HangupStep() | ReturnStep():
            refs = []
    return [(path, target) for path, target in refs if target is not None]


def falls_through(step: Step) -> bool:
    """The step continues with the following step in the list when it has no `next`."""
    return isinstance(step, PlayStep | SetStep | GatherStep | FetchStep | SayStep | CounterStep | CallStep
                                | RecordStep) and step.next is None


def _successors(ctx: _Ctx, node: Node) -> list[Node]:
    flow, i = node
    steps = ctx.config.flows[flow].steps
    step = steps[i]
    out = [(flow, ctx.index[flow][t]) for _, t in step_targets(step) if t in ctx.index[flow]]
    if falls_through(step) and i + 1 < len(steps):
        out.append((flow, i + 1))
    if isinstance(step, GotoStep | CallStep) and step.flow in ctx.config.flows:
        out.append((step.flow, 0))
    out += [(flow, ctx.index[flow][t]) for t in ctx.config.flows[flow].hotkeys.values() if t in ctx.index[flow]]
    return out


def _reach(ctx: _Ctx, start: Node, allowed: set[Node] | None = None, same_flow: bool = True) -> set[Node]:
    seen: set[Node] = set()
    todo = [start]
    while todo:
        for nxt in _successors(ctx, todo.pop()):
            if nxt not in seen and (not same_flow or nxt[0] == start[0]) and (allowed is None or nxt in allowed):
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --- the checks -------------------------------------------------------------------------------------------


def _step_refs(ctx: _Ctx) -> None:
    for flow, i, step, path in ctx.steps():
        if ctx.index[flow][step.id] != i:
            first = ctx.source.line(("flows", flow, "steps", ctx.index[flow][step.id]))
            ctx.error(path + ("id",), f"duplicate step id '{step.id}' in flow '{flow}' (first at line {first})")
        for rel, target in step_targets(step):
            if target not in ctx.index[flow]:
                ctx.error(path + rel, f"unknown step '{target}' in flow '{flow}'")
        if isinstance(step, GotoStep | CallStep) and step.flow is not None and step.flow not in ctx.config.flows:
            ctx.error(path + ("flow",), f"unknown flow '{step.flow}'{_known(ctx.config.flows)}")


def _known(names: Iterable[str]) -> str:
    listed = ", ".join(sorted(names))
    return f" (known: {listed})" if listed else " (none defined)"


def _config_refs(ctx: _Ctx) -> None:
    config = ctx.config
    for number, flow in config.numbers.items():
        if flow not in config.flows:
            ctx.error(("numbers", number), f"number '{number}' routes to unknown flow '{flow}'{_known(config.flows)}")
    for _, _, step, path in ctx.steps():
        match step:
            case FetchStep() if step.endpoint not in config.http:
                ctx.error(path + ("endpoint",), f"unknown http endpoint '{step.endpoint}'{_known(config.http)}")
            case TransferStep() if step.queue not in config.queues:
                ctx.error(path + ("queue",), f"unknown queue '{step.queue}'{_known(config.queues)}")
            case HoursStep() if step.schedule not in config.schedules:
                ctx.error(path + ("schedule",), f"unknown schedule '{step.schedule}'{_known(config.schedules)}")
            case FetchStep():
                for i, var in enumerate(step.required):
                    if var not in step.map:
                        ctx.error(path + ("required", i), f"required variable '{var}' is not set by this step's map")
    used = {step.flow for _, _, step, _ in ctx.steps() if isinstance(step, GotoStep | CallStep)}
    used |= set(config.numbers.values())
    for name in config.flows:
        if name not in used:
            ctx.warn(("flows", name), f"flow '{name}' is not used by any number or goto step")


def _templates(ctx: _Ctx) -> Iterator[tuple[YamlPath, str]]:
    """Every template string of the config with its path."""
    for _, _, step, path in ctx.steps():
        if isinstance(step, FetchStep):
            yield path + ("path",), step.path
            for key in ("query", "headers"):
                yield from ((path + (key, k), v) for k, v in getattr(step, key).items())
            yield from _leaves(step.body, path + ("body",))
        elif isinstance(step, SetStep):
            yield from ((path + ("values", k), v) for k, v in step.values.items())
        elif isinstance(step, TransferStep) and step.target is not None:
            yield path + ("target",), step.target
    for name, queue in ctx.config.queues.items():
        yield from ((("queues", name, "headers", k), v) for k, v in queue.headers.items())
        yield from ((("queues", name, "uri_params", k), v) for k, v in queue.uri_params.items())


def _leaves(value: object, path: YamlPath) -> Iterator[tuple[YamlPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, path + (i,))


def set_variables(config: IvrConfig) -> set[str]:
    """Variables some step sets, plus the built-ins."""
    names = set(BUILTIN_VARIABLES)
    for flow in config.flows.values():
        for step in flow.steps:
            match step:
                case SetStep():
                    names |= set(step.values)
                case FetchStep():
                    names |= set(step.map)
                case GatherStep() | MenuStep() if step.variable:
                    names.add(step.variable)
                case CounterStep():
                    names.add(step.var)
                case HoursStep():
                    names |= {"opens_time", "opens_day", "opens_date"}
    return names


def _variables(ctx: _Ctx) -> None:
    known = set_variables(ctx.config)
    hint = "not a built-in, and no set, gather, menu or fetch map sets it"
    for path, template in _templates(ctx):
        for var in dict.fromkeys(_TEMPLATE.findall(template)):
            if var not in known:
                ctx.warn(path, f"template variable '{var}' is never set ({hint})")
    for _, _, step, path in ctx.steps():
        if isinstance(step, BranchStep):
            for i, case in enumerate(step.cases):
                conditions = case.when if isinstance(case.when, tuple) else (case.when,)
                for j, cond in enumerate(conditions):
                    where = path + ("cases", i, "when") + ((j,) if isinstance(case.when, tuple) else ()) + ("var",)
                    if cond.var is not None and cond.var not in known:
                        ctx.warn(where, f"variable '{cond.var}' is never set ({hint})")


def _speech(ctx: _Ctx) -> None:
    for path, message, severity in speech_issues(ctx.config, set_variables(ctx.config)):
        (ctx.error if severity == "error" else ctx.warn)(path, message)


def _reachability(ctx: _Ctx) -> None:
    for name, flow in ctx.config.flows.items():
        reached = _reach(ctx, (name, 0)) | {(name, 0)}
        for i, step in enumerate(flow.steps):
            if (name, i) not in reached:
                ctx.warn(("flows", name, "steps", i), f"step '{step.id}' is unreachable")
        last = len(flow.steps) - 1
        if (name, last) in reached and falls_through(flow.steps[last]) and name not in called_flows(ctx.config):
            ctx.warn(("flows", name, "steps", last),
                     "the flow ends without transfer or hang-up; the call would be hung up (flow_end)")


_NON_WAITING = GotoStep | BranchStep | SetStep | HoursStep | CounterStep | CallStep


def _loops(ctx: _Ctx) -> None:
    """Loops made only of steps that never wait: an error with no way out, a warning with a conditional exit."""
    nodes = {(f, i) for f, i, step, _ in ctx.steps() if isinstance(step, _NON_WAITING)}
    reach = {n: _reach(ctx, n, nodes, same_flow=False) for n in nodes}
    done: set[Node] = set()
    for node in sorted(n for n in nodes if n in reach[n]):
        if node in done:
            continue
        loop = sorted(m for m in reach[node] if node in reach[m])
        done |= set(loop)
        exits = any(s not in loop for m in loop for s in _successors(ctx, m))
        names = " -> ".join(_node_name(ctx, m, node[0]) for m in loop)
        path = ("flows", node[0], "steps", node[1])
        if exits:
            ctx.warn(path, f"steps {names} can loop without waiting for the caller (only a condition breaks out)")
        else:
            ctx.error(path, f"goto cycle {names} never waits for the caller: the call would loop forever")


def _node_name(ctx: _Ctx, node: Node, home: str) -> str:
    step_id = ctx.config.flows[node[0]].steps[node[1]].id
    return step_id if node[0] == home else f"{node[0]}.{step_id}"


def _trunks(ctx: _Ctx) -> None:
    seen: list[tuple[str, str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for t, trunk in enumerate(ctx.config.trunks):
        for s, text in enumerate(trunk.sources):
            net = ipaddress.ip_network(text, strict=False)
            for other, other_text, other_net in seen:
                if other != trunk.name and net.version == other_net.version and net.overlaps(other_net):
                    ctx.warn(("trunks", t, "sources", s), f"{text} overlaps {other_text} of trunk '{other}': "
                             "calls from there match both trunks")
            seen.append((trunk.name, text, net))
        if trunk.registration is not None and not _has_front(ctx.config):
            ctx.error(("trunks", t, "registration"), "a registration trunk needs the Kamailio front (it registers "
                      "through Kamailio's uac module): set sip.workers above 1 or front.mode managed/external")
        wildcard = ctx.config.sip.listen_host in ("0.0.0.0", "::")
        if trunk.registration is not None and trunk.registration.contact is None and wildcard:
            ctx.error(("trunks", t, "registration"), f"the registered Contact would be {ctx.config.sip.listen_host}: "
                      "set registration.contact to the address the provider sends to")


def _has_front(config: IvrConfig) -> bool:
    mode = config.front.mode
    return mode in ("managed", "external") or (mode == "auto" and config.sip.workers > 1)


def _ports(ctx: _Ctx) -> None:
    sip, both = ctx.config.sip, {"udp", "tcp"}
    spans = [("the public SIP port", ("sip", "listen_port"), range(sip.listen_port, sip.listen_port + 1), both)]
    if sip.workers > 1:
        spans.append(("the worker SIP ports", ("sip", "worker_base_port"),
                      range(sip.worker_base_port, sip.worker_base_port + sip.workers), both))
    rtp_end = sip.rtp_port_start + sip.workers * sip.rtp_ports_per_worker
    spans.append(("the RTP ports", ("sip", "rtp_port_start"), range(sip.rtp_port_start, rtp_end), {"udp"}))
    for name, section in (("admin", ctx.config.admin), ("demo CRM", ctx.config.demo_crm)):
        if section.enabled:
            spans.append((f"the {name} port", (name.replace(" ", "_").lower(), "port"),
                          range(section.port, section.port + 1), {"tcp"}))
    for (name_a, _, a, proto_a), (name_b, path_b, b, proto_b) in itertools.combinations(spans, 2):
        if a.start < b.stop and b.start < a.stop and proto_a & proto_b:
            verb = "overlaps" if len(b) == 1 else "overlap"
            ctx.error(path_b, f"{name_b} {_span(b)} {verb} {name_a} {_span(a)}")


def _transports(ctx: _Ctx) -> None:
    for path, message, severity in transport_problems(ctx.config):
        (ctx.error if severity == "error" else ctx.warn)(path, message)


def _span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}" if len(ports) > 1 else str(ports.start)


def _queues(ctx: _Ctx) -> None:
    for path, message, severity in queue_issues(ctx.config):
        (ctx.error if severity == "error" else ctx.warn)(path, message)


def _logic(ctx: _Ctx) -> None:
    for path, message, severity in logic_issues(ctx.config):
        (ctx.error if severity == "error" else ctx.warn)(path, message)


def _unused_endpoints(ctx: _Ctx) -> None:
    used = {step.endpoint for _, _, step, _ in ctx.steps() if isinstance(step, FetchStep)}
    for name in ctx.config.http:
        if name not in used:
            ctx.warn(("http", name), f"http endpoint '{name}' is not used by any fetch step")


def _secrets(ctx: _Ctx) -> None:
    env = ctx.source.from_env
    for t, trunk in enumerate(ctx.config.trunks):
        path: YamlPath = ("trunks", t, "registration", "password")
        if trunk.registration is not None and path not in env:
            ctx.warn(path, "password written in plain text: take it from the environment, e.g. ${TRUNK_PASSWORD}")
    for name, endpoint in ctx.config.http.items():
        for header in endpoint.headers:
            path = ("http", name, "headers", header)
            if header.lower() in _SECRET_HEADERS and path not in env:
                ctx.warn(path, f"{header} written in plain text: take it from the environment, e.g. ${{CRM_TOKEN}}")


def _records(ctx: _Ctx) -> None:
    records = ctx.config.records
    dsn = records.dsn or ""
    if re.search(r"://[^/@:]*:[^/@]+@|\bpassword\s*=", dsn) and ("records", "dsn") not in ctx.source.from_env:
        ctx.warn(("records", "dsn"), "password in the DSN: use ~/.pgpass, PGPASSWORD or ${ENV} instead")
    for w, webhook in enumerate(records.webhooks):
        for i, flow in enumerate(webhook.flows):
            if flow not in ctx.config.flows:
                ctx.error(("records", "webhooks", w, "flows", i), f"unknown flow '{flow}'{_known(ctx.config.flows)}")


def _holidays(ctx: _Ctx) -> None:
    import holidays

    for name, schedule in ctx.config.schedules.items():
        cal = schedule.holidays
        if cal is None:
            continue
        try:
            holidays.country_holidays(cal.country, subdiv=cal.subdivision)
        except NotImplementedError:
            where = "subdivision" if cal.subdivision and cal.country in holidays.list_supported_countries() \
                else "country"
            value = cal.subdivision if where == "subdivision" else cal.country
            ctx.error(("schedules", name, "holidays", where), f"no holiday calendar for {where} '{value}'")
