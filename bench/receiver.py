"""A webhook receiver for benchmarks, run as its own process.

    python bench/receiver.py PORT [--hang]

Answers 200 to every POST as cheaply as it can. Status webhooks are only counted; final
reports are parsed for their `dispatch_uuid` and arrival time. `GET /stats` returns
`{"status": n, "final": n, "finals": {dispatch_uuid: unix_ms, ...}}` (finals only when
`?finals=1`), and `POST /reset` starts counting again. With `--hang`, webhooks are accepted,
counted and never answered (a receiver that hangs); `/stats` still answers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from aiohttp import web

status_count = 0
final_count = 0
finals: dict[str, int] = {}


HANG = "--hang" in sys.argv


async def status(request: web.Request) -> web.Response:
    global status_count
    await request.read()
    status_count += 1
    if HANG:
        await asyncio.sleep(3600)
    return web.Response(status=200)


async def final(request: web.Request) -> web.Response:
    global final_count
    body = await request.read()
    final_count += 1
    if HANG:
        await asyncio.sleep(3600)
    finals.setdefault(json.loads(body)["dispatch_uuid"], time.time_ns() // 1_000_000)
    return web.Response(status=200)


async def stats(request: web.Request) -> web.Response:
    answer: dict[str, object] = {"status": status_count, "final": final_count}
    if request.query.get("finals"):
        answer["finals"] = finals
    return web.json_response(answer)


async def reset(request: web.Request) -> web.Response:
    global status_count, final_count
    status_count = final_count = 0
    finals.clear()
    return web.Response(status=204)


def main() -> None:
    app = web.Application()
    app.add_routes(
        [
            web.post("/status", status),
            web.post("/final", final),
            web.get("/stats", stats),
            web.post("/reset", reset),
        ]
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
