"""Queries of the background sweeps (repair, scrub): layouts in id order, a
layout's lifecycle state, user spaces by state across all users."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.meta import tables as t


async def live_layout_ids(conn: AsyncConnection, after: int, limit: int) -> list[int]:
    """Ids of live, still referenced layouts above ``after``, ascending."""
    q = (
        select(t.layouts.c.id)
        .where(
            t.layouts.c.id > after,
            t.layouts.c.state == "live",
            t.layouts.c.released_at.is_(None),
        )
        .order_by(t.layouts.c.id)
        .limit(limit)
    )
    return [int(r.id) for r in await conn.execute(q)]


async def layout_status(conn: AsyncConnection, layout_id: int) -> str | None:
    """``live``, ``released`` (GC will remove it), ``pending``, or None if gone."""
    row = (
        await conn.execute(
            select(t.layouts.c.state, t.layouts.c.released_at).where(t.layouts.c.id == layout_id)
        )
    ).first()
    if row is None:
        return None
    if row.state == "live" and row.released_at is not None:
        return "released"
    return str(row.state)
