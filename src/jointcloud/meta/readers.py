"""Read connections kept out of the pool between reads.

Taking a connection out of the pool and giving it back costs more than the
point lookup a download makes: checkout, checkin and its reset, each
through a greenlet (and on PostgreSQL the checks of
``driver.check_on_checkout``). So a few readers stay out between reads,
for a moment only: one that waited longer goes back. Kept readers skip
the pool's checkout check, so one whose server went away is dropped when
taken or given back.
"""

from __future__ import annotations

import contextlib
import time

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jointcloud.meta.driver import server_gone

# How many readers stay out at most, and for how long.
IDLE_READERS = 8
READER_IDLE_SECONDS = 1.0


class KeptReaders:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._idle: list[tuple[AsyncConnection, float]] = []  # most recent last

    async def take(self) -> AsyncConnection:
        """A kept reader, else one from the pool."""
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            gone = server_gone(conn)
            if now - since <= READER_IDLE_SECONDS and not gone:
                return conn
            await _let_go(conn, gone)
        return await self._engine.connect()

    async def give_back(self, conn: AsyncConnection, clean: bool) -> None:
        """Keep a reader out of the pool if it is ``clean`` (no transaction
        left) and there is room; otherwise it goes back."""
        gone = server_gone(conn)
        if clean and not gone and not conn.invalidated and len(self._idle) < IDLE_READERS:
            self._idle.append((conn, time.monotonic()))
        else:
            await _let_go(conn, gone)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()


async def _let_go(conn: AsyncConnection, gone: bool) -> None:
    """Close a reader; one whose server went away is invalidated first, so
    the pool discards it instead of resetting it over a dead socket."""
    if gone:
        with contextlib.suppress(Exception):
            await conn.invalidate()
    await conn.close()
