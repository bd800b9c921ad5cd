"""Queries of the consistency check (``core.fsck``): every user space, the
live layouts page by page, which listed keys some block row references, and
the committed objects page by page with their parts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import ContentHash, LayoutRecord, UserSpace
from jointcloud.meta import layouts
from jointcloud.meta import tables as t
from jointcloud.meta.rows import load_hash, to_space


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


@dataclass(frozen=True)
class PartOf:
    """One part of an object as fsck sees it: where it starts, its layout,
    and that layout's size and whether it is in use (None: no such row)."""

    offset: int
    layout_id: int
    size: int | None
    in_use: bool


@dataclass(frozen=True)
class ObjectParts:
    object_id: int
    package_id: int
    path: str
    size: int
    file_hash: ContentHash
    parts: tuple[PartOf, ...]


async def object_page(
    conn: AsyncConnection, after: int, limit: int, only: Sequence[int] | None = None
) -> list[ObjectParts]:
    """Committed objects with an id above ``after`` (or those of ``only``),
    in id order, with their parts in order. One statement: on PostgreSQL
    one snapshot, so an overwrite committed meanwhile is seen whole or not
    at all (two statements could pair one version's row with another's
    parts, which fsck would report)."""
    o = t.objects
    chosen = select(o.c.id, o.c.package_id, o.c.path, o.c.size, o.c.file_hash).where(
        o.c.committed.is_(True)
    )
    if only is not None:
        chosen = chosen.where(o.c.id.in_(list(only)))
    else:
        chosen = chosen.where(o.c.id > after).order_by(o.c.id).limit(limit)
    sub = chosen.subquery()
    p, lay = t.object_parts, t.layouts
    q = (
        select(
            sub,
            p.c.seq,
            p.c.offset,
            p.c.layout_id,
            lay.c.size.label("layout_size"),
            and_(*_in_use()).label("in_use"),
        )
        .outerjoin(p, p.c.object_id == sub.c.id)
        .outerjoin(lay, lay.c.id == p.c.layout_id)
        .order_by(sub.c.id, p.c.seq)
    )
    found: dict[int, tuple[tuple[int, str, int, str], list[PartOf]]] = {}
    for r in await conn.execute(q):
        _, parts = found.setdefault(
            int(r.id), ((int(r.package_id), str(r.path), int(r.size), str(r.file_hash)), [])
        )
        if r.layout_id is not None:
            size = None if r.layout_size is None else int(r.layout_size)
            parts.append(PartOf(int(r.offset), int(r.layout_id), size, bool(r.in_use)))
    return [
        ObjectParts(oid, package_id, path, size, load_hash(file_hash), tuple(parts))
        for oid, ((package_id, path, size, file_hash), parts) in found.items()
    ]
