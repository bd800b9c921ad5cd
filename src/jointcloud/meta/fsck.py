"""Queries of the consistency check (``core.fsck``): every user space, the
live layouts page by page, and which listed keys some block row references."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import LayoutRecord, UserSpace
from jointcloud.meta import layouts
from jointcloud.meta import tables as t
from jointcloud.meta.rows import to_space


def _in_use() -> tuple[ColumnElement[bool], ...]:
    # Live and referenced (by an object, or as a part of a multipart upload in
    # flight): released layouts wait for GC and are not checked.
    return (t.layouts.c.state == "live", t.layouts.c.released_at.is_(None))


async def all_spaces(conn: AsyncConnection) -> list[UserSpace]:
    """The user spaces of every user."""
    q = select(t.user_spaces).order_by(t.user_spaces.c.id)
    return [to_space(r) for r in await conn.execute(q)]


async def count_live(conn: AsyncConnection) -> tuple[int, int]:
    """(layouts, blocks) in use."""
    n_layouts = (
        await conn.execute(select(func.count()).select_from(t.layouts).where(*_in_use()))
    ).scalar_one()
    n_blocks = (
        await conn.execute(
            select(func.count())
            .select_from(t.blocks)
            .join(t.layouts, t.layouts.c.id == t.blocks.c.layout_id)
            .where(*_in_use())
        )
    ).scalar_one()
    return int(n_layouts), int(n_blocks)


async def live_page(conn: AsyncConnection, after: int, limit: int) -> list[LayoutRecord]:
    """Layouts in use with an id above ``after``, in id order, with their blocks."""
    q = (
        select(t.layouts.c.id)
        .where(*_in_use(), t.layouts.c.id > after)
        .order_by(t.layouts.c.id)
        .limit(limit)
    )
    ids = [int(r.id) for r in await conn.execute(q)]
    records = await layouts.load(conn, ids)
    return [records[i] for i in ids if i in records]


async def still_in_use(conn: AsyncConnection, layout_ids: Sequence[int]) -> dict[int, LayoutRecord]:
    """The current rows of those layouts that are still in use."""
    if not layout_ids:
        return {}
    q = select(t.layouts.c.id).where(*_in_use(), t.layouts.c.id.in_(list(layout_ids)))
    ids = [int(r.id) for r in await conn.execute(q)]
    return await layouts.load(conn, ids)


async def referenced_keys(
    conn: AsyncConnection, space_ids: Sequence[int], keys: Sequence[str]
) -> set[str]:
    """Those of ``keys`` that a block row of any layout (pending, live or
    released) in one of ``space_ids`` points at."""
    if not keys or not space_ids:
        return set()
    q = select(t.blocks.c.key).where(
        t.blocks.c.user_space_id.in_(list(space_ids)), t.blocks.c.key.in_(list(keys))
    )
    return {str(r.key) for r in await conn.execute(q)}
