"""`ivr scenarios`: one SIPp caller scenario (SIP INFO and RFC 4733 digits), injection CSV and expectation
per distinct path of a flow, plus `manifest.json`. The expectations come from the flow engine itself."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr.config.load import LoadedConfig, load_config
from ivr.errors import ConfigError
from ivr.scenarios import pcap, sippxml
from ivr.scenarios.model import CallPath
from ivr.scenarios.walk import Walker, rename_unique
from ivr.scenarios.world import world
from ivr.sim_fixtures import Fixtures, load_fixtures
from ivr.simulate import DEFAULT_CONFIG, parse_at

MANIFEST = "manifest.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    parser.add_argument("--flow", action="append", metavar="NAME", help="a flow to walk (repeatable; default: all)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write into")
    add_generation_arguments(parser)


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", metavar="ISO_TIME", help="the time the calls are placed (default: now); decides "
                        "business hours")
    parser.add_argument("--http-fixtures", metavar="FILE", type=Path, help="answer the walk's fetches from this "
                        "file instead of the demo CRM")
    parser.add_argument("--slack", type=float, default=10.0, metavar="S", help="seconds a REFER or BYE may come "
                        "later than the engine's time before the call fails (default 10)")


def command(args: argparse.Namespace) -> int:
    """Exit status: 0 written, 2 bad config or arguments."""
    from ivr import logs

    logs.configure(level="warning", stream=sys.stderr)
    try:
        loaded = load_config(args.config)
        start = parse_at(args.at)
        fixtures = load_fixtures(args.http_fixtures) if args.http_fixtures else None
        paths = generate(loaded, args.flow, start, fixtures)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"ivr scenarios: {exc}", file=sys.stderr)
        return 2
    write(paths, args.out, loaded, int(args.slack * 1000))
    for path in paths:
        print(f"{path.name:58} {path.expected}{'' if path.reachable_now else '  (not reachable now)'}")
    print(f"{len(paths)} paths written to {args.out}/ ({MANIFEST})", file=sys.stderr)
    return 0


def generate(loaded: LoadedConfig, flows: Sequence[str] | None, start: float,
             fixtures: Fixtures | None = None) -> list[CallPath]:
    """Every distinct path of the flows (all when None); ValueError for an unknown flow."""
    names = list(flows or loaded.config.flows)
    for name in names:
        if name not in loaded.config.flows:
            raise ValueError(f"no flow named {name!r} (flows: {', '.join(loaded.config.flows)})")

    async def run() -> list[CallPath]:
        found: list[CallPath] = []
        async with world(loaded, fixtures) as w:
            for name in names:
                found += await Walker(loaded, name, w, start).walk()
        return found

    return rename_unique(asyncio.run(run()))


def variants(path: CallPath) -> list[str]:
    """The DTMF methods a path is played with: both when it has digits (INFO only without)."""
    return ["info", "rfc4733"] if path.presses else ["info"]


def write(paths: Sequence[CallPath], out: Path, loaded: LoadedConfig, slack_ms: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    for path in paths:
        files: dict[str, str] = {"csv": f"{path.name}.csv"}
        caller = "+1999" if path.fresh_caller else path.caller
        (out / files["csv"]).write_text(f"SEQUENTIAL\n{caller};{path.dialed};{path.digits};{path.expected}\n")
        if path.presses:
            files["pcap"] = f"{path.name}.pcap"
            margin = sippxml.FIRST_DIGIT_MARGIN_MS
            presses = [(p.digit, int(p.at * 1000) + margin) for p in path.presses]
            (out / files["pcap"]).write_bytes(pcap.pcap_bytes(presses))
        for method in variants(path):
            files[method] = f"{path.name}.{method}.xml"
            xml = sippxml.render(path, method, files.get("pcap"), slack_ms)  # type: ignore[arg-type]
            (out / files[method]).write_text(xml, encoding="ISO-8859-1")
        entries.append({**path.to_json(), "files": files})
    manifest = {"config": str(loaded.path), "generated_at": time.time(), "slack_ms": slack_ms, "paths": entries}
    target = out / MANIFEST
    target.write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def read_manifest(directory: Path) -> tuple[list[CallPath], dict[str, Any]]:
    data = json.loads((directory / MANIFEST).read_text())
    return [CallPath.from_json(p) for p in data["paths"]], data
