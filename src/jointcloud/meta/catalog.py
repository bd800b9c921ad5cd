"""Buckets, packages and objects (the namespace), scoped by owner."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import and_, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import (
    BlockRecord,
    Bucket,
    ChecksumAlgorithm,
    ContentHash,
    CorsRule,
    LayoutRecord,
    ListedObject,
    ObjectContent,
    ObjectEntry,
    ObjectInfo,
    ObjectMeta,
    Package,
)
from jointcloud.meta import layouts, uploads
from jointcloud.meta import tables as t
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import (
    aware,
    checksum_values,
    dump_hash,
    dump_map,
    dump_policy,
    load_map,
    load_policy,
    load_policy_required,
    meta_values,
    now,
    stamp,
    to_bucket,
    to_checksums,
    to_entry,
    to_listed,
    to_object,
    to_package,
)
from jointcloud.redundancy.policy import NonePolicy, Redundancy

# --- buckets ---------------------------------------------------------------


# The columns a Bucket shows (the passphrase verifier stays in meta.keys).
_BUCKET_COLUMNS = (
    t.buckets.c.id,
    t.buckets.c.user_id,
    t.buckets.c.name,
    t.buckets.c.project_id,
    t.buckets.c.redundancy,
    t.buckets.c.created_at,
)
# The columns a Package is made of (not the cors column of migration 0009:
# code reading packages also runs against a database not yet migrated).
_PACKAGE_COLUMNS: tuple[Any, ...] = (
    t.packages.c.id,
    t.packages.c.bucket_id,
    t.packages.c.name,
    t.packages.c.redundancy,
    t.packages.c.created_at,
)


async def create_bucket(
    conn: AsyncConnection, user_id: int, name: str, policy: Redundancy | None
) -> Bucket:
    res = await conn.execute(
        insert(t.buckets).values(
            user_id=user_id,
            name=name,
            project_id=str(uuid.uuid4()),
            redundancy=dump_policy(policy),
            created_at=now(),
        )
    )
    bucket = await get_bucket(conn, user_id, int(res.inserted_primary_key[0]))  # type: ignore[index]
    assert bucket is not None
    return bucket


async def get_bucket(conn: AsyncConnection, user_id: int, bucket_id: int) -> Bucket | None:
    q = select(*_BUCKET_COLUMNS).where(t.buckets.c.id == bucket_id, t.buckets.c.user_id == user_id)
    row = (await conn.execute(q)).first()
    return None if row is None else to_bucket(row)


async def get_bucket_by_name(conn: AsyncConnection, user_id: int, name: str) -> Bucket | None:
    q = select(*_BUCKET_COLUMNS).where(t.buckets.c.name == name, t.buckets.c.user_id == user_id)
    row = (await conn.execute(q)).first()
    return None if row is None else to_bucket(row)


async def list_buckets(conn: AsyncConnection, user_id: int) -> list[Bucket]:
    q = select(*_BUCKET_COLUMNS).where(t.buckets.c.user_id == user_id).order_by(t.buckets.c.id)
    return [to_bucket(r) for r in await conn.execute(q)]


async def set_bucket_policy(
    conn: AsyncConnection, bucket_id: int, policy: Redundancy | None
) -> None:
    """Set the default policy; objects of the packages that inherit it and
    were written before now are re-encoded to it (``meta.recode``)."""
    await conn.execute(
        update(t.buckets)
        .where(t.buckets.c.id == bucket_id)
        .values(redundancy=dump_policy(policy), policy_changed_at=now())
    )


async def delete_bucket(conn: AsyncConnection, bucket_id: int) -> None:
    await conn.execute(delete(t.buckets).where(t.buckets.c.id == bucket_id))


# --- packages --------------------------------------------------------------


async def create_package(
    conn: AsyncConnection, bucket_id: int, name: str, policy: Redundancy | None
) -> Package:
    res = await conn.execute(
        insert(t.packages).values(
            bucket_id=bucket_id, name=name, redundancy=dump_policy(policy), created_at=now()
        )
    )
    row = (
        await conn.execute(
            select(*_PACKAGE_COLUMNS).where(t.packages.c.id == res.inserted_primary_key[0])  # type: ignore[index]
        )
    ).one()
    return to_package(row)


def _owned_packages(user_id: int):  # type: ignore[no-untyped-def]
    return (
        select(*_PACKAGE_COLUMNS, t.buckets.c.redundancy.label("bucket_redundancy"))
        .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
        .where(t.buckets.c.user_id == user_id)
    )


async def package_policy(
    conn: AsyncConnection, user_id: int, package_id: int
) -> tuple[Package, Redundancy] | None:
    """The package and the policy its uploads get: its own, else its bucket's."""
    columns: tuple[Any, ...] = (
        *_PACKAGE_COLUMNS,
        t.buckets.c.redundancy.label("bucket_redundancy"),
    )
    q = (
        select(*columns)
        .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
        .where(t.packages.c.id == package_id, t.buckets.c.user_id == user_id)
    )
    row = (await conn.execute(q)).first()
    if row is None:
        return None
    pkg = to_package(row)
    return pkg, pkg.redundancy or load_policy(row.bucket_redundancy) or NonePolicy()


