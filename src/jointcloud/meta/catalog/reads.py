"""Reading objects: a row, or an object with everything needed to read its
bytes (parts, layouts, blocks) in one statement (``open_*``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import (
    BlockRecord,
    ChecksumAlgorithm,
    LayoutRecord,
    ObjectContent,
    ObjectInfo,
)
from jointcloud.meta import tables as t
from jointcloud.meta.catalog._shared import visible
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import load_policy_required, to_checksums, to_object


async def get_object(
    conn: AsyncConnection, user_id: int, object_id: int, *, include_uncommitted: bool = False
) -> ObjectInfo | None:
    q = (
        select(t.objects)
        .join(t.packages, t.packages.c.id == t.objects.c.package_id)
        .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
        .where(t.objects.c.id == object_id, t.buckets.c.user_id == user_id)
    )
    if not include_uncommitted:
        q = q.where(visible)
    row = (await conn.execute(q)).first()
    return None if row is None else to_object(row)


async def get_object_by_path(
    conn: AsyncConnection, package_id: int, path: str, *, include_uncommitted: bool = False
) -> ObjectInfo | None:
    q = _OBJECT_AT if include_uncommitted else _VISIBLE_OBJECT_AT
    row = (await conn.execute(q, {"package_id": package_id, "path": path})).first()
    return None if row is None else to_object(row)


async def objects_at_paths(
    conn: AsyncConnection, package_id: int, paths: Sequence[str]
) -> dict[str, ObjectInfo]:
    """The visible objects at ``paths`` of one package, by path, in one
    statement per thousand paths (SQLite's bound parameters are limited)."""
    found: dict[str, ObjectInfo] = {}
    for start in range(0, len(paths), 1000):
        q = _VISIBLE_OBJECT_AT_PATHS
        params = {"package_id": package_id, "paths": list(paths[start : start + 1000])}
        for row in await conn.execute(q, params):
            info = to_object(row)
            found[info.path] = info
    return found


_OBJECT_AT = select(t.objects).where(
    t.objects.c.package_id == bindparam("package_id"), t.objects.c.path == bindparam("path")
)
_VISIBLE_OBJECT_AT = _OBJECT_AT.where(visible)
_VISIBLE_OBJECT_AT_PATHS = select(t.objects).where(
    t.objects.c.package_id == bindparam("package_id"),
    t.objects.c.path.in_(bindparam("paths", expanding=True)),
    visible,
)


def _opening(part_filter: Any = None) -> Any:
    """An object with its parts, layouts and blocks, one row per block (an
    inline layout: one row, no block). One statement, so one snapshot on
    every database: no re-check that parts and row are of one version.
    ``part_filter``: only the parts it holds for get their layout and blocks
    (the others come as one row without them, which ``_opened`` skips)."""
    L = t.layouts
    layout_of_part = L.c.id == t.object_parts.c.layout_id
    if part_filter is not None:
        layout_of_part = and_(layout_of_part, part_filter)
    return (
        select(
            t.objects,
            t.object_parts.c.offset.label("p_offset"),
            L.c.id.label("l_id"),
            L.c.policy.label("l_policy"),
            L.c.size.label("l_size"),
            L.c.segment_size.label("l_segment_size"),
            L.c.chunk_len.label("l_chunk_len"),
            L.c.wrapped_key.label("l_wrapped_key"),
            L.c.inline_data.label("l_inline"),
            t.blocks.c.idx.label("b_idx"),
            t.blocks.c.user_space_id.label("b_space"),
            t.blocks.c.key.label("b_key"),
            t.object_parts.c.checksums.label("p_checksums"),
        )
        .select_from(t.objects)
        .join(t.object_parts, t.object_parts.c.object_id == t.objects.c.id, isouter=True)
        .join(L, layout_of_part, isouter=True)
        .join(t.blocks, t.blocks.c.layout_id == L.c.id, isouter=True)
        .where(visible)
        .order_by(t.object_parts.c.seq, t.blocks.c.idx)
    )


# Positions in a row of ``_opening()``: the objects columns, then these.
_N = len(t.objects.columns)
_P_OFFSET, _L_ID, _L_POLICY, _L_SIZE, _L_SEGMENT, _L_CHUNK, _L_KEY, _L_INLINE = range(_N, _N + 8)
_B_IDX, _B_SPACE, _B_KEY, _P_CHECKSUMS = range(_N + 8, _N + 12)


def _opened(rows: Sequence[Any]) -> ObjectContent | None:
    """Rows of ``_opening()`` by position (SQLAlchemy's or the driver's)."""
    if not rows:
        return None
    parts: list[tuple[int, Any, list[BlockRecord]]] = []
    for r in rows:
        if r[_L_ID] is None:
            continue  # an object with no parts (empty)
        if not parts or parts[-1][1][_L_ID] != r[_L_ID] or parts[-1][0] != r[_P_OFFSET]:
            parts.append((r[_P_OFFSET], r, []))
        if r[_B_IDX] is not None:
            parts[-1][2].append(
                BlockRecord(index=r[_B_IDX], user_space_id=r[_B_SPACE], key=r[_B_KEY])
            )
    return ObjectContent(
        info=to_object(rows[0]),
        parts=tuple(
            (
                off,
                LayoutRecord(
                    layout_id=r[_L_ID],
                    policy=load_policy_required(r[_L_POLICY]),
                    size=r[_L_SIZE],
                    segment_size=r[_L_SEGMENT],
                    chunk_len=r[_L_CHUNK],
                    wrapped_key=r[_L_KEY],
                    blocks=tuple(blocks),
                    inline=r[_L_INLINE],
                ),
            )
            for off, r, blocks in parts
        ),
        part_checksums=tuple(to_checksums(r[_P_CHECKSUMS]) for _, r, _ in parts),
    )


_AT_PATH = (
    t.objects.c.package_id == bindparam("package_id"),
    t.objects.c.path == bindparam("path"),
)
_OPEN_BY_PATH = DriverQuery(_opening().where(*_AT_PATH))


async def open_by_path(conn: AsyncConnection, package_id: int, path: str) -> ObjectContent | None:
    """The visible object at ``path`` with everything needed to read it."""
    return _opened(await _OPEN_BY_PATH.rows(conn, {"package_id": package_id, "path": path}))


# The parts that hold a byte at or past ``first`` and at or before ``last``;
# or, for the last ``tail`` bytes, those that end past the object's size - tail.
_part_end = t.object_parts.c.offset + t.layouts.c.size
_OPEN_SPAN = DriverQuery(
    _opening(
        and_(_part_end > bindparam("first"), t.object_parts.c.offset <= bindparam("last"))
    ).where(*_AT_PATH)
)
_OPEN_TAIL = DriverQuery(
    _opening(_part_end > t.objects.c.size - bindparam("tail")).where(*_AT_PATH)
)
# An open-ended range's last byte: past any object.
_NO_END = 2**62


async def open_span(
    conn: AsyncConnection,
    package_id: int,
    path: str,
    *,
    first: int = 0,
    last: int | None = None,
    tail: int | None = None,
) -> ObjectContent | None:
    """``open_by_path`` for reading bytes ``[first, last]`` (``last`` None:
    to the end) or the last ``tail`` bytes: its ``parts`` are only those
    that hold some of them, each at its offset in the object. A ranged read
    of an object of thousands of parts (parallel downloaders read 8 MiB at a
    time) then fetches the layout and blocks of a part or two, and of every
    other part one short row, not every block of the object. (Joining parts
    to layouts first, so that the others were no rows at all, made SQLite
    materialise that join over every part of every object: a scan.)"""

    def bound(n: int) -> int:  # a 64-bit integer for the database
        return min(max(n, 0), _NO_END)

    key = {"package_id": package_id, "path": path}
    if tail is not None:
        return _opened(await _OPEN_TAIL.rows(conn, {**key, "tail": bound(tail)}))
    span = {"first": bound(first), "last": _NO_END if last is None else bound(last)}
    return _opened(await _OPEN_SPAN.rows(conn, {**key, **span}))


async def open_by_id(conn: AsyncConnection, user_id: int, object_id: int) -> ObjectContent | None:
    """``open_by_path`` by object id, among the objects of ``user_id``."""
    params = {"object_id": object_id, "user_id": user_id}
    return _opened(await _OPEN_BY_ID.rows(conn, params))


_OPEN_BY_ID = DriverQuery(
    _opening()
    .join(t.packages, t.packages.c.id == t.objects.c.package_id)
    .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
    .where(t.objects.c.id == bindparam("object_id"), t.buckets.c.user_id == bindparam("user_id"))
)


async def objects_by_ids(
    conn: AsyncConnection, user_id: int, ids: Sequence[int]
) -> dict[int, ObjectInfo]:
    if not ids:
        return {}
    q = (
        select(t.objects)
        .join(t.packages, t.packages.c.id == t.objects.c.package_id)
        .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
        .where(t.objects.c.id.in_(list(ids)), t.buckets.c.user_id == user_id, visible)
    )
    return {r.id: to_object(r) for r in await conn.execute(q)}


class PartRef(NamedTuple):
    offset: int
    layout_id: int
    checksums: dict[ChecksumAlgorithm, str]


async def part_refs(conn: AsyncConnection, object_id: int) -> list[PartRef]:
    """The object's parts in order: where each begins, its layout, its own
    checksums (none kept: empty)."""
    p = t.object_parts.c
    rows = await conn.execute(
        select(p.offset, p.layout_id, p.checksums).where(p.object_id == object_id).order_by(p.seq)
    )
    return [PartRef(int(r.offset), int(r.layout_id), to_checksums(r.checksums)) for r in rows]
