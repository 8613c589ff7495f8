"""An append-only spool of JSON lines in segment files: every record is written here first, then delivered.

Durability policy:
* `append` is one write(2) of one line to a segment opened O_APPEND: once it returns, the record survives a
  crash of this process (SIGKILL included) because the kernel holds it. It does not fsync.
* `seal` (`detach` + `finish`, the latter on a thread in the outbox) closes the current segment after an
  fsync of the file and of the directory; only sealed segments are delivered, and a segment is deleted
  only after its delivery committed. So an OS crash or power loss can lose at most the records appended
  since the last seal (`records.batch_wait`, 0.2 s by default).
* At start every segment left by an earlier run is pending (sealed at once): a crash replays them.
* Delivery is idempotent (the store's unique key is the record's uid), so a segment delivered twice after a
  crash between commit and delete stores each record once. For the same reason a delete is not made durable
  (no fsync of the directory after the unlink): a power loss right after it can only bring a delivered
  segment back, to be delivered again (a webhook may then get a record twice, as it already can after a
  crash between delivery and delete), never lose one. That was one of a batch's four fsyncs, ~0.15 ms of
  CPU per record at 20 records/s (bench/record_cost.py).

A spool directory that cannot be created or written, or a file system with less than `min_free_mb` free, is
a start-up error (`SpoolError`), not a silent loss later.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from ivr.errors import IvrError

log = structlog.get_logger()

SUFFIX = ".jsonl"


class SpoolError(IvrError):
    """The spool directory is unusable (start-up)."""


class Spool:
    """One directory of segments `<ns>-<seq>.jsonl`; names sort in the order they were written."""

    def __init__(self, directory: Path, *, min_free_mb: int = 64, name: str = "records") -> None:
        self.dir = directory
        self.name = name
        self._fd: int | None = None
        self._current: Path | None = None
        self._seq = 0
        self.appended = 0
        self.failed = 0
        self._check(min_free_mb)

    def _check(self, min_free_mb: int) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / f".probe-{os.getpid()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            raise SpoolError(f"{self.name} spool {self.dir} is not writable: {exc.strerror or exc}") from exc
        free_mb = shutil.disk_usage(self.dir).free // (1024 * 1024)
        if free_mb < min_free_mb:
            raise SpoolError(f"{self.name} spool {self.dir} has {free_mb} MB free, {min_free_mb} MB needed")

    def append(self, data: dict[str, object]) -> bool:
        """Write one record as a line; False (logged, counted) if the write failed: disk full, I/O error."""
        line = (json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        try:
            if self._fd is None:
                self._seq += 1
                self._current = self.dir / f"{time.time_ns():020d}-{self._seq:06d}{SUFFIX}"
                self._fd = os.open(self._current, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write {written}/{len(line)}")
        except OSError as exc:
            self.failed += 1
            log.error("records.spool_write_failed", spool=self.name, error=str(exc), uid=data.get("uid"))
            return False
        self.appended += 1
        return True

    def detach(self) -> int | None:
        """Stop appending to the current segment (the next append starts a new one); its descriptor, for
        `finish`, which may run on a thread so that the event loop never waits for an fsync."""
        fd, self._fd, self._current = self._fd, None, None
        return fd

    def finish(self, fd: int) -> None:
        """Seal a detached segment: fsync the file and the directory, close it."""
        try:
            os.fsync(fd)
            self._sync_dir()
        except OSError as exc:  # an I/O error: what the kernel holds is still delivered, just not durable
            log.error("records.spool_sync_failed", spool=self.name, error=str(exc))
        finally:
            os.close(fd)

    def seal(self) -> None:
        fd = self.detach()
        if fd is not None:
            self.finish(fd)

    def pending(self) -> list[Path]:
        """Sealed segments not yet delivered, oldest first (the open one is never listed)."""
        return sorted(p for p in self.dir.glob(f"*{SUFFIX}") if p != self._current)

    def read(self, segment: Path) -> Iterator[dict[str, object]]:
        """The records of a segment; a torn last line (power loss mid-write) is logged and skipped."""
        with segment.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    item = json.loads(raw)
                except ValueError:
                    log.error("records.spool_torn_line", spool=self.name, segment=segment.name, line=number)
                    continue
                if isinstance(item, dict):
                    yield item

    def remove(self, segment: Path) -> None:
        """Delete a delivered segment (a failure is logged: it would only be delivered again, harmlessly). Not
        fsynced: see the durability policy above."""
        try:
            segment.unlink(missing_ok=True)
        except OSError as exc:
            log.error("records.spool_remove_failed", spool=self.name, segment=segment.name, error=str(exc))

    def close(self) -> None:
        self.seal()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
