"""The framework's ceiling: a bare ASGI app on the same server stack as
``jcs serve`` (uvicorn + httptools + uvloop) that only reads request bodies
and streams bytes back in 1 MiB chunks."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

CHUNK = b"\xa5" * (1 << 20)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] == "POST":
        total = 0
        more = True
        while more:
            msg = await receive()
            total += len(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = str(total).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    n = int(scope["query_string"].decode().partition("=")[2] or 0)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", str(n).encode()),
                (b"content-type", b"application/octet-stream"),
            ],
        }
    )
    if n == 0:
        await send({"type": "http.response.body", "body": b""})
    while n > 0:
        piece = CHUNK if n >= len(CHUNK) else CHUNK[:n]
        n -= len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": n > 0})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
