"""Voicemail delivery: each kept recording, with its call's record, POSTed as multipart to a webhook and/or
copied to a directory, through the records Outbox (spooled, retried with back-off, at least once).

One spooled item per recording: {"file": absolute WAV path, "name": file name, "record": the call record}.
The POST has two parts, `record` (JSON) and `audio` (the WAV, audio/wav), and `Idempotency-Key:
<uid>/<name>` for the receiver to de-duplicate. A directory copy is written to a temporary name and renamed,
so a reader never sees half a file. A WAV that is gone (deleted by hand) is logged and skipped, not retried.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import aiohttp
import structlog

from ivr.config.model import IvrConfig
from ivr.config.record_steps import RecordStep
from ivr.config.records import VoicemailConfig
from ivr.records.model import CallRecord

log = structlog.get_logger()


class VoicemailError(Exception):
    """The webhook answered with a non-2xx status."""


def recordings_of(config: IvrConfig, record: CallRecord) -> list[str]:
    """File names of the recordings a call kept (the variables its flows' record steps set)."""
    names = {step.variable for flow in config.flows.values() for step in flow.steps if isinstance(step, RecordStep)}
    return [value for name, value in record.variables if name in names and value and "/" not in value]


class VoicemailSink:
    def __init__(self, config: VoicemailConfig, run_dir: Path) -> None:
        self.config = config
        self.name = f"voicemail:{config.url or config.directory}"
        self._directory = (run_dir / config.directory) if config.directory else None
        self._session: aiohttp.ClientSession | None = None
        token = os.environ.get(config.bearer_env, "") if config.bearer_env else ""
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    async def deliver(self, batch: list[dict[str, object]]) -> None:
        for item in batch:
            path = Path(str(item["file"]))
            if not path.is_file():
                log.error("voicemail.file_missing", file=str(path))
                continue
            if self._directory is not None:
                await asyncio.to_thread(self._copy, path)
            if self.config.url:
                await self._post(path, item)

    def _copy(self, path: Path) -> None:
        assert self._directory is not None
        self._directory.mkdir(parents=True, exist_ok=True)
        tmp = self._directory / f".{path.name}.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, self._directory / path.name)

    async def _post(self, path: Path, item: dict[str, object]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))
        record = item["record"]
        uid = record.get("uid", "") if isinstance(record, dict) else ""
        form = aiohttp.FormData()
        form.add_field("record", json.dumps(record), content_type="application/json")
        form.add_field("audio", path.read_bytes(), filename=path.name, content_type="audio/wav")
        headers = {**self._auth, "Idempotency-Key": f"{uid}/{path.name}"}
        async with self._session.post(str(self.config.url), data=form, headers=headers) as response:
            if not 200 <= response.status < 300:
                raise VoicemailError(f"HTTP {response.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
