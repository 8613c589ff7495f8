"""Delivery of spooled records to a sink (the database, the webhook) by one background task per sink.

`submit` never blocks a call: it appends one line to the spool (one write(2) to the page cache; see
spool.py for the durability policy) and wakes the task. Every fsync, read and unlink of the spool runs on
a thread, never on the event loop that drives the calls. The task seals the current segment every
`batch_wait`, delivers the pending segments in batches of `batch_size`, and deletes segments once all of
their records were delivered. A failing or slow sink (a
batch that raises, or takes longer than `timeout`) leaves the segments where they are and is retried with
back-off (0.5 s doubling to `retry_max`), so memory use does not grow with an outage: the backlog is on
disk, bounded by the spool's file system. Segments left by a crashed run are delivered first, at start.

A record the spool could not take (disk full, I/O error mid-run) is kept in memory (at most `MEMORY_MAX`)
and delivered from there; only beyond that bound, or if the process dies before delivery, is one lost, and
then loudly (`records.lost`, `ivr_records_lost_total`; the call's `call.ended` log line still has it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Protocol

import structlog

from ivr.metrics import Metrics
from ivr.records.spool import Spool

log = structlog.get_logger()

RETRY_FIRST_S = 0.5
MEMORY_MAX = 10_000


class Sink(Protocol):
    name: str

    async def deliver(self, batch: list[dict[str, object]]) -> None:
        """Deliver a batch (idempotently: a batch may be delivered again after a failure); raise on failure."""

    async def close(self) -> None: ...


class Outbox:
    def __init__(self, spool: Spool, sink: Sink, metrics: Metrics, *, batch_wait: float, batch_size: int,
                 timeout: float = 30.0, retry_max: float = 30.0) -> None:
        self.spool = spool
        self.sink = sink
        self._metrics = metrics
        self._batch_wait = batch_wait
        self._batch_size = batch_size
        self._timeout = timeout
        self._retry_max = retry_max
        self._wake = asyncio.Event()
        self._stopping = False
        self.down_since: float | None = None
        self.delivered = 0
        self._memory: deque[dict[str, object]] = deque()
        self._task: asyncio.Task[None] | None = None

    def submit(self, data: dict[str, object]) -> None:
        """Spool one record for delivery. Never blocks on the sink; a spool write failure is logged."""
        if not self.spool.append(data):
            self._metrics.inc("ivr_records_spool_errors_total", sink=self.spool.name)
            if len(self._memory) >= MEMORY_MAX:
                lost = self._memory.popleft()
                self._metrics.inc("ivr_records_lost_total", sink=self.spool.name)
                log.error("records.lost", sink=self.sink.name, uid=lost.get("uid"), reason="spool and memory full")
            self._memory.append(data)
        self._wake.set()

    def start(self) -> None:
        self._wake.set()  # segments of an earlier run
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"outbox-{self.spool.name}")

    async def stop(self, timeout: float) -> None:
        """Deliver what is spooled, for at most `timeout`; anything left stays spooled for the next start."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                pass
        self.spool.close()
        if self._memory:
            self._metrics.inc("ivr_records_lost_total", len(self._memory), sink=self.spool.name)
            log.error("records.lost", sink=self.sink.name, count=len(self._memory), uids=[
                d.get("uid") for d in self._memory], reason="neither spooled nor delivered at shutdown")
        left = len(self.spool.pending())
        if left:
            log.warning("records.left_in_spool", sink=self.sink.name, segments=left, spool=str(self.spool.dir))

    async def _run(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            await self._wake.wait()
            if not self._stopping:
                await asyncio.sleep(self._batch_wait)  # gather a batch
            self._wake.clear()
            try:
                fd = self.spool.detach()
                if fd is not None:
                    await asyncio.to_thread(self.spool.finish, fd)
                delivered = await self._deliver_pending()
            except Exception as exc:  # a bug or an unreadable segment: log it, keep the task alive, retry
                log.exception("records.outbox_error", sink=self.sink.name)
                self._failed(exc)
                delivered = False
            if delivered:
                delay = RETRY_FIRST_S
                if self._stopping:
                    return
                continue
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)
            self._wake.set()

    async def _deliver_pending(self) -> bool:
        """Deliver every sealed segment, several small segments to a batch; False at the first failure."""
        batch: list[dict[str, object]] = []
        segments: list[Path] = []
        for segment in await asyncio.to_thread(self.spool.pending):
            batch += await asyncio.to_thread(self._read, segment)
            segments.append(segment)
            if len(batch) >= self._batch_size:
                if not await self._deliver(batch, segments):
                    return False
                batch, segments = [], []
        if segments and not await self._deliver(batch, segments):
            return False
        if self._memory:
            held = list(self._memory)
            if not await self._deliver(held, []):
                return False
            for _ in held:
                self._memory.popleft()
        self._metrics.set("ivr_records_backlog_segments", 0, sink=self.spool.name)
        return True

    async def _deliver(self, records: list[dict[str, object]], segments: list[Path]) -> bool:
        """Deliver the records of `segments` in batches; the segments are deleted once all are in."""
        try:
            for start in range(0, len(records), self._batch_size):
                await asyncio.wait_for(self.sink.deliver(records[start:start + self._batch_size]), self._timeout)
        except Exception as exc:  # any failure of the sink: keep the segments, retry later
            self._failed(exc)
            return False
        await asyncio.to_thread(self._remove, segments)
        self.delivered += len(records)
        self._metrics.inc("ivr_records_delivered_total", len(records), sink=self.spool.name)
        self._metrics.set("ivr_records_sink_up", 1, sink=self.spool.name)
        if self.down_since is not None:
            loop = asyncio.get_running_loop()
            log.info("records.sink_recovered", sink=self.sink.name, down_s=round(loop.time() - self.down_since, 1))
            self.down_since = None
        return True

    def _read(self, segment: Path) -> list[dict[str, object]]:
        return list(self.spool.read(segment))

    def _remove(self, segments: list[Path]) -> None:
        for segment in segments:
            self.spool.remove(segment)

    def _failed(self, exc: Exception) -> None:
        self._metrics.inc("ivr_records_delivery_failures_total", sink=self.spool.name)
        self._metrics.set("ivr_records_backlog_segments", len(self.spool.pending()), sink=self.spool.name)
        if self.down_since is None:
            self.down_since = asyncio.get_running_loop().time()
            self._metrics.set("ivr_records_sink_up", 0, sink=self.spool.name)
            log.warning("records.sink_down", sink=self.sink.name, error=str(exc) or type(exc).__name__,
                        kind=type(exc).__name__, spool=str(self.spool.dir))
