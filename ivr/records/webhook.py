"""The end-of-call webhook: each record POSTed as JSON; a failure leaves it in the webhook spool for a retry.

Delivery is at least once: a batch that fails half-way is sent again from its start, so the receiver
de-duplicates by the record's `uid` (also sent as the `Idempotency-Key` header). Any 2xx is success; any
other status, a timeout or a connection error is a failure (retried with back-off by the Outbox).
"""

from __future__ import annotations

import os

import aiohttp

from ivr.config.records import WebhookConfig


class WebhookError(Exception):
    """The endpoint answered with a non-2xx status."""


class WebhookSink:
    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.name = f"webhook:{config.url}"
        self._session: aiohttp.ClientSession | None = None
        token = os.environ.get(config.bearer_env, "") if config.bearer_env else ""
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    async def deliver(self, batch: list[dict[str, object]]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))
        for data in batch:
            headers = {**self._auth, "Idempotency-Key": str(data.get("uid", ""))}
            async with self._session.post(self.config.url, json=data, headers=headers) as response:
                if not 200 <= response.status < 300:
                    raise WebhookError(f"HTTP {response.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