# Statements run on every request are built once, with bound parameters:
# building and cache-keying a SELECT costs more than SQLite running it.
_PACKAGE_BY_ID = (
    select(*_PACKAGE_COLUMNS, t.buckets.c.redundancy.label("bucket_redundancy"))
    .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
    .where(t.buckets.c.user_id == bindparam("user_id"), t.packages.c.id == bindparam("package_id"))
)
_PACKAGE_BY_NAME = (
    select(
        t.buckets.c.id.label("owner_bucket"),
        t.buckets.c.redundancy.label("bucket_redundancy"),
        *_PACKAGE_COLUMNS,
    )
    .select_from(t.buckets)
    .join(
        t.packages,
        (t.packages.c.bucket_id == t.buckets.c.id) & (t.packages.c.name == bindparam("name")),
        isouter=True,
    )
    .where(t.buckets.c.id == bindparam("bucket_id"), t.buckets.c.user_id == bindparam("user_id"))
)


async def get_package(conn: AsyncConnection, user_id: int, package_id: int) -> Package | None:
    params = {"user_id": user_id, "package_id": package_id}
    row = (await conn.execute(_PACKAGE_BY_ID, params)).first()
    return None if row is None else to_package(row)


class FoundPackage(NamedTuple):
    bucket_exists: bool
    package: Package | None


async def find_package(
    conn: AsyncConnection, user_id: int, bucket_id: int, name: str
) -> FoundPackage:
    """The package ``name`` of ``user_id``'s bucket ``bucket_id``, and
    whether that bucket exists, in one statement (the per-request lookup)."""
    params = {"user_id": user_id, "bucket_id": bucket_id, "name": name}
    row = (await conn.execute(_PACKAGE_BY_NAME, params)).first()
    if row is None:
        return FoundPackage(False, None)
    return FoundPackage(True, None if row.id is None else to_package(row))


async def set_package_policy(
    conn: AsyncConnection, package_id: int, policy: Redundancy | None
) -> None:
    """Set the policy (None: inherit the bucket's); objects written before now
    are re-encoded to the package's effective policy (``meta.recode``)."""
    await conn.execute(
        update(t.packages)
        .where(t.packages.c.id == package_id)
        .values(redundancy=dump_policy(policy), policy_changed_at=now())
    )


async def get_package_by_name(conn: AsyncConnection, bucket_id: int, name: str) -> Package | None:
    q = (
        select(*_PACKAGE_COLUMNS, t.buckets.c.redundancy.label("bucket_redundancy"))
        .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
        .where(t.packages.c.bucket_id == bucket_id, t.packages.c.name == name)
    )
    row = (await conn.execute(q)).first()
    return None if row is None else to_package(row)


async def list_packages(conn: AsyncConnection, bucket_id: int) -> list[Package]:
    q = (
        select(*_PACKAGE_COLUMNS)
        .where(t.packages.c.bucket_id == bucket_id)
        .order_by(t.packages.c.id)
    )
    return [to_package(r) for r in await conn.execute(q)]


async def delete_package(conn: AsyncConnection, package_id: int) -> None:
    ids = [
        r.id
        for r in await conn.execute(
            select(t.objects.c.id).where(t.objects.c.package_id == package_id)
        )
    ]
    await delete_objects(conn, ids)
    await conn.execute(delete(t.packages).where(t.packages.c.id == package_id))


# --- objects ---------------------------------------------------------------

_visible = t.objects.c.committed.is_(True)


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
        q = q.where(_visible)
    row = (await conn.execute(q)).first()
    return None if row is None else to_object(row)


