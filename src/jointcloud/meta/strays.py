"""Blocks owed a delete (table ``stray_blocks``): let go of (nothing
references them) while their space could not delete them. A row is written
in the transaction that lets its block go (drops or moves its block row),
and block keys are never reused, so a stray is never a live block."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.meta import tables as t
from jointcloud.meta.layouts import chunks
from jointcloud.turns import in_turns

S = t.stray_blocks


async def owe(conn: AsyncConnection, blocks: Iterable[tuple[int, str]], at: datetime) -> int:
    """Remember ``(space id, key)`` pairs to delete later; how many."""
    rows = [{"user_space_id": sid, "key": key, "since": at} for sid, key in blocks]
    if rows:
        await conn.execute(insert(S), rows)
    return len(rows)


async def forgive(conn: AsyncConnection, blocks: Sequence[tuple[int, str]]) -> None:
    """Drop the debts of ``(space id, key)`` pairs whose blocks were deleted
    (keys are never reused: a pair names one block)."""
    for sid, key in blocks:
        await conn.execute(delete(S).where(S.c.user_space_id == sid, S.c.key == key))


async def owed(
    conn: AsyncConnection, space_id: int, limit: int, before: datetime
) -> list[tuple[int, int, str]]:
    """Up to ``limit`` of the blocks ``space_id`` owes since before
    ``before``, by key: (row id, space id, key). In the order of the index
    on (space, key), so a batch reads its rows; in id order each batch
    sorted every debt of the space, and paying N debts read about
    N²/2/batch rows (a review of jobs with a large backlog)."""
    q = (
        select(S.c.id, S.c.user_space_id, S.c.key)
        .where(S.c.user_space_id == space_id, S.c.since < before)
        .order_by(S.c.key)
        .limit(limit)
    )
    return [(int(r.id), int(r.user_space_id), str(r.key)) for r in await conn.execute(q)]


async def forget(conn: AsyncConnection, space_id: int) -> int:
    """Drop the blocks ``space_id`` owed a delete (its storage moved or is
    deleted: they are no longer reached through it); how many."""
    result = await conn.execute(delete(S).where(S.c.user_space_id == space_id))
    return int(result.rowcount or 0)


async def owed_keys(
    conn: AsyncConnection, space_ids: Sequence[int], keys: Sequence[str]
) -> set[str]:
    """Which of ``keys`` (listed in a location ``space_ids`` share) are owed."""
    found: set[str] = set()
    async for part in in_turns(chunks(list(keys))):
        q = select(S.c.key).where(S.c.user_space_id.in_(list(space_ids)), S.c.key.in_(list(part)))
        found.update(str(r.key) for r in await conn.execute(q))
    return found


async def settle(conn: AsyncConnection, ids: Sequence[int]) -> None:
    """Forget blocks deleted."""
    async for part in in_turns(chunks(list(ids))):
        await conn.execute(delete(S).where(S.c.id.in_(list(part))))


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(S))).scalar_one())
