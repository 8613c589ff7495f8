"""`ivr front render [CONFIG] --out DIR`: write kamailio.cfg and its tables for a Kamailio run elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path

import structlog

from ivr.config.load import load_config
from ivr.front.kamailio import render, workers

DEFAULT_CONFIG = "config/ivr.yaml"
log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="front_command", required=True, metavar="ACTION")
    cmd = sub.add_parser("render", help="write kamailio.cfg, dispatcher.list and the trunk tables")
    cmd.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    cmd.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write into")
    cmd.add_argument("--base-dir", type=Path, metavar="DIR",
                     help="where Kamailio will see these files, e.g. a container mount (default: --out)")


def command(args: argparse.Namespace) -> int:
    """Render the front's files; ConfigError propagates to the CLI, which prints every issue."""
    loaded = load_config(args.config, check_files=False)
    files = render(loaded.config, args.out, base_dir=args.base_dir, config_dir=loaded.root)
    for path in (files.cfg, files.dispatcher, *files.extra):
        print(path)
    log.info("front.rendered", cfg=str(files.cfg), workers=len(workers(loaded.config)),
             mode=loaded.config.front.mode)
    return 0