async def get_object_by_path(
    conn: AsyncConnection, package_id: int, path: str, *, include_uncommitted: bool = False
) -> ObjectInfo | None:
    q = _OBJECT_AT if include_uncommitted else _VISIBLE_OBJECT_AT
    row = (await conn.execute(q, {"package_id": package_id, "path": path})).first()
    return None if row is None else to_object(row)


_OBJECT_AT = select(t.objects).where(
    t.objects.c.package_id == bindparam("package_id"), t.objects.c.path == bindparam("path")
)
_VISIBLE_OBJECT_AT = _OBJECT_AT.where(_visible)


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
        .where(_visible)
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


async def list_objects(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    after: str | None,
    limit: int,
    inclusive: bool = False,
) -> list[ObjectInfo]:
    """Visible objects under ``prefix`` past ``after`` (or from it:
    ``inclusive``), in byte order of path (read on the driver's connection
    where it can be, driver.py)."""
    rows = await _listing_rows(conn, package_id, prefix, after, limit, inclusive, "whole")
    return [to_object(r) for r in rows]


async def list_entries(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    after: str | None,
    limit: int,
    inclusive: bool = False,
) -> list[ObjectEntry]:
    """``list_objects`` with what a JCS listing shows (eight columns)."""
    rows = await _listing_rows(conn, package_id, prefix, after, limit, inclusive, "entry")
    return [to_entry(r) for r in rows]


async def list_listed(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    after: str | None,
    limit: int,
    inclusive: bool = False,
) -> list[ListedObject]:
    """``list_objects`` with only what a listing shows (five columns)."""
    rows = await _listing_rows(conn, package_id, prefix, after, limit, inclusive, "listed")
    return [to_listed(r) for r in rows]


async def _listing_rows(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    after: str | None,
    limit: int,
    inclusive: bool,
    shape: _Shape,
) -> Sequence[Any]:
    mode: _After = None if after is None else ("from" if inclusive else "past")
    params: dict[str, Any] = {"package_id": package_id, "limit": limit}
    if prefix:
        params.update(low=prefix, high=prefix + "\U0010ffff")
    if after is not None:
        params["after"] = after
    return await _listing(bool(prefix), mode, shape).rows(conn, params)


_After = Literal["from", "past"] | None
# What each listing reads of a row: all of it (``rows.to_object``), a JCS
# entry (``rows.to_entry``) or an S3 listing's (``rows.to_listed``).
_Shape = Literal["whole", "entry", "listed"]
ENTRY_COLUMNS = (
    t.objects.c.id,
    t.objects.c.package_id,
    t.objects.c.path,
    t.objects.c.size,
    t.objects.c.file_hash,
    t.objects.c.redundancy,
    t.objects.c.created_at,
    t.objects.c.updated_at,
)
LISTED_COLUMNS = (
    t.objects.c.path,
    t.objects.c.size,
    t.objects.c.etag,
    t.objects.c.updated_at,
    t.objects.c.checksums,
)
_COLUMNS: dict[_Shape, Any] = {
    "whole": (t.objects,),
    "entry": ENTRY_COLUMNS,
    "listed": LISTED_COLUMNS,
}


@functools.cache
def _listing(prefixed: bool, after: _After, shape: _Shape) -> DriverQuery:
    """One listing statement per shape, built once."""
    path = t.objects.c.path
    q = select(*_COLUMNS[shape]).where(_visible, t.objects.c.package_id == bindparam("package_id"))
    if prefixed:
        # A byte-wise range scan instead of LIKE: no escaping, uses the index.
        q = q.where(path >= bindparam("low"), path < bindparam("high"))
    if after == "from":
        q = q.where(path >= bindparam("after"))
    elif after == "past":
        q = q.where(path > bindparam("after"))
    return DriverQuery(q.order_by(path).limit(bindparam("limit")))


async def clone_object(conn: AsyncConnection, src: ObjectInfo, package_id: int, path: str) -> int:
    """A new object sharing ``src``'s immutable layouts (no bytes copied)."""
    ts = now()
    res = await conn.execute(
        insert(t.objects).values(
            package_id=package_id,
            path=path,
            size=src.size,
            file_hash=dump_hash(src.file_hash),
            etag=src.etag,
            redundancy=dump_policy(src.redundancy),
            committed=True,
            created_at=ts,
            updated_at=ts,
            **meta_values(src.meta),
            **checksum_values(src.checksums),
        )
    )
    object_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    p = t.object_parts.c
    await conn.execute(
        insert(t.object_parts).from_select(
            ["object_id", "seq", "layout_id", "offset", "checksums"],
            select(literal(object_id), p.seq, p.layout_id, p.offset, p.checksums).where(
                p.object_id == src.object_id
            ),
        )
    )
    return object_id


