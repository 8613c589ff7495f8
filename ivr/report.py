"""`ivr report`: a period's calls per flow, queue, tier and menu option, from the record store.

Per group: calls, transfers landed, fallbacks (a lookup failed or a transfer attempt did not land), hang-ups
in the IVR (the caller left before the flow ended), CRM latency p50/p99 (every lookup of those calls) and
time to transfer p50/p99 (answer to the transfer's final NOTIFY). Plain text, --json or --csv.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from ivr.config.model import IvrConfig
from ivr.records.cli import add_common, read_records, write_csv, write_table
from ivr.records.model import CallRecord, record_from_dict
from ivr.records.schema import CallFilter
from ivr.records.stats import TIER_VARIABLE, is_fallback, menu_choices

DIMENSIONS = ("flow", "queue", "tier", "menu_option")
COLUMNS = ("dimension", "key", "calls", "transferred", "fallbacks", "abandoned", "crm_p50_ms", "crm_p99_ms",
           "to_transfer_p50_ms", "to_transfer_p99_ms")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, since="24h")


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)


@dataclass
class Group:
    calls: int = 0
    transferred: int = 0
    fallbacks: int = 0
    abandoned: int = 0
    crm_ms: list[float] = field(default_factory=list)
    to_transfer_ms: list[float] = field(default_factory=list)

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.transferred += record.outcome.kind == "transfer"
        self.fallbacks += is_fallback(record)
        self.abandoned += record.outcome.kind == "abandoned"
        self.crm_ms += [f.elapsed_ms for f in record.fetches]
        if record.timings.to_transferred_ms is not None:
            self.to_transfer_ms.append(record.timings.to_transferred_ms)

    def row(self, dimension: str, key: str) -> dict[str, object]:
        return {"dimension": dimension, "key": key, "calls": self.calls, "transferred": self.transferred,
                "fallbacks": self.fallbacks, "abandoned": self.abandoned,
                "crm_p50_ms": percentile(self.crm_ms, 50), "crm_p99_ms": percentile(self.crm_ms, 99),
                "to_transfer_p50_ms": percentile(self.to_transfer_ms, 50),
                "to_transfer_p99_ms": percentile(self.to_transfer_ms, 99)}


def keys(config: IvrConfig, record: CallRecord) -> Iterable[tuple[str, str]]:
    yield "flow", record.flow
    yield "queue", record.queue or "none"
    yield "tier", dict(record.variables).get(TIER_VARIABLE) or "none"
    for menu, option in menu_choices(config, record.flow, record.path):
        yield "menu_option", f"{menu}={option}"


def summarise(config: IvrConfig, records: Iterable[CallRecord]) -> list[dict[str, object]]:
    """The report's rows: totals first, then each dimension's groups by calls (most first)."""
    total = Group()
    groups: dict[tuple[str, str], Group] = defaultdict(Group)
    for record in records:
        total.add(record)
        for key in set(keys(config, record)):
            groups[key].add(record)
    ordered = sorted(groups.items(), key=lambda kv: (DIMENSIONS.index(kv[0][0]), -kv[1].calls, kv[0][1]))
    return [total.row("all", "all"), *(group.row(dim, key) for (dim, key), group in ordered)]


def command(args: argparse.Namespace) -> int:
    config, data = read_records(args, CallFilter(since=args.since, until=args.until))
    rows = summarise(config, (record_from_dict(d) for d in data))
    period = {"since": _iso(args.since), "until": _iso(args.until)}
    if args.format == "json":
        json.dump({"period": period, "rows": rows, "columns": list(COLUMNS)}, sys.stdout, indent=2)
        print()
    elif args.format == "csv":
        write_csv(rows, COLUMNS)
    else:
        print(f"calls from {period['since']} to {period['until'] or 'now'}")
        write_table([{k: ("-" if v is None else v) for k, v in row.items()} for row in rows], COLUMNS)
    return 0


def _iso(when: float | None) -> str | None:
    return None if when is None else dt.datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")


