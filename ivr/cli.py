"""The `ivr` command line: check and schema here; simulate, run and front from their own modules."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol, cast

from ivr.errors import ConfigError, Issue, IvrError

DEFAULT_CONFIG = "config/ivr.yaml"

# Subcommands that live in other modules, imported only when chosen: (name, module, help).
DELEGATED = (
    ("simulate", "ivr.simulate", "play a call through a flow from the terminal (no SIP)"),
    ("run", "ivr.app", "run the server: controller, SIP workers and the front"),
    ("front", "ivr.front.command", "render or run the Kamailio front"),
    ("tier", "ivr.front.tier_command", "run, render or reload the Kamailio tier over several IVR nodes"),
    ("scenarios", "ivr.scenarios.command", "write SIPp scenarios for every distinct path of the flows"),
    ("qa", "ivr.scenarios.qa", "call every path of the flows with SIPp against a live server; a verdict table"),
    ("calls", "ivr.records.cli", "list recent calls from the record store, filtered"),
    ("report", "ivr.report", "summarise a period's calls per flow, queue, tier and menu option"),
    ("graph", "ivr.graph", "draw a flow as an SVG diagram (Graphviz)"),
)


class _Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def command(self, args: argparse.Namespace) -> int: ...


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status: 0 ok, 2 invalid config or usage."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = _chosen(argv)
    for name, module_name, _ in DELEGATED:
        if name == chosen and _import(module_name) is None:
            print(f"ivr {name}: not available yet", file=sys.stderr)
            return 2
    args = build_parser(argv).parse_args(argv)
    func = cast(Callable[[argparse.Namespace], int], args.func)
    try:
        return int(func(args))
    except ConfigError as exc:
        _print_issues(exc.issues, getattr(args, "config", None) or "config")
        return 2
    except IvrError as exc:
        print(f"ivr: error: {exc}", file=sys.stderr)
        return 2


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; a delegated subcommand's module is imported only when `argv` chooses it."""
    parser = argparse.ArgumentParser(prog="ivr", description="Self-hosted SIP/IVR call-routing server.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="validate a config file and report every problem at once")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    check.add_argument("--strict", action="store_true", help="warnings fail the check too")
    check.add_argument("--no-file-checks", action="store_true",
                       help="skip the checks that need files on this machine (prompts, demo CRM data)")
    check.set_defaults(func=_check)
    schema = sub.add_parser("schema", help="print the JSON Schema of the config file")
    schema.add_argument("--output", "-o", metavar="FILE", help="write the schema to FILE instead of stdout")
    schema.set_defaults(func=_schema)
    chosen = _chosen(argv)
    for name, module_name, help_text in DELEGATED:
        delegated = sub.add_parser(name, help=help_text)
        module = _import(module_name) if name == chosen else None
        if module is None:
            delegated.set_defaults(func=_unavailable(name))
        else:
            command = cast(_Command, module)
            command.add_arguments(delegated)
            delegated.set_defaults(func=command.command)
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names (the top-level options take no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _import(name: str) -> ModuleType | None:
    """The module, or None when it (or its package) does not exist yet; other import errors propagate."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise


def _unavailable(name: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        print(f"ivr {name}: not available yet", file=sys.stderr)
        return 2

    return command


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ivr")
    except PackageNotFoundError:
        return "unknown"


def _check(args: argparse.Namespace) -> int:
    from ivr.config.load import load_config

    loaded = load_config(args.config, check_files=not args.no_file_checks)
    _print_issues(list(loaded.warnings), args.config)
    return 2 if args.strict and loaded.warnings else 0


def _print_issues(issues: list[Issue], file: str) -> None:
    for issue in issues:
        print(issue)
    errors = sum(1 for i in issues if i.severity == "error")
    warnings = len(issues) - errors
    verdict = "invalid" if errors else "valid"
    print(f"{file}: {verdict}: {_plural(errors, 'error')}, {_plural(warnings, 'warning')}", file=sys.stderr)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _schema(args: argparse.Namespace) -> int:
    from ivr.config.model import IvrConfig

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **IvrConfig.model_json_schema()}
    text = json.dumps(schema, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
