"""What the floor servers of ``floor_s3.py`` and ``floor_v1.py`` share: the
least a durable write needs (rows committed together, each answered only
after its commit's sync), and serving on uvicorn + httptools + uvloop
(``jcs serve``'s stack) as one or several processes.

A floor server is a measuring stick, not a store. It does only the work
that cannot be skipped, so that what ``jcs serve`` spends above it is the
price of everything else: its checks, its records, its layers."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]
S = TypeVar("S")

# One AES-256 key for every process of a floor (a store's key would come
# from its master key; deriving it once costs nothing per request).
KEY = hashlib.sha256(b"floor key").digest()


class GroupCommit:
    """A SQLite file in WAL with ``synchronous=FULL``; the writes that arrive
    while a commit runs wait for the next one, which takes them all (one
    sync for many writes, as ``jcs serve``'s write groups). ``before`` runs
    in the committing thread ahead of each commit, given the group's
    statements (a directory's sync)."""

    def __init__(
        self,
        path: str,
        schema: str,
        before: Callable[[list[tuple[str, tuple[Any, ...]]]], None] | None = None,
    ) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=10000")  # the other processes of a floor
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(schema)
        self.before = before
        self.waiting: list[tuple[str, tuple[Any, ...], asyncio.Future[int]]] = []
        self.committing = False
        self.committer = ThreadPoolExecutor(1)

    def _commit(self, batch: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        if self.before is not None:
            self.before(batch)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            ids = [self.db.execute(sql, row).lastrowid or 0 for sql, row in batch]
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        return ids

    async def _commit_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            batch, self.waiting = self.waiting, []
            self.committing = True
            try:
                ids = await loop.run_in_executor(
                    self.committer, self._commit, [(sql, row) for sql, row, _ in batch]
                )
            except Exception as exc:  # every writer of the group hears of it, none hangs
                for _, _, done in batch:
                    done.set_exception(exc)
                continue
            finally:
                self.committing = False
            for (_, _, done), row_id in zip(batch, ids, strict=True):
                done.set_result(row_id)

    async def write(self, sql: str, row: tuple[Any, ...]) -> int:
        """Returns the row's id once it is committed and synced."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        self.waiting.append((sql, row, done))
        if len(self.waiting) == 1 and not self.committing:
            loop.call_soon(lambda: asyncio.ensure_future(self._commit_waiting()))
        return await done


def asgi(
    make: Callable[[], S], handle: Callable[[S, dict[str, Any], Receive, Send], Awaitable[None]]
) -> App:
    """An ASGI app: ``make()`` at start-up (each process its own state),
    then ``handle(state, scope, receive, send)`` for each request."""
    state: list[S] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await handle(state[0], scope, receive, send)
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                state.append(make())
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


async def read_body(receive: Receive) -> bytes:
    """A request's whole body."""
    pieces = []
    more = True
    while more:
        msg = await receive()
        pieces.append(msg.get("body", b""))
        more = msg.get("more_body", False)
    return b"".join(pieces)


async def answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(app: App, script: str, port: int, workers: int) -> None:
    """Serve ``app`` on ``port``; with ``workers`` > 1, as that many
    processes (``script --serve PORT`` again), each with a listening socket
    of its own (``SO_REUSEPORT``), as ``jcs serve --workers`` does: the
    kernel spreads the connections evenly over them (with uvicorn's own
    workers, sharing one socket, the process that wakes first takes one)."""
    import uvicorn

    children = [
        subprocess.Popen([sys.executable, script, "--serve", str(port)], env=os.environ)
        for _ in range(workers - 1)
    ]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", lifespan="on", log_level="warning", access_log=False
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for child in children:
            child.terminate()
            child.wait()


def parse_or_serve(ap: argparse.ArgumentParser, app: App, script: str) -> argparse.Namespace | None:
    """The bench's arguments; or, run as ``script --serve PORT [--workers
    N]`` (how ``start`` runs the floor), serve ``app`` and return None."""
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is None:
        return args
    serve(app, script, args.serve, args.workers)
    return None


def start(script: str, port: int, workers: int, env: dict[str, str], log: Any) -> Any:
    """``script --serve PORT --workers N`` in the background, once each of
    its processes listens."""
    from v1_api import wait_listening

    proc = subprocess.Popen(
        [sys.executable, script, "--serve", str(port), "--workers", str(workers)],
        env=dict(os.environ, **env),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_listening(proc.pid, port, workers)
    return proc
