"""The records pipeline of a running server: each finished call's record to the store and the webhooks.

`Records.on_record` is the CallRouter's sink: it counts the call in the metrics and spools the record for
the store and for each webhook configured for its flow, each through its own `Outbox` and spool directory.
Started before the workers (a full disk or read-only spool stops the server at start), stopped after them
so every call's record is spooled. Retention: records older than `records.retention` are deleted at start and hourly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from ivr.config.model import IvrConfig
from ivr.errors import IvrError
from ivr.metrics import Metrics
from ivr.records.journal import LiveJournal
from ivr.records.model import CallRecord
from ivr.records.outbox import Outbox
from ivr.records.spool import Spool
from ivr.records.stats import count_call
from ivr.records.store import RecordStore, make_store
from ivr.records.webhook import WebhookSink

log = structlog.get_logger()

PURGE_EVERY_S = 3600.0
STOP_FLUSH_S = 10.0


class Records:
    def __init__(self, config: IvrConfig, run_dir: Path, metrics: Metrics,
                 current: Callable[[], IvrConfig] | None = None) -> None:
        self._config = config
        self._current = current or (lambda: config)
        """The config new calls use (after a SIGHUP reload): its flows and queues are the metrics labels."""
        cfg = config.records
        self._metrics = metrics
        self.store: RecordStore | None = make_store(cfg, run_dir)
        spool_root = run_dir / cfg.spool_dir
        self.outbox: Outbox | None = None
        if self.store is not None:
            spool = Spool(spool_root / "store", min_free_mb=cfg.min_free_mb, name="store")
            self.outbox = Outbox(spool, self.store, metrics, batch_wait=cfg.batch_wait, batch_size=cfg.batch_size)
        self.webhooks: list[tuple[frozenset[str], Outbox]] = []
        for hook in cfg.webhooks:
            spool = Spool(spool_root / "webhook" / hook.name, min_free_mb=cfg.min_free_mb, name=f"webhook-{hook.name}")
            outbox = Outbox(spool, WebhookSink(hook), metrics, batch_wait=cfg.batch_wait, batch_size=cfg.batch_size,
                            timeout=hook.timeout * cfg.batch_size + 1, retry_max=hook.retry_max)
            self.webhooks.append((frozenset(hook.flows), outbox))
        self.voicemail: Outbox | None = None
        self._recordings = run_dir.resolve() / "recordings"
        if cfg.voicemail is not None:
            from ivr.records.voicemail import VoicemailSink

            spool = Spool(spool_root / "voicemail", min_free_mb=cfg.min_free_mb, name="voicemail")
            self.voicemail = Outbox(spool, VoicemailSink(cfg.voicemail, run_dir), metrics,
                                    batch_wait=cfg.batch_wait, batch_size=1, timeout=cfg.voicemail.timeout * 2,
                                    retry_max=cfg.voicemail.retry_max)
        self._purger: asyncio.Task[None] | None = None
        self.journal = LiveJournal(run_dir)
        """Calls open on this node, so a node killed outright records them as lost at its next start."""

    def on_record(self, record: CallRecord, data: dict[str, object] | None = None) -> None:
        """A call ended: count it, spool it for the store and the webhooks. Never blocks. `data`: the record's
        `as_dict()` when the caller already has it (the router built it for the `call.ended` line)."""
        count_call(self._metrics, self._current(), record)
        if data is None:
            data = record.as_dict()
        if self.outbox is not None:
            self.outbox.submit(data)
        for flows, outbox in self.webhooks:
            if not flows or record.flow in flows:
                outbox.submit(data)
        if self.voicemail is not None:
            from ivr.records.voicemail import recordings_of

            for name in recordings_of(self._config, record):
                self.voicemail.submit({"file": str(self._recordings / name), "name": name, "record": data})
        self.journal.closed(record.uid)

    @property
    def outboxes(self) -> list[Outbox]:
        return ([self.outbox] if self.outbox is not None else []) + [outbox for _, outbox in self.webhooks] \
            + ([self.voicemail] if self.voicemail is not None else [])

    async def start(self) -> None:
        if self.store is not None:
            try:
                await self.store.open()
            except Exception as exc:
                if self._config.records.store == "sqlite":
                    raise IvrError(f"record store {self.store.name}: {exc}") from exc
                log.warning("records.store_unavailable_at_start", store=self.store.name, error=str(exc))
            self._purger = asyncio.get_running_loop().create_task(self._purge_loop())
        for outbox in self.outboxes:
            outbox.start()
        for lost in self.journal.recover():  # live when this node died (journal.py): one canonical line each
            data = lost.as_dict()
            log.info("call.ended", **data)
            self.on_record(lost, data)
        log.info("records.ready", store=self._config.records.store, webhooks=len(self.webhooks),
                 spooled=sum(len(o.spool.pending()) for o in self.outboxes))

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await asyncio.gather(*(outbox.stop(STOP_FLUSH_S) for outbox in self.outboxes))  # at most 10 s in all
        for outbox in self.outboxes:
            await outbox.sink.close()
        self.journal.close()

    async def _purge_loop(self) -> None:
        assert self.store is not None
        while True:
            before = time.time() - self._config.records.retention
            try:
                deleted = await self.store.purge(before)
                if deleted:
                    log.info("records.purged", deleted=deleted, before=before)
            except Exception as exc:  # the store is down: the next round will do it
                log.warning("records.purge_failed", error=str(exc))
            await asyncio.sleep(PURGE_EVERY_S)
