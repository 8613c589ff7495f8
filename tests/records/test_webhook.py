"""The end-of-call webhook against a real local aiohttp server that fails, then recovers: nothing lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from recordkit import sample

from ivr.config.records import WebhookConfig
from ivr.metrics import Metrics
from ivr.records.outbox import Outbox
from ivr.records.spool import Spool
from ivr.records.webhook import WebhookSink


class Receiver:
    """Answers 503 until `healthy`, then 200; keeps what it accepted by Idempotency-Key."""

    def __init__(self) -> None:
        self.healthy = False
        self.refused = 0
        self.accepted: dict[str, dict[str, Any]] = {}
        self.auth: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        if not self.healthy:
            self.refused += 1
            return web.Response(status=503)
        body = await request.json()
        assert request.headers["Idempotency-Key"] == body["uid"]
        self.auth.add(request.headers.get("Authorization", ""))
        self.accepted[body["uid"]] = body
        return web.Response(status=204)


async def test_records_wait_in_the_spool_until_the_endpoint_recovers(
        tmp_path: Path, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/calls", receiver.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    monkeypatch.setenv("IVR_TEST_WEBHOOK_TOKEN", "s3cret")
    sink = WebhookSink(WebhookConfig(name="crm", url=f"http://127.0.0.1:{server.port}/calls", timeout=2, retry_max=0.2,
                                     bearer_env="IVR_TEST_WEBHOOK_TOKEN"))
    outbox = Outbox(Spool(tmp_path / "webhook", name="webhook"), sink, Metrics(), batch_wait=0.02, batch_size=5,
                    retry_max=0.2)
    outbox.start()
    records = [sample(f"w{i}", started_at=1000.0 + i) for i in range(12)]
    for record in records:
        outbox.submit(record)
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while receiver.refused < 3:
        assert loop.time() < end
        await asyncio.sleep(0.02)
    assert outbox.spool.pending() and not receiver.accepted
    receiver.healthy = True
    while len(receiver.accepted) < len(records) or outbox.spool.pending():
        assert loop.time() < end, f"{len(receiver.accepted)} delivered"
        await asyncio.sleep(0.02)
    await outbox.stop(5)
    await sink.close()
    assert receiver.accepted == {r["uid"]: r for r in records}  # the record, unchanged
    assert receiver.auth == {"Bearer s3cret"}
