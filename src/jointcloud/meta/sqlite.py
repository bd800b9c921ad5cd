"""SQLite without a thread hop per call.

aiosqlite runs every sqlite3 call (execute, fetch, cursor close...) in a
worker thread and wakes the event loop for each result: about a hundred
hops for one small upload, each costing more than the statement itself (a
point lookup or insert in SQLite's page cache takes microseconds). Here the
same aiosqlite API runs each call on the event loop's thread instead, as a
coroutine that never suspends, so SQLAlchemy's async engine drives it at the
cost of a greenlet switch.

What could block the loop, and why it does not:

* Disk writes and syncs. ``COMMIT`` (which writes the log) runs in a
  worker thread; commits do not sync (``synchronous=NORMAL``), the group
  commit's ``fdatasync`` runs in that same thread call, after it
  (``InlineConnection.after_commit``, set by ``Database._end_group``).
  Automatic checkpoints (which sync) are off on these connections; the
  ``Database`` checkpoints in a thread of its own once the log has grown
  (``checkpoint``).
* Lock waits. Processes writing the same file through ``Database`` (the
  workers of ``jcs serve --workers``, a ``jcs admin`` command while the
  server runs) take turns on a lock of their own first, waiting for it in a
  worker thread (``writerlock.py``). A writer that does not take it would
  make ``BEGIN IMMEDIATE`` wait in the busy handler: the busy timeout here
  is short (``BUSY_MS``) and the ``Database`` retries a refused ``BEGIN
  IMMEDIATE`` with ``asyncio.sleep`` in between, so the loop is never held
  for long.
* Long scans: the repositories page every scan (500 rows at most).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite

BUSY_MS = 20  # the busy handler's wait, per statement, on the loop's thread


class _InlineQueue:
    """Stands in for aiosqlite's queue to its worker thread (SQLAlchemy's
    adapter puts work there directly): runs the work at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the waiter, as the thread would
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the caller's thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=256)
        self._tx = _InlineQueue()  # type: ignore[assignment]
        self.after_commit: Callable[[], None] | None = None

    def __await__(self) -> Any:  # no worker thread to start
        return self._connect().__await__()

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself (used on the loop's thread only)."""
        assert self._connection is not None
        return self._connection

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def commit(self) -> None:
        """COMMIT writes the transaction's pages to the write-ahead log: the
        one call that writes to the disk, where it can wait behind other
        files' syncs. It runs in a worker thread (nobody else uses this
        connection meanwhile: the group holds it), and so does
        ``after_commit`` if one is set for this commit (the group commit's
        sync of the log): one trip to a thread and back instead of two,
        each a turn of a busy event loop that every upload of the group
        waits for."""
        after, self.after_commit = self.after_commit, None
        conn = self._conn

        def commit() -> None:
            conn.commit()
            if after is not None:
                after()

        await asyncio.to_thread(commit)

    def stop(self) -> asyncio.Future[Any] | None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        return None

    async def close(self) -> None:
        self.stop()

    def __del__(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def inline_creator(path: str) -> Callable[[], Any]:
    """``async_creator`` for SQLAlchemy's aiosqlite dialect."""

    def connector() -> sqlite3.Connection:
        # check_same_thread off: a connection the pool drops may be
        # finalised from another thread (it is only ever used on the loop's).
        conn = sqlite3.connect(path, timeout=BUSY_MS / 1000, check_same_thread=False)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # Database.checkpoint does it
        return conn

    async def create() -> InlineConnection:
        return await InlineConnection(connector)._connect()

    return create


def checkpoint(path: str) -> None:
    """Copy the write-ahead log into the database file (PASSIVE: never
    waits for readers or writers), on a connection of its own, in a worker
    thread. SQLite syncs the log before and the database after."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()
