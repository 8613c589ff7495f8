"""Flow diagrams: every step kind is a node of its shape, every way out an edge labelled with its result, and
Debian's `dot` renders the DOT to an SVG that names every step (what `ivr graph` writes and the console embeds)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ivr.config.steps import Flow
from ivr.graph import SHAPES, flow_dot, render_svg

ROOT = Path(__file__).resolve().parents[2]

EVERY_KIND = Flow.model_validate({"description": "one step of every kind", "steps": [
    {"id": "hello", "type": "play", "prompts": ["welcome"]},
    {"id": "hours", "type": "hours", "schedule": "office", "open": "lookup", "closed": "closed_msg"},
    {"id": "lookup", "type": "fetch", "endpoint": "crm", "path": "/customers/{{caller}}", "on_error": "menu"},
    {"id": "route", "type": "branch", "cases": [
        {"when": {"var": "tier", "equals": "gold"}, "goto": "to_gold"},
        {"when": [{"var": "tier", "in": ["silver", "bronze"]}, {"var": "vip", "exists": True}], "goto": "menu"},
        {"when": {"var": "note", "matches": "a\"b\\d+"}, "goto": "menu"}], "default": "menu"},
    {"id": "menu", "type": "menu", "prompts": ["main_menu"], "options": {"1": "to_gold", "2": "pin", "*": "again"},
     "on_exhausted": "bye"},
    {"id": "pin", "type": "gather", "prompts": ["enter_pin"], "variable": "pin", "sensitive": True,
     "on_exhausted": "bye"},
    {"id": "mark", "type": "set", "values": {"tier": "gold"}, "next": "to_gold"},
    {"id": "again", "type": "goto", "step": "menu"},
    {"id": "elsewhere", "type": "goto", "flow": "support"},
    {"id": "to_gold", "type": "transfer", "queue": "gold", "target": "{{manager}}", "on_fail": "to_default"},
    {"id": "to_default", "type": "transfer", "queue": "default"},
    {"id": "closed_msg", "type": "play", "prompts": ["closed"]},
    {"id": "bye", "type": "hangup", "prompts": ["goodbye"], "reason": "menu_exhausted"},
    {"id": "greeting", "type": "say", "text": {"en": "Welcome back, {{name}}.", "es": "Hola."}, "next": "bye"}]})


def _edges(dot: str) -> set[tuple[str, str, str]]:
    return {(a, b, label.replace('\\"', '"').replace("\\\\", "\\"))
            for a, b, label in re.findall(r'^  "([^"]+)" -> "([^"]+)" \[label="((?:[^"\\]|\\.)*)"\];$', dot, re.M)}


def test_every_step_is_a_node_shaped_by_its_kind() -> None:
    dot = flow_dot("every", EVERY_KIND)
    kinds = {step.type for step in EVERY_KIND.steps}
    assert kinds == set(SHAPES)  # the fixture covers every kind the config model has
    for step in EVERY_KIND.steps:
        assert re.search(rf'^  "{step.id}" \[label="{step.id}\\n{step.type}[^"]*", shape={SHAPES[step.type]},', dot,
                         re.M), step.id
    assert 'id="step-hello"' in dot and 'class="step kind-play"' in dot
    assert '"to_gold" [label="to_gold\\ntransfer: queue gold\\nfirst {{manager}}"' in dot
    assert '"greeting" [label="greeting\\nsay: Welcome back, {{name}}."' in dot


def test_edges_are_labelled_with_the_results_that_take_them() -> None:
    edges = _edges(flow_dot("every", EVERY_KIND))
    assert {("hello", "hours", "next"), ("hours", "lookup", "open"), ("hours", "closed_msg", "closed"),
            ("lookup", "route", "ok"), ("lookup", "menu", "on_error"),
            ("route", "to_gold", "tier = gold"), ("route", "menu", "tier in silver, bronze and vip set"),
            ("route", "menu", 'note ~ a"b\\d+'), ("route", "menu", "default"),
            ("menu", "to_gold", "1"), ("menu", "pin", "2"), ("menu", "again", "*"), ("menu", "bye", "exhausted"),
            ("pin", "mark", "digits"), ("pin", "bye", "exhausted"), ("mark", "to_gold", "next"),
            ("again", "menu", "goto"), ("elsewhere", "flow:support", "goto"),
            ("to_gold", "queue:gold", "transferred"), ("to_gold", "to_default", "on_fail"),
            ("to_default", "queue:default", "transferred"), ("to_default", "end:transfer_failed", "on_fail"),
            ("greeting", "bye", "next"),
            ("closed_msg", "bye", "next"), ("bye", "end:menu_exhausted", "")} == edges


def test_the_last_step_falls_off_the_end() -> None:
    flow = Flow.model_validate({"steps": [{"id": "only", "type": "play", "prompts": ["welcome"]}]})
    assert _edges(flow_dot("f", flow)) == {("only", "end:end_of_flow", "next")}


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_dot_renders_an_svg_naming_every_step() -> None:
    svg = render_svg(flow_dot("every", EVERY_KIND))
    assert svg.startswith("<svg")
    titles = set(re.findall(r"<title>([^<]*)</title>", svg))
    assert {step.id for step in EVERY_KIND.steps} | {"queue:gold", "flow:support", "end:menu_exhausted"} <= titles
    assert 'id="step&#45;menu" class="node step kind&#45;menu"' in svg  # dot writes "-" as a character reference
    assert "a&quot;b\\d+" in svg or 'a"b\\d+' in svg  # text is escaped by dot, not markup


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_ivr_graph_writes_the_svg_of_a_configured_flow(tmp_path: Path) -> None:
    out = tmp_path / "vip.svg"
    proc = subprocess.run([sys.executable, "-m", "ivr", "graph", str(ROOT / "config" / "ivr.yaml"), "vip_routing",
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load((ROOT / "config" / "ivr.yaml").read_text())
    svg = out.read_text()
    assert {s["id"] for s in config["flows"]["vip_routing"]["steps"]} <= set(re.findall(r"<title>([^<]*)</title>", svg))
    missing = subprocess.run([sys.executable, "-m", "ivr", "graph", str(ROOT / "config" / "ivr.yaml"), "nope"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no flow 'nope'" in missing.stderr
