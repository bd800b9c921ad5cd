"""The repair queue: layouts whose redundancy must be restored.

Enqueueing is idempotent (one row per layout); a failed attempt is retried
after a back-off; the row goes when the layout is whole again (or gone)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.meta import tables as t
from jointcloud.meta.rows import now


@dataclass(frozen=True)
class RepairItem:
    layout_id: int
    reason: str
    attempts: int


async def enqueue(conn: AsyncConnection, layout_ids: Iterable[int], reason: str) -> int:
    """Queue layouts not queued yet (and still existing); returns how many were added."""
    ids = sorted(set(layout_ids))
    if not ids:
        return 0
    present = {
        r.layout_id
        for r in await conn.execute(
            select(t.repair_queue.c.layout_id).where(t.repair_queue.c.layout_id.in_(ids))
        )
    }
    alive = {
        r.id for r in await conn.execute(select(t.layouts.c.id).where(t.layouts.c.id.in_(ids)))
    }
    fresh = [i for i in ids if i not in present and i in alive]
    if fresh:
        ts = now()
        await conn.execute(
            insert(t.repair_queue),
            [
                {
                    "layout_id": i,
                    "reason": reason[:500],
                    "enqueued_at": ts,
                    "attempts": 0,
                    "not_before": ts,
                }
                for i in fresh
            ],
        )
    return len(fresh)


async def due(conn: AsyncConnection, limit: int, at: datetime | None = None) -> list[RepairItem]:
    q = (
        select(t.repair_queue)
        .where(t.repair_queue.c.not_before <= (at or now()))
        .order_by(t.repair_queue.c.not_before, t.repair_queue.c.layout_id)
        .limit(limit)
    )
    return [RepairItem(r.layout_id, r.reason, r.attempts) for r in await conn.execute(q)]


async def count(conn: AsyncConnection) -> int:
    q = select(func.count()).select_from(t.repair_queue)
    return int((await conn.execute(q)).scalar_one())


async def done(conn: AsyncConnection, layout_id: int) -> None:
    await conn.execute(delete(t.repair_queue).where(t.repair_queue.c.layout_id == layout_id))


async def failed(conn: AsyncConnection, layout_id: int, error: str, attempts: int) -> None:
    """Back off exponentially: 30 s, 1 min, 2 min … capped at one hour."""
    delay = timedelta(seconds=min(3600, 30 * 2 ** min(attempts, 7)))
    await conn.execute(
        update(t.repair_queue)
        .where(t.repair_queue.c.layout_id == layout_id)
        .values(attempts=attempts + 1, not_before=now() + delay, last_error=error[:1000])
    )
