"""The GC delay each running server process announced (table ``gc_holds``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.meta.tables import gc_holds as H


async def announce(conn: AsyncConnection, owner: str, delay_seconds: float, at: datetime) -> None:
    maker = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = maker(H).values(owner=owner, delay_seconds=delay_seconds, seen_at=at)
    stmt = stmt.on_conflict_do_update(
        index_elements=[H.c.owner],
        set_={"delay_seconds": stmt.excluded.delay_seconds, "seen_at": stmt.excluded.seen_at},
    )
    await conn.execute(stmt)


async def withdraw(conn: AsyncConnection, owner: str) -> None:
    await conn.execute(delete(H).where(H.c.owner == owner))


async def announced(conn: AsyncConnection, since: datetime) -> list[tuple[str, float]]:
    """(owner, delay in seconds) of every announcement made since ``since``."""
    rows = await conn.execute(select(H.c.owner, H.c.delay_seconds).where(H.c.seen_at >= since))
    return [(str(r.owner), float(r.delay_seconds)) for r in rows]


async def forget_before(conn: AsyncConnection, before: datetime) -> int:
    """Drop announcements not renewed since ``before`` (processes gone)."""
    result = await conn.execute(delete(H).where(H.c.seen_at < before))
    return int(result.rowcount or 0)
