"""Deleting blocks that nothing references any more, and owing the ones
that could not be deleted (``meta.strays``: GC deletes them once their
space answers).

A delete is bounded (``DELETE_SECONDS``): GC deletes inside its write
transaction, on SQLite the one writer lock, and a cloud that hangs would
hold every upload for its client library's minute per block. A space that
let a delete go unanswered is not asked again for ``SILENT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import structlog

from jointcloud.core.models import LayoutRecord, SpaceState, StagedLayout
from jointcloud.core.userspaces import SpacePool
from jointcloud.meta import strays
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.redundancy.stream import DELETE_SECONDS, PUT_PARALLEL

log = structlog.get_logger(__name__)

# A space that let a block delete go unanswered for DELETE_SECONDS (the
# block is owed) is not asked to delete again for this long.
SILENT_SECONDS = 60.0


class BlockDeletes:
    """The deletes of one process's block store; ``on_slow_space`` is
    called with a space whose delete went unanswered (never raises)."""

    def __init__(self, db: Database, pool: SpacePool, on_slow_space: Callable[[int], None]) -> None:
        self.db = db
        self.pool = pool
        self.on_slow_space = on_slow_space
        self._silent: dict[int, float] = {}  # space id -> until when deletes skip it

    async def delete_blocks(
        self, records: Iterable[LayoutRecord | StagedLayout]
    ) -> list[tuple[int, str]]:
        """Delete the blocks of ``records``, several at once; returns the
        (space id, key) of those that could not be deleted, for the caller
        to owe (``strays.owe``) in the transaction that drops their rows."""
        return await self.delete_keys([(b.user_space_id, b.key) for r in records for b in r.blocks])

    async def delete_keys(self, blocks: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
        """Delete (space id, key) blocks, several at once; the ones that
        could not be deleted. A space that is Unavailable, or that let a
        delete go unanswered for ``DELETE_SECONDS`` in the last
        ``SILENT_SECONDS``, is not asked: callers may hold the database's
        write lock (GC does), and a cloud that hangs would hold it for the
        client library's minute per block. Deletes are idempotent, so one
        that lands after its time is harmless: the block is owed anyway.

        A space's first block goes alone, the rest once it is answered: GC
        deletes many layouts' blocks at once, and a space that hangs would
        be sent PUT_PARALLEL deletes before the first of them timed out
        (found by the review of jobs with a large backlog)."""
        gate = asyncio.Semaphore(PUT_PARALLEL)
        answered: dict[int, asyncio.Event] = {}  # space id -> its first delete ended
        leads: set[int] = set()  # the positions of those first deletes
        for i, (sid, _) in enumerate(blocks):
            if sid not in answered:
                answered[sid] = asyncio.Event()
                leads.add(i)

        def asked(space_id: int) -> bool:
            rec = self.pool.records.get(space_id)
            if rec is not None and rec.state == SpaceState.UNAVAILABLE:
                return False
            return self._silent.get(space_id, 0.0) <= time.monotonic()

        async def one(space_id: int, key: str, lead: bool) -> bool:
            if not lead:
                await answered[space_id].wait()
            try:
                return await delete(space_id, key)
            finally:
                if lead:
                    answered[space_id].set()

        async def delete(space_id: int, key: str) -> bool:
            if not asked(space_id):
                return False
            async with gate:
                if not asked(space_id):
                    return False
                try:
                    async with asyncio.timeout(DELETE_SECONDS):
                        space = await self.pool.get_by_id(space_id)
                        await space.delete(key)
                    return True
                except TimeoutError:
                    self._silent[space_id] = time.monotonic() + SILENT_SECONDS
                    log.warning(
                        "block delete not answered in time; its space is not asked again "
                        "for a while",
                        space=space_id,
                        seconds=DELETE_SECONDS,
                    )
                    self.on_slow_space(space_id)
                    return False
                except Exception as exc:  # owed: GC deletes it when the space answers
                    log.warning("block delete failed", key=key, error=str(exc))
                    return False

        done = await asyncio.gather(
            *(one(sid, key, i in leads) for i, (sid, key) in enumerate(blocks))
        )
        return [b for b, ok in zip(blocks, done, strict=True) if not ok]

    async def owe(self, blocks: Sequence[tuple[int, str]]) -> None:
        """Remember blocks let go of but not deleted, for GC to delete once
        their space answers; in a transaction of its own, for blocks whose
        rows are already gone or moved."""
        if not blocks:
            return
        try:
            async with self.db.write() as conn:
                await strays.owe(conn, blocks, now())
        except Exception as exc:  # then only fsck --repair finds them
            log.warning(
                "could not remember blocks to delete later", count=len(blocks), error=repr(exc)
            )

    async def delete_owed(self, blocks: Sequence[tuple[int, str]]) -> None:
        """Delete blocks already owed (by the transaction that let them go)
        and forget the debts of those deleted. A block not deleted, or whose
        debt could not be forgotten, stays owed: GC deletes it (again: deletes
        are idempotent) after its delay."""
        if not blocks:
            return
        left = set(await self.delete_keys(blocks))
        done = [b for b in blocks if b not in left]
        if not done:
            return
        try:
            async with self.db.write() as conn:
                await strays.forgive(conn, done)
        except Exception as exc:
            log.warning(
                "could not forget deleted blocks; GC will", count=len(done), error=repr(exc)
            )

    async def pay(
        self, space_id: int, before: datetime, batch: int, limit: int | None = None
    ) -> int:
        """Delete the blocks ``space_id`` owes since before ``before`` and
        forget their debts: one first (a space that still fails costs one
        delete), then ``batch`` at a time, until its first batch that fails
        or ``limit`` are paid; how many were (GC, and a space's delete)."""
        paid, size = 0, 1
        while limit is None or paid < limit:
            if limit is not None:
                size = min(size, limit - paid)
            async with self.db.read() as conn:
                rows = await strays.owed(conn, space_id, size, before)
            if not rows:
                break
            left = set(await self.delete_keys([(sid, key) for _, sid, key in rows]))
            done = [row_id for row_id, sid, key in rows if (sid, key) not in left]
            async with self.db.write() as conn:
                await strays.settle(conn, done)
            paid += len(done)
            if left:
                break
            size = batch
        return paid
