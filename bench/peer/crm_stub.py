"""The peer kit's CRM stub (from the peer kit, /work/shared/peers/kit/crm.py): the HTTP lookup of the peer
call. GET /lookupj?caller=..&digit=.. -> {"queue": "sales" | "support" | "default"}; GET /stats -> hits.

    .venv/bin/python bench/peer/crm_stub.py 25082        # 127.0.0.1 only
"""

from __future__ import annotations

import sys

from aiohttp import web

HITS = web.AppKey("hits", list)


def _pick(req: web.Request) -> str:
    return {"1": "sales", "2": "support"}.get(req.query.get("digit", ""), "default")


async def lookupj(req: web.Request) -> web.Response:
    req.app[HITS][0] += 1
    return web.json_response({"queue": _pick(req)})


async def stats(req: web.Request) -> web.Response:
    return web.Response(text=str(req.app[HITS][0]))


def main() -> None:
    app = web.Application()
    app[HITS] = [0]
    app.add_routes([web.get("/lookupj", lookupj), web.get("/stats", stats)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
