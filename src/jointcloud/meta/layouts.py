"""Layouts (immutable stored byte runs), their blocks, multipart staging and
the reference bookkeeping that tells GC what may go."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import BlockRecord, LayoutRecord, StagedLayout
from jointcloud.meta import tables as t
from jointcloud.meta.rows import dump_policy, load_policy_required, now
from jointcloud.redundancy.policy import Redundancy


async def create_pending(
    conn: AsyncConnection,
    policy: Redundancy,
    wrapped_key: bytes,
    blocks: Sequence[tuple[int, int, str]],
) -> int:
    """Record an upload's intent before any block is written, so a crash
    mid-write leaves rows GC can find rather than untracked blocks."""
    res = await conn.execute(
        insert(t.layouts).values(
            state="pending",
            policy=dump_policy(policy),
            size=0,
            segment_size=0,
            chunk_len=0,
            wrapped_key=wrapped_key,
            created_at=now(),
        )
    )
    layout_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    await conn.execute(
        insert(t.blocks),
        [{"layout_id": layout_id, "idx": i, "user_space_id": s, "key": k} for i, s, k in blocks],
    )
    return layout_id


async def activate(conn: AsyncConnection, staged: StagedLayout) -> None:
    await conn.execute(
        update(t.layouts)
        .where(t.layouts.c.id == staged.layout_id)
        .values(
            state="live",
            size=staged.size,
            segment_size=staged.segment_size,
            chunk_len=staged.chunk_len,
            # Live but unreferenced until an object or upload part points at it.
            released_at=None,
        )
    )


async def delete_layouts(conn: AsyncConnection, layout_ids: Iterable[int]) -> None:
    ids = list(layout_ids)
    if ids:
        await conn.execute(delete(t.blocks).where(t.blocks.c.layout_id.in_(ids)))
        await conn.execute(delete(t.layouts).where(t.layouts.c.id.in_(ids)))


def _referenced(layout_col: Any) -> Any:
    return or_(
        exists().where(t.object_parts.c.layout_id == layout_col),
        exists().where(t.upload_parts.c.layout_id == layout_col),
    )


async def release_unreferenced(conn: AsyncConnection, layout_ids: Iterable[int]) -> None:
    """Stamp layouts that nothing references any more; GC removes them later."""
    ids = list(set(layout_ids))
    if not ids:
        return
    await conn.execute(
        update(t.layouts)
        .where(
            t.layouts.c.id.in_(ids),
            t.layouts.c.state == "live",
            ~_referenced(t.layouts.c.id),
        )
        .values(released_at=now())
    )


async def load(conn: AsyncConnection, layout_ids: Iterable[int]) -> dict[int, LayoutRecord]:
    ids = list(set(layout_ids))
    if not ids:
        return {}
    rows = (await conn.execute(select(t.layouts).where(t.layouts.c.id.in_(ids)))).all()
    brows = (
        await conn.execute(
            select(t.blocks).where(t.blocks.c.layout_id.in_(ids)).order_by(t.blocks.c.idx)
        )
    ).all()
    by_layout: dict[int, list[BlockRecord]] = {}
    for b in brows:
        by_layout.setdefault(b.layout_id, []).append(
            BlockRecord(index=b.idx, user_space_id=b.user_space_id, key=b.key)
        )
    return {r.id: record(r, tuple(by_layout.get(r.id, []))) for r in rows}


def record(r: Any, blocks: tuple[BlockRecord, ...]) -> LayoutRecord:
    return LayoutRecord(
        layout_id=r.id,
        policy=load_policy_required(r.policy),
        size=r.size,
        segment_size=r.segment_size,
        chunk_len=r.chunk_len,
        wrapped_key=r.wrapped_key,
        blocks=blocks,
    )


async def garbage(conn: AsyncConnection, before: datetime, limit: int = 500) -> list[int]:
    """Layouts safe to delete: released, or pending (a crashed upload), before ``before``."""
    q = (
        select(t.layouts.c.id)
        .where(
            or_(
                and_(t.layouts.c.state == "live", t.layouts.c.released_at < before),
                and_(t.layouts.c.state == "pending", t.layouts.c.created_at < before),
            )
        )
        .limit(limit)
    )
    return [r.id for r in await conn.execute(q)]


async def still_garbage(conn: AsyncConnection, layout_id: int) -> bool:
    """Re-check under the delete transaction: nothing took a reference meanwhile."""
    q = select(t.layouts.c.id).where(t.layouts.c.id == layout_id, ~_referenced(t.layouts.c.id))
    return (await conn.execute(q)).first() is not None


# --- multipart staging -----------------------------------------------------


async def put_upload_part(
    conn: AsyncConnection, object_id: int, index: int, staged: StagedLayout
) -> int | None:
    """Store part ``index``; returns the layout of the part it replaced, if any."""
    old = (
        await conn.execute(
            select(t.upload_parts.c.layout_id).where(
                t.upload_parts.c.object_id == object_id, t.upload_parts.c.idx == index
            )
        )
    ).scalar_one_or_none()
    if old is not None:
        await conn.execute(
            delete(t.upload_parts).where(
                t.upload_parts.c.object_id == object_id, t.upload_parts.c.idx == index
            )
        )
    await conn.execute(
        insert(t.upload_parts).values(
            object_id=object_id,
            idx=index,
            layout_id=staged.layout_id,
            size=staged.size,
            sha256=staged.sha256,
            md5=staged.md5,
            created_at=now(),
        )
    )
    return None if old is None else int(old)


async def upload_parts(conn: AsyncConnection, object_id: int) -> dict[int, StagedLayout]:
    q = select(t.upload_parts, t.layouts.c.segment_size, t.layouts.c.chunk_len).join(
        t.layouts, t.layouts.c.id == t.upload_parts.c.layout_id
    )
    rows = await conn.execute(q.where(t.upload_parts.c.object_id == object_id))
    return {
        r.idx: StagedLayout(
            layout_id=r.layout_id,
            size=r.size,
            sha256=r.sha256,
            md5=r.md5,
            segment_size=r.segment_size,
            chunk_len=r.chunk_len,
        )
        for r in rows
    }


async def clear_upload_parts(conn: AsyncConnection, object_id: int) -> list[int]:
    ids = [
        int(r.layout_id)
        for r in await conn.execute(
            select(t.upload_parts.c.layout_id).where(t.upload_parts.c.object_id == object_id)
        )
    ]
    await conn.execute(delete(t.upload_parts).where(t.upload_parts.c.object_id == object_id))
    return ids


async def replace_block(
    conn: AsyncConnection,
    layout_id: int,
    index: int,
    old: tuple[int, str],
    new: tuple[int, str],
) -> bool:
    """Point block ``index`` of a layout at a new (space, key) — only if it
    still points at ``old`` (compare-and-swap: repair, drain and a concurrent
    process never overwrite each other's work). Returns whether it swapped."""
    res = await conn.execute(
        update(t.blocks)
        .where(
            t.blocks.c.layout_id == layout_id,
            t.blocks.c.idx == index,
            t.blocks.c.user_space_id == old[0],
            t.blocks.c.key == old[1],
        )
        .values(user_space_id=new[0], key=new[1])
    )
    return res.rowcount == 1


async def blocks_in_spaces(
    conn: AsyncConnection, space_ids: Sequence[int], limit: int, after_layout: int = 0
) -> list[tuple[int, BlockRecord]]:
    """(layout id, block) for live layouts with a block in one of the spaces."""
    if not space_ids:
        return []
    q = (
        select(t.blocks.c.layout_id, t.blocks.c.idx, t.blocks.c.user_space_id, t.blocks.c.key)
        .join(t.layouts, t.layouts.c.id == t.blocks.c.layout_id)
        .where(
            t.blocks.c.user_space_id.in_(list(space_ids)),
            t.layouts.c.state == "live",
            t.blocks.c.layout_id > after_layout,
        )
        .order_by(t.blocks.c.layout_id, t.blocks.c.idx)
        .limit(limit)
    )
    return [
        (r.layout_id, BlockRecord(index=r.idx, user_space_id=r.user_space_id, key=r.key))
        for r in await conn.execute(q)
    ]


async def abandoned_uploads(conn: AsyncConnection, before: datetime, limit: int = 500) -> list[int]:
    """Objects with an unfinished multipart upload untouched since ``before``:
    staged parts all older, or an invisible placeholder with no part at all."""
    newest = (
        select(t.upload_parts.c.object_id, func.max(t.upload_parts.c.created_at).label("last"))
        .group_by(t.upload_parts.c.object_id)
        .subquery()
    )
    stale_parts = select(newest.c.object_id).where(newest.c.last < before)
    bare_placeholders = select(t.objects.c.id).where(
        t.objects.c.committed.is_(False),
        t.objects.c.updated_at < before,
        ~exists().where(t.upload_parts.c.object_id == t.objects.c.id),
    )
    ids = {int(r[0]) for r in await conn.execute(stale_parts.limit(limit))}
    ids |= {int(r[0]) for r in await conn.execute(bare_placeholders.limit(limit))}
    return sorted(ids)[:limit]
