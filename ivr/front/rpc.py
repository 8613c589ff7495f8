"""An asyncio client of Kamailio's `jsonrpcs` module over its Unix datagram socket (never the SIP port).

One request per datagram: the client binds its own socket in Linux's abstract namespace (nothing on disk to
clean up), sends a JSON-RPC 2.0 request to the front's socket and waits, bounded, for the answer Kamailio sends
back to that address. A dead or slow front is an `RpcUnavailable` (an expected failure the caller logs as a
state); an error object in the answer is an `RpcError`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import socket
from pathlib import Path

from ivr.errors import IvrError

MAX_DATAGRAM = 65535
_ids = itertools.count(1)


class RpcUnavailable(IvrError):
    """The front did not answer: no socket, connection refused, or no answer within the timeout."""


class RpcError(IvrError):
    """The front answered with a JSON-RPC error (unknown method, bad parameters)."""


class KamailioRpc:
    """`await rpc.call("stats.get_statistics", "all")` -> the `result` member of the answer."""

    def __init__(self, socket_path: Path, *, timeout: float = 1.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def call(self, method: str, *params: str | int) -> object:
        request_id = next(_ids)
        request = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": request_id})
        data = await self._exchange(request.encode())
        try:
            answer = json.loads(data)
        except ValueError as exc:
            raise RpcError(f"{method}: answer is not JSON: {data[:200]!r}") from exc
        if not isinstance(answer, dict):
            raise RpcError(f"{method}: answer is not a JSON-RPC object")
        if "error" in answer:
            error = answer["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise RpcError(f"{method}: {message}")
        return answer.get("result")

    async def _exchange(self, payload: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.bind(f"\0ivr-rpc-{os.getpid()}-{secrets.token_hex(6)}")
            try:
                sock.connect(str(self.socket_path))
                await loop.sock_sendall(sock, payload)
                return await asyncio.wait_for(loop.sock_recv(sock, MAX_DATAGRAM), self.timeout)
            except TimeoutError as exc:
                raise RpcUnavailable(f"no answer from {self.socket_path} within {self.timeout:g} s") from exc
            except OSError as exc:
                raise RpcUnavailable(f"{self.socket_path}: {exc.strerror or exc}") from exc
