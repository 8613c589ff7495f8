"""The live-call journal: which calls a node had open, so that calls lost with the node are still recorded.

A call's record is built at its end (`CallRecord`); a node killed outright (SIGKILL, power loss of the
controller) never reaches that end for its live calls. So the controller also appends one JSON line when a
call starts (`open`: the call's identity, enough for a record) and one when its record is spooled (`close`:
its uid), each a single write(2) to a file opened O_APPEND: it survives a SIGKILL of the process, like the
spool (`spool.py`, same durability policy: no fsync per call).

When the node starts again with the same run directory, every `open` without its `close` is a call that was
live when the node died: it is recorded once, through the normal records pipeline (spool, store, webhooks),
with `end_reason` and outcome reason `node_lost`, outcome kind `abandoned` (as a worker's crash records its
calls: `worker_lost`), `ended_at` null (nobody saw it end) and the node's name. The store's unique uid makes
a second replay harmless. Who else could close them: nobody, honestly: the journal lives on the dead node's
disk; a node that never comes back leaves its live calls unrecorded (a replacement started on the same run
directory, e.g. the same volume, closes them). The file is rewritten with only the open calls every
`COMPACT_EVERY` lines, so it stays small.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

from ivr.flow.context import CallInfo
from ivr.records.model import CallRecord, Outcome

log = structlog.get_logger()

NAME = "live-calls.jsonl"
COMPACT_EVERY = 10_000
LOST = "node_lost"


class LiveJournal:
    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / NAME
        self._open: dict[str, str] = {}
        """uid -> its `open` line, for compaction."""
        self._lines = 0
        self._fd: int | None = None

    def recover(self) -> list[CallRecord]:
        """The records of the calls an earlier run left open; the journal then starts empty."""
        lost: dict[str, dict[str, object]] = {}
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line torn by the crash: the call it began is not known
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("event") == "open" and isinstance(entry.get("uid"), str):
                lost[entry["uid"]] = entry
            elif entry.get("event") == "close":
                lost.pop(str(entry.get("uid")), None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._reopen(truncate=True)
        return [_lost_record(entry) for entry in lost.values()]

    def opened(self, info: CallInfo, flow: str, started_at: float) -> None:
        line = json.dumps({"event": "open", "uid": info.uid, "call_id": info.call_id, "sip_call_id": info.sip_call_id,
                           "worker": info.worker, "trunk": info.trunk, "caller": info.caller, "dialed": info.dialed,
                           "flow": flow, "started_at": started_at, "node": info.node}, separators=(",", ":"))
        self._open[info.uid] = line
        self._write(line)

    def closed(self, uid: str) -> None:
        if self._open.pop(uid, None) is None:
            return
        self._write(json.dumps({"event": "close", "uid": uid}, separators=(",", ":")))
        if self._lines >= COMPACT_EVERY:
            self._compact()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self, line: str) -> None:
        if self._fd is None:
            return  # not started (no records pipeline): nothing to recover later either
        try:
            os.write(self._fd, (line + "\n").encode())
            self._lines += 1
        except OSError as exc:  # a full disk: the call goes on; only a crash now would leave it unrecorded
            log.warning("records.journal_write_failed", error=str(exc))

    def _compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in self._open.values()))
        os.replace(tmp, self.path)
        self._reopen(truncate=False)
        self._lines = len(self._open)

    def _reopen(self, *, truncate: bool) -> None:
        self.close()
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self._fd = os.open(self.path, flags, 0o600)


def _lost_record(entry: dict[str, object]) -> CallRecord:
    def text(key: str) -> str:
        return str(entry.get(key) or "")

    started = entry.get("started_at")
    return CallRecord(uid=text("uid"), call_id=text("call_id"), sip_call_id=text("sip_call_id"), worker=text("worker"),
                      trunk=text("trunk"), caller=text("caller"), dialed=text("dialed"), flow=text("flow"),
                      started_at=float(started) if isinstance(started, int | float) else 0.0, ended_at=None,
                      end_reason=LOST, outcome=Outcome("abandoned", LOST), node=text("node"))