async def set_object_tags(conn: AsyncConnection, object_id: int, tags: Mapping[str, str]) -> None:
    """Replace an object's tags (its content and update time stay)."""
    await conn.execute(
        update(t.objects).where(t.objects.c.id == object_id).values(tags=dump_map(tags))
    )


async def get_package_tags(conn: AsyncConnection, package_id: int) -> dict[str, str]:
    q = select(t.packages.c.tags).where(t.packages.c.id == package_id)
    return load_map((await conn.execute(q)).scalar_one_or_none())


async def set_package_tags(conn: AsyncConnection, package_id: int, tags: Mapping[str, str]) -> None:
    await conn.execute(
        update(t.packages).where(t.packages.c.id == package_id).values(tags=dump_map(tags))
    )


def _dump_cors(rules: Sequence[CorsRule]) -> str | None:
    if not rules:
        return None
    return json.dumps(
        [
            {
                "methods": list(r.allowed_methods),
                "origins": list(r.allowed_origins),
                "headers": list(r.allowed_headers),
                "expose": list(r.expose_headers),
                "max_age": r.max_age_seconds,
                "id": r.rule_id,
            }
            for r in rules
        ],
        ensure_ascii=False,
    )


def _load_cors(text: str | None) -> list[CorsRule]:
    if not text:
        return []
    return [
        CorsRule(
            allowed_methods=tuple(d["methods"]),
            allowed_origins=tuple(d["origins"]),
            allowed_headers=tuple(d.get("headers") or ()),
            expose_headers=tuple(d.get("expose") or ()),
            max_age_seconds=d.get("max_age"),
            rule_id=d.get("id"),
        )
        for d in json.loads(text)
    ]


async def get_package_cors(conn: AsyncConnection, package_id: int) -> list[CorsRule]:
    """The package's CORS rules, in order (none: an empty list)."""
    q = select(t.packages.c.cors).where(t.packages.c.id == package_id)
    return _load_cors((await conn.execute(q)).scalar_one_or_none())


async def set_package_cors(
    conn: AsyncConnection, package_id: int, rules: Sequence[CorsRule]
) -> None:
    """Replace the package's CORS rules (empty: remove them)."""
    await conn.execute(
        update(t.packages).where(t.packages.c.id == package_id).values(cors=_dump_cors(rules))
    )


async def cors_by_package_name(
    conn: AsyncConnection, name: str, bucket_id: int | None = None
) -> list[list[CorsRule]]:
    """The CORS rules of the packages called ``name`` that have some (of
    bucket ``bucket_id`` only, if given), oldest package first."""
    q = select(t.packages.c.cors).where(t.packages.c.name == name, t.packages.c.cors.is_not(None))
    if bucket_id is not None:
        q = q.where(t.packages.c.bucket_id == bucket_id)
    q = q.order_by(t.packages.c.id)
    return [_load_cors(text) for (text,) in await conn.execute(q)]


async def objects_by_ids(
    conn: AsyncConnection, user_id: int, ids: Sequence[int]
) -> dict[int, ObjectInfo]:
    if not ids:
        return {}
    q = (
        select(t.objects)
        .join(t.packages, t.packages.c.id == t.objects.c.package_id)
        .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
        .where(t.objects.c.id.in_(list(ids)), t.buckets.c.user_id == user_id, _visible)
    )
    return {r.id: to_object(r) for r in await conn.execute(q)}


async def _drop_parts(conn: AsyncConnection, object_id: int) -> list[int]:
    ids = [
        int(r.layout_id)
        for r in await conn.execute(
            select(t.object_parts.c.layout_id).where(t.object_parts.c.object_id == object_id)
        )
    ]
    await conn.execute(delete(t.object_parts).where(t.object_parts.c.object_id == object_id))
    return ids


async def lock_package_paths(conn: AsyncConnection, package_id: int) -> bool:
    """Serialise "look a path up, then insert it" within one package.

    Under PostgreSQL's READ COMMITTED two writers could both find a path free
    and both insert it (a unique violation, i.e. a failed request); with the
    package row locked the second waits and then sees the first one's row.
    SQLite already runs one writer at a time and renders no FOR clause.
    Returns whether the package (still) exists."""
    return bool(await _LOCK_PACKAGE.rows(conn, {"package_id": package_id}))


