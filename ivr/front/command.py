"""`ivr front render [CONFIG] --out DIR`: write kamailio.cfg and its tables for a Kamailio run elsewhere.
`ivr front rpc METHOD [PARAM...]`: one JSON-RPC call to a running front over its jsonrpcs socket."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import structlog

from ivr.config.load import load_config
from ivr.front.kamailio import RPC_NAME, render, workers
from ivr.front.rpc import KamailioRpc, RpcError, RpcUnavailable

DEFAULT_CONFIG = "config/ivr.yaml"
log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="front_command", required=True, metavar="ACTION")
    cmd = sub.add_parser("render", help="write kamailio.cfg, dispatcher.list and the trunk tables")
    cmd.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
    cmd.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write into")
    cmd.add_argument("--base-dir", type=Path, metavar="DIR",
                     help="where Kamailio will see these files, e.g. a container mount (default: --out)")
    rpc = sub.add_parser("rpc", help="call a running front over its jsonrpcs socket (stats.get_statistics, "
                         "uac.reg_dump, dispatcher.list, ...)")
    rpc.add_argument("method")
    rpc.add_argument("params", nargs="*")
    rpc.add_argument("--socket", type=Path, default=Path("run/front") / RPC_NAME,
                     help="the front's jsonrpcs datagram socket (default: %(default)s)")


def command(args: argparse.Namespace) -> int:
    if args.front_command == "rpc":
        return _rpc(args)
    return _render(args)


def _rpc(args: argparse.Namespace) -> int:
    """Print the result as JSON; passwords (uac.reg_dump) masked. Exit 1 when the front does not answer."""
    try:
        result = asyncio.run(KamailioRpc(args.socket, timeout=2.0).call(args.method, *args.params))
    except (RpcUnavailable, RpcError) as exc:
        print(f"ivr front rpc: {exc}")
        return 1
    print(json.dumps(_masked(result), indent=2))
    return 0


def _masked(value: object) -> object:
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: "***" if "password" in k or k == "auth_ha1" else _masked(v) for k, v in value.items()}
    return value


def _render(args: argparse.Namespace) -> int:
    """Render the front's files; ConfigError propagates to the CLI, which prints every issue."""
    loaded = load_config(args.config, check_files=False)
    files = render(loaded.config, args.out, base_dir=args.base_dir, config_dir=loaded.root,
                   copy_certificates=True)
    for path in (files.cfg, files.dispatcher, *files.extra):
        print(path)
    log.info("front.rendered", cfg=str(files.cfg), workers=len(workers(loaded.config)),
             mode=loaded.config.front.mode)
    return 0
