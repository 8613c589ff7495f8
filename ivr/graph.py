"""Flow diagrams: a flow of the config model as Graphviz DOT, rendered to SVG by Debian's `dot`.

Every step is a node (its shape says its kind), every way out of it an edge labelled with the result that takes
it (menu digits, branch conditions, hours open/closed, on_error/on_fail/on_exhausted, next). Where a flow leaves
itself (a transfer that lands, a goto to another flow, a hang-up, running past the last step) the edge ends on a
terminal node. The same SVG is written by `ivr graph` and embedded by the console. `flow_dot` is pure;
`render_svg` runs `dot`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from ivr.config.model import IvrConfig
from ivr.config.speech import SayStep
from ivr.config.steps import (
    BranchStep,
    Condition,
    FetchStep,
    Flow,
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
from ivr.errors import IvrError

SHAPES: dict[str, str] = {
    "play": "note", "menu": "diamond", "gather": "parallelogram", "fetch": "cylinder", "branch": "hexagon",
    "hours": "octagon", "set": "box", "transfer": "house", "hangup": "doubleoctagon", "goto": "cds",
    "say": "note",
}
"""Node shape by step kind (the legend in the README's Console section)."""

FILLS: dict[str, str] = {
    "play": "#eef4ff", "menu": "#fff4d6", "gather": "#fff4d6", "fetch": "#e8f7ee", "branch": "#f3ecff",
    "hours": "#f3ecff", "set": "#f4f4f4", "transfer": "#dff3ff", "hangup": "#ffe4e4", "goto": "#f4f4f4",
    "say": "#eef4ff",
}
RENDER_TIMEOUT_S = 20.0

Edge = tuple[str, str]
"""(label, target node id)."""


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def condition_text(cond: Condition | tuple[Condition, ...]) -> str:
    if isinstance(cond, tuple):
        return " and ".join(condition_text(c) for c in cond)
    if cond.equals is not None:
        return f"{cond.var} = {cond.equals}"
    if cond.in_ is not None:
        return f"{cond.var} in {', '.join(cond.in_)}"
    if cond.exists is not None:
        return f"{cond.var} {'set' if cond.exists else 'unset'}"
    return f"{cond.var} ~ {cond.matches}"


def _detail(step: Step) -> str:
    match step:
        case FetchStep():
            return f"{step.method} {step.endpoint}"
        case TransferStep():
            return f"queue {step.queue}" + (f"\nfirst {step.target}" if step.target else "")
        case GatherStep():
            return f"-> {step.variable}" + (" (masked)" if step.sensitive else "")
        case HoursStep():
            return step.schedule
        case SetStep():
            return ", ".join(step.values)
        case HangupStep():
            return step.reason
        case PlayStep() | MenuStep() | BranchStep() | GotoStep():
            return ""
        case SayStep():
            text = step.text if isinstance(step.text, str) else next(iter(step.text.values()))
            return text[:40] + ("..." if len(text) > 40 else "")


def _edges(step: Step, following: str) -> list[Edge]:
    """Every way out of `step`; `following` is the node reached by default (the next step, or the end)."""
    match step:
        case MenuStep():
            return [*step.options.items(), ("exhausted", step.on_exhausted)]
        case GatherStep():
            return [("digits", step.next or following), ("exhausted", step.on_exhausted)]
        case FetchStep():
            return [("ok", step.next or following), ("on_error", step.on_error)]
        case BranchStep():
            return [*((condition_text(c.when), c.goto) for c in step.cases), ("default", step.default)]
        case HoursStep():
            return [("open", step.open), ("closed", step.closed)]
        case TransferStep():
            return [("transferred", f"queue:{step.queue}"), ("on_fail", step.on_fail or "end:transfer_failed")]
        case HangupStep():
            return [("", f"end:{step.reason}")]
        case GotoStep():
            return [("goto", f"flow:{step.flow}" if step.flow else str(step.step))]
        case PlayStep() | SetStep() | SayStep():
            return [("next", step.next or following)]


def _terminal(node: str) -> str:
    kind, _, name = node.partition(":")
    label = {"queue": f"queue {name}", "flow": f"flow {name}", "end": f"end: {name}"}[kind]
    shape = {"queue": "ellipse", "flow": "folder", "end": "plaintext"}[kind]
    return f"  {_q(node)} [label={_q(label)}, shape={shape}, style=dashed, id={_q(node.replace(':', '-'))}];"


def flow_dot(name: str, flow: Flow) -> str:
    """The DOT text of one flow. Node ids are the step ids (the SVG's <title>s and `step-<id>` element ids)."""
    lines = [f"digraph {_q(name)} {{", '  graph [rankdir=TB, fontname="Helvetica", fontsize=11, nodesep=0.35];',
             '  node [fontname="Helvetica", fontsize=10, style=filled];',
             '  edge [fontname="Helvetica", fontsize=9, color="#5b6570"];']
    terminals: list[str] = []
    steps = flow.steps
    for index, step in enumerate(steps):
        following = steps[index + 1].id if index + 1 < len(steps) else "end:end_of_flow"
        detail = _detail(step)
        label = f"{step.id}\n{step.type}" + (f": {detail}" if detail else "")
        lines.append(f"  {_q(step.id)} [label={_q(label)}, shape={SHAPES[step.type]}, fillcolor={_q(FILLS[step.type])},"
                     f" id={_q('step-' + step.id)}, class={_q('step kind-' + step.type)}];")
        for label_text, target in _edges(step, following):
            if ":" in target and target not in terminals:
                terminals.append(target)
            lines.append(f"  {_q(step.id)} -> {_q(target)} [label={_q(label_text)}];")
    lines.extend(_terminal(node) for node in terminals)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot: str) -> str:
    """SVG from DOT via Graphviz; IvrError when `dot` is missing or fails (a start-up/tooling error)."""
    binary = shutil.which("dot")
    if binary is None:
        raise IvrError("Graphviz `dot` is not installed (Debian package graphviz; scripts/bootstrap installs it)")
    proc = subprocess.run([binary, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S,
                          check=False)
    if proc.returncode != 0:
        raise IvrError(f"dot failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    svg = proc.stdout
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def flow_svg(config: IvrConfig, flow: str) -> str:
    if flow not in config.flows:
        raise IvrError(f"no flow {flow!r}; the config has: {', '.join(config.flows)}")
    return render_svg(flow_dot(flow, config.flows[flow]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first", metavar="CONFIG", help="config file (optional: default config/ivr.yaml)")
    parser.add_argument("second", nargs="?", metavar="FLOW", help="the flow to draw")
    parser.usage = "ivr graph [-h] [CONFIG] FLOW [--out FILE.svg] [--dot]"
    parser.add_argument("--out", "-o", metavar="FILE.svg", help="write the SVG here (default: stdout)")
    parser.add_argument("--dot", action="store_true", help="write the DOT source instead of SVG")


def command(args: argparse.Namespace) -> int:
    from ivr.config.load import load_config

    config_path, flow = (args.first, args.second) if args.second else ("config/ivr.yaml", args.first)
    config = load_config(config_path).config
    if flow not in config.flows:
        raise IvrError(f"no flow {flow!r}; the config has: {', '.join(config.flows)}")
    text = flow_dot(flow, config.flows[flow]) if args.dot else flow_svg(config, flow)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
