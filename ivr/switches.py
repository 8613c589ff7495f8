"""Run-time switches (outage, emergency): the operator flips them on the admin API without editing YAML.

The config declares each switch with its start state (`switches: {outage: false}`). `Switches` holds the
live states; the flow engine gets a read-only view (`view`) with each session and reads it in `switch`
conditions, so a flip reaches calls at their next branch. A flip is kept in `<run_dir>/switches.json`
(written atomically) so a restart does not silently turn an outage message off; states of switches the
config no longer declares are dropped. Writes need the admin token (`admin.token_env`, a Bearer
header); without one they are refused (403).
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import structlog
from aiohttp import web

from ivr.metrics import Metrics

log = structlog.get_logger()


class Switches:
    """Live switch states; one instance per controller."""

    def __init__(self, declared: Mapping[str, bool], state_file: Path | None, metrics: Metrics) -> None:
        self._states: dict[str, bool] = {}
        self._file = state_file
        self._metrics = metrics
        self.view: Mapping[str, bool] = MappingProxyType(self._states)
        self.reconfigure(declared)

    def reconfigure(self, declared: Mapping[str, bool]) -> None:
        """Keep the states of switches still declared (saved flips first), add new ones at their default."""
        saved = self._load()
        current = {name: self._states.get(name, saved.get(name, default)) for name, default in declared.items()}
        self._states.clear()
        self._states.update(current)
        for name, on in current.items():
            self._metrics.set("ivr_switch_on", 1.0 if on else 0.0, switch=name)

    def flip(self, name: str, on: bool, who: str) -> bool:
        """Set a declared switch; returns the previous state. KeyError for an undeclared name."""
        previous = self._states[name]
        self._states[name] = on
        self._metrics.set("ivr_switch_on", 1.0 if on else 0.0, switch=name)
        self._save()
        log.warning("switch.flipped", switch=name, on=on, previous=previous, source=who)
        return previous

    def _load(self) -> dict[str, bool]:
        if self._file is None or not self._file.exists():
            return {}
        try:
            data = json.loads(self._file.read_text())
        except (OSError, ValueError) as exc:
            log.error("switch.state_unreadable", file=str(self._file), error=str(exc))
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, bool)} \
            if isinstance(data, dict) else {}

    def _save(self) -> None:
        if self._file is None:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(self._states), sort_keys=True))
        os.replace(tmp, self._file)


def add_switch_routes(app: web.Application, switches: Switches, token: str | None) -> None:
    """GET /switches (states); POST /switches/<name> {"on": true|false} with `Authorization: Bearer <token>`."""

    async def states(_: web.Request) -> web.Response:
        return web.json_response({"switches": dict(switches.view)})

    async def flip(request: web.Request) -> web.Response:
        if token is None:
            return web.json_response({"error": "admin.token_env is not set: writes are disabled"}, status=403)
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
        name = request.match_info["name"]
        if name not in switches.view:
            return web.json_response({"error": f"unknown switch {name!r}",
                                      "known": sorted(switches.view)}, status=404)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("on"), bool):
            return web.json_response({"error": 'body must be {"on": true} or {"on": false}'}, status=400)
        previous = switches.flip(name, body["on"], request.remote or "")
        return web.json_response({"switch": name, "on": body["on"], "previous": previous})

    app.router.add_get("/switches", states)
    app.router.add_post("/switches/{name}", flip)