_LOCK_PACKAGE = DriverQuery(
    select(t.packages.c.id)
    .where(t.packages.c.id == bindparam("package_id"))
    .with_for_update(key_share=True)
)


async def commit_object(
    conn: AsyncConnection,
    package_id: int,
    path: str,
    *,
    size: int,
    file_hash: ContentHash,
    etag: str,
    policy: Redundancy,
    parts: Sequence[tuple[int, int]],
    ts: datetime,
    meta: ObjectMeta | None = None,
    checksums: Mapping[ChecksumAlgorithm, str] | None = None,
    part_checksums: Sequence[Mapping[ChecksumAlgorithm, str]] | None = None,
) -> ObjectInfo:
    """Point ``package/path`` at new content in the caller's transaction, which
    must hold ``lock_package_paths``. ``part_checksums``: each part's own
    (an object completed from uploaded parts).

    Keeps the objectID and createTime of an existing object (overwrite);
    releases the layouts the old content no longer needs. ``meta`` and
    ``checksums`` replace whatever the old object had (None: none), as an S3
    PUT does; core has validated them."""
    existing = (
        await conn.execute(
            select(t.objects.c.id, t.objects.c.created_at).where(
                t.objects.c.package_id == package_id, t.objects.c.path == path
            )
        )
    ).first()
    values = dict(
        size=size,
        file_hash=dump_hash(file_hash),
        etag=etag,
        redundancy=dump_policy(policy),
        committed=True,
        updated_at=ts,
        **meta_values(meta),
        **checksum_values(checksums),
    )
    released: list[int] = []
    if existing is None:
        res = await conn.execute(
            insert(t.objects).values(package_id=package_id, path=path, created_at=ts, **values)
        )
        object_id = int(res.inserted_primary_key[0])  # type: ignore[index]
        created = ts
    else:
        object_id, created = int(existing.id), aware(existing.created_at)
        released = await _drop_parts(conn, object_id)
        await conn.execute(update(t.objects).where(t.objects.c.id == object_id).values(**values))
    await set_parts(conn, object_id, parts, part_checksums)
    await layouts.release_unreferenced(conn, released)
    return ObjectInfo(
        object_id=object_id,
        package_id=package_id,
        path=path,
        size=size,
        file_hash=file_hash,
        etag=etag,
        redundancy=policy,
        create_time=created,
        update_time=ts,
        meta=meta or ObjectMeta(),
        checksums=dict(checksums or {}),
    )


class NewContent(NamedTuple):
    """What ``commit_objects`` points one path at."""

    path: str
    size: int
    file_hash: ContentHash
    etag: str
    parts: Sequence[tuple[int, int]]  # (offset, layout id)
    meta: ObjectMeta | None = None
    checksums: Mapping[ChecksumAlgorithm, str] | None = None


_EXISTING_PATHS = select(t.objects.c.id, t.objects.c.path, t.objects.c.created_at).where(
    t.objects.c.package_id == bindparam("package_id"),
    t.objects.c.path.in_(bindparam("paths", expanding=True)),
)
# The written statements run on the driver's connection where they can be
# (driver.DriverQuery.write): a small upload's whole commit.
_INSERT_NEW_OBJECTS = {
    dialect.name: DriverQuery(
        dialect_insert(t.objects)
        .on_conflict_do_nothing(index_elements=[t.objects.c.package_id, t.objects.c.path])
        .returning(t.objects.c.id, t.objects.c.path)
    )
    for dialect, dialect_insert in (
        (postgresql.dialect, postgresql.insert),
        (sqlite.dialect, sqlite.insert),
    )
}
# An overwrite of a few objects (a PUT, a small batch) runs on the driver's
# connection, one statement per object, instead of SQLAlchemy's IN lists: it
# made an overwriting 4 KiB PUT cost twice a new one's CPU.
FEW_OVERWRITES = 16
_EXISTING_PATH = DriverQuery(
    select(t.objects.c.id, t.objects.c.path, t.objects.c.created_at).where(
        t.objects.c.package_id == bindparam("package_id"), t.objects.c.path == bindparam("path")
    )
)
_DROP_PARTS_RETURNING = DriverQuery(
    delete(t.object_parts)
    .where(t.object_parts.c.object_id == bindparam("object_id"))
    .returning(t.object_parts.c.layout_id)
)
_PARTS_OF = select(t.object_parts.c.layout_id).where(
    t.object_parts.c.object_id.in_(bindparam("object_ids", expanding=True))
)
_DROP_PARTS_OF = delete(t.object_parts).where(
    t.object_parts.c.object_id.in_(bindparam("object_ids", expanding=True))
)
_REPLACE_CONTENT = DriverQuery(
    update(t.objects)
    .where(t.objects.c.id == bindparam("b_id"))
    .values(
        size=bindparam("b_size"),
        file_hash=bindparam("b_file_hash"),
        etag=bindparam("b_etag"),
        redundancy=bindparam("b_redundancy"),
        committed=True,
        updated_at=bindparam("b_ts"),
        **{col: bindparam(f"b_{col}") for col in [*meta_values(None), *checksum_values(None)]},
    )
)
_INSERT_PARTS = DriverQuery(insert(t.object_parts))


