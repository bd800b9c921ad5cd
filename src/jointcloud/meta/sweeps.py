"""Queries of the background sweeps (repair, scrub): layouts in id order, a
layout's lifecycle state, user spaces by state across all users."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import UserSpace
from jointcloud.meta import tables as t
from jointcloud.meta.rows import to_space


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


async def spaces_in_state(conn: AsyncConnection, states: Sequence[str]) -> list[UserSpace]:
    """User spaces of every user whose state is one of ``states``."""
    q = select(t.user_spaces).where(t.user_spaces.c.state.in_(list(states)))
    return [to_space(r) for r in await conn.execute(q.order_by(t.user_spaces.c.id))]
