"""`ivr calls`: recent calls from the record store the config names, filtered; plain text, --json or --csv.

Also the pieces `ivr report` shares: the common arguments, time parsing, reading the store.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

from ivr.config.load import load_config
from ivr.config.model import IvrConfig
from ivr.errors import IvrError
from ivr.records.schema import CallFilter
from ivr.records.store import make_store

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """'2h' / '30m' / '7d' ago, or an ISO date/time (local time unless it has an offset): epoch seconds."""
    now = time.time() if now is None else now
    match = _AGO.match(text.strip())
    if match:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use e.g. 2h, 7d, 2026-12-01T08:00)") from None
    return (when if when.tzinfo else when.astimezone()).timestamp()


def add_common(parser: argparse.ArgumentParser, since: str) -> None:
    parser.add_argument("config", nargs="?", default="config/ivr.yaml", help="config file (default: %(default)s)")
    parser.add_argument("--run-dir", default="run", help="the server's run directory (default: %(default)s)")
    parser.add_argument("--since", type=parse_time, default=since, help=f"from (e.g. 2h, 7d, an ISO time; "
                        f"default {since})")
    parser.add_argument("--until", type=parse_time, help="until (default: now)")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="JSON output")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV output")
    parser.set_defaults(format="text")


def read_records(args: argparse.Namespace, where: CallFilter) -> tuple[IvrConfig, list[dict[str, object]]]:
    """The config, and the records matching `where` from the store it names."""
    config = load_config(args.config, check_files=False).config
    if config.records.store == "sqlite" and not (Path(args.run_dir) / config.records.path).exists():
        raise IvrError(f"no record store at {Path(args.run_dir) / config.records.path} (wrong --run-dir?)")
    store = make_store(config.records, Path(args.run_dir))
    if store is None:
        raise IvrError("records.store is none: no records are kept")

    async def run() -> list[dict[str, object]]:
        await store.open(migrate=False)
        try:
            return await store.query(where)
        finally:
            await store.close()

    return config, asyncio.run(run())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, since="24h")
    for name in ("caller", "number", "flow", "tier", "queue"):
        parser.add_argument(f"--{name}", help=f"only calls with this {name}")
    parser.add_argument("--outcome", choices=["transfer", "hangup", "abandoned"], help="only this outcome")
    parser.add_argument("--limit", type=int, default=50, help="most calls shown, newest first (default: 50)")


COLUMNS = ("started", "caller", "dialed", "flow", "tier", "queue", "outcome", "reason", "duration_s", "path")


def summary(record: dict[str, object]) -> dict[str, object]:
    """One line of `ivr calls`."""
    outcome = record.get("outcome") or {}
    timings = record.get("timings") or {}
    variables = record.get("variables") or {}
    transfers = record.get("transfers") or []
    assert isinstance(outcome, dict) and isinstance(timings, dict) and isinstance(variables, dict)
    assert isinstance(transfers, list)
    started = dt.datetime.fromtimestamp(float(str(record["started_at"]))).astimezone()
    duration = timings.get("duration_ms")
    return {"started": started.isoformat(timespec="seconds"), "caller": record.get("caller"),
            "dialed": record.get("dialed"), "flow": record.get("flow"), "tier": variables.get("tier", ""),
            "queue": outcome.get("queue") or (transfers[-1]["queue"] if transfers else ""),
            "outcome": outcome.get("kind"), "reason": outcome.get("reason"),
            "duration_s": round(float(duration) / 1000, 1) if isinstance(duration, int | float) else "",
            "path": " > ".join(str(p) for p in record.get("path") or [])}  # type: ignore[attr-defined]


def command(args: argparse.Namespace) -> int:
    where = CallFilter(caller=args.caller, dialed=args.number, flow=args.flow, tier=args.tier, queue=args.queue,
                       outcome=args.outcome, since=args.since, until=args.until, limit=args.limit)
    _, records = read_records(args, where)
    if args.format == "json":
        json.dump(records, sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        write_csv([summary(r) for r in records], COLUMNS)
    else:
        write_table([summary(r) for r in records], COLUMNS)
        sys.stdout.flush()
        print(f"{len(records)} call(s)", file=sys.stderr)
    return 0


def write_csv(rows: list[dict[str, object]], columns: tuple[str, ...]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def write_table(rows: list[dict[str, object]], columns: tuple[str, ...]) -> None:
    """Aligned plain-text columns; the last column is not padded."""
    cells = [[str(c).upper() for c in columns]] + [["" if r.get(c) is None else str(r.get(c)) for c in columns]
                                                   for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns) - 1)]
    for row in cells:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]))