async def commit_objects(
    conn: AsyncConnection,
    package_id: int,
    items: Sequence[NewContent],
    *,
    policy: Redundancy,
    ts: datetime,
) -> list[ObjectInfo]:
    """``commit_object`` for many distinct paths of one package in bulk
    statements (a few per 500 paths instead of several per path), with the
    same effect; results in the order of ``items``."""
    redundancy = dump_policy(policy)
    # Every path is inserted; those already taken (an object, or an
    # upload's placeholder) are skipped by the unique index and looked up
    # after. New paths, the common case, cost one statement. Matched back by
    # path (unique in the package), not by RETURNING order: asking for the
    # order makes SQLite insert one row at a time.
    rows = await _INSERT_NEW_OBJECTS[conn.dialect.name].write(
        conn,
        [
            {
                "package_id": package_id,
                "path": it.path,
                "size": it.size,
                "file_hash": dump_hash(it.file_hash),
                "etag": it.etag,
                "redundancy": redundancy,
                "committed": True,
                "created_at": ts,
                "updated_at": ts,
                **meta_values(it.meta),
                **checksum_values(it.checksums),
            }
            for it in items
        ],
    )
    ids = {path: int(object_id) for object_id, path in rows}
    existing: dict[str, tuple[int, datetime]] = {}
    taken = [it.path for it in items if it.path not in ids]
    few = len(taken) <= FEW_OVERWRITES
    if few:
        found = await _EXISTING_PATH.write(
            conn, [{"package_id": package_id, "path": path} for path in taken]
        )
        for oid, path, created in found:
            existing[path] = (int(oid), stamp(created))
    else:
        for part in layouts.chunks(taken):
            params = {"package_id": package_id, "paths": part}
            for r in await conn.execute(_EXISTING_PATHS, params):
                existing[r.path] = (int(r.id), aware(r.created_at))
    ids.update((path, oid) for path, (oid, _) in existing.items())
    released: list[int] = []
    old = [it for it in items if it.path in existing]
    if old:
        old_ids = [ids[it.path] for it in old]
        if few:
            dropped = await _DROP_PARTS_RETURNING.write(
                conn, [{"object_id": oid} for oid in old_ids]
            )
            released += [int(r[0]) for r in dropped]
        else:
            for part in layouts.chunks(old_ids):
                params = {"object_ids": part}
                released += [int(r.layout_id) for r in await conn.execute(_PARTS_OF, params)]
                await conn.execute(_DROP_PARTS_OF, params)
        await _REPLACE_CONTENT.write(
            conn,
            [
                {
                    "b_redundancy": redundancy,
                    "b_ts": ts,
                    "b_id": ids[it.path],
                    "b_size": it.size,
                    "b_file_hash": dump_hash(it.file_hash),
                    "b_etag": it.etag,
                    **{
                        f"b_{col}": value
                        for col, value in (
                            meta_values(it.meta) | checksum_values(it.checksums)
                        ).items()
                    },
                }
                for it in old
            ],
        )
    part_rows = [
        {"object_id": ids[it.path], "seq": i, "offset": off, "layout_id": lid}
        for it in items
        for i, (off, lid) in enumerate(it.parts)
    ]
    if part_rows:
        await _INSERT_PARTS.write(conn, part_rows)
    await layouts.release_unreferenced(conn, released)
    return [
        ObjectInfo(
            object_id=ids[it.path],
            package_id=package_id,
            path=it.path,
            size=it.size,
            file_hash=it.file_hash,
            etag=it.etag,
            redundancy=policy,
            create_time=existing[it.path][1] if it.path in existing else ts,
            update_time=ts,
            meta=it.meta or ObjectMeta(),
            checksums=dict(it.checksums or {}),
        )
        for it in items
    ]


async def set_parts(
    conn: AsyncConnection,
    object_id: int,
    parts: Sequence[tuple[int, int]],
    checksums: Sequence[Mapping[ChecksumAlgorithm, str]] | None = None,
) -> None:
    """The object's parts, (offset, layout id) in order, each with its own
    checksums if given (an object completed from uploaded parts)."""
    if parts:
        sums = checksums or [{}] * len(parts)
        await _INSERT_PARTS.write(
            conn,
            [
                {
                    "object_id": object_id,
                    "seq": i,
                    "offset": off,
                    "layout_id": lid,
                    **checksum_values(part_sums),
                }
                for i, ((off, lid), part_sums) in enumerate(zip(parts, sums, strict=True))
            ],
        )


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


async def create_placeholder(
    conn: AsyncConnection, package_id: int, path: str, policy: Redundancy
) -> int:
    """An invisible object row that a JCS multipart upload (an upload linked
    to it, ``meta.uploads``) completes later."""
    ts = now()
    res = await conn.execute(
        insert(t.objects).values(
            package_id=package_id,
            path=path,
            size=0,
            file_hash="",
            etag="",
            redundancy=dump_policy(policy),
            committed=False,
            created_at=ts,
            updated_at=ts,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


async def move_object(conn: AsyncConnection, object_id: int, package_id: int, path: str) -> None:
    await conn.execute(
        update(t.objects)
        .where(t.objects.c.id == object_id)
        .values(package_id=package_id, path=path, updated_at=now())
    )


async def delete_objects(conn: AsyncConnection, object_ids: Sequence[int]) -> None:
    released: list[int] = []
    for oid in object_ids:
        released += await _drop_parts(conn, oid)
        released += await layouts.clear_upload_parts(conn, oid)
    if object_ids:
        await conn.execute(delete(t.objects).where(t.objects.c.id.in_(list(object_ids))))
    await layouts.release_unreferenced(conn, released)


async def package_names(conn: AsyncConnection, bucket_id: int) -> list[str]:
    q = (
        select(t.packages.c.name)
        .where(t.packages.c.bucket_id == bucket_id)
        .order_by(t.packages.c.name)
    )
    return [r.name for r in await conn.execute(q)]


async def package_object_count(conn: AsyncConnection, package_id: int) -> int:
    q = select(func.count()).select_from(t.objects).where(t.objects.c.package_id == package_id)
    return int((await conn.execute(q)).scalar_one())


async def abandon_upload(
    conn: AsyncConnection,
    before: datetime | None,
    *,
    upload: int | None = None,
    placeholder: int | None = None,
) -> bool:
    """Drop the multipart upload with row id ``upload`` if it is still
    abandoned at ``before`` (re-checked here, under the write transaction:
    untouched since then, or of a deleted package; ``None``: drop it now, an
    abort). Its parts are released for GC, and the placeholder object of a
    JCS upload that never completed goes with it. ``placeholder``: an
    invisible object untouched since ``before`` that no upload is linked to.
    Returns whether anything was dropped."""
    if upload is not None:
        rec = await uploads.get_row(conn, upload, lock=True)
        if rec is None:
            return False
        if before is not None and not await uploads.is_abandoned(conn, upload, before):
            return False
        released = await uploads.drop(conn, [rec.row_id])
        if rec.object_id is not None:
            obj = (
                await conn.execute(
                    select(t.objects.c.committed).where(t.objects.c.id == rec.object_id)
                )
            ).first()
            if obj is not None and not obj.committed:
                await delete_objects(conn, [rec.object_id])
        await layouts.release_unreferenced(conn, released)
        return True
    if placeholder is None:
        return False
    row = (
        await conn.execute(
            select(t.objects.c.committed, t.objects.c.updated_at).where(
                t.objects.c.id == placeholder
            )
        )
    ).first()
    if row is None or row.committed:
        return False
    if before is not None and aware(row.updated_at) >= before:
        return False
    if await uploads.for_object(conn, placeholder) is not None:
        return False
    await delete_objects(conn, [placeholder])
    return True
