"""Writing objects in the caller's transaction: commits (one or in bulk),
parts, placeholders, clones, tags, moves, deletes, abandoned uploads. What
replaces or drops content releases the layouts no longer referenced
(``layouts.release_unreferenced``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, bindparam, delete, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import ColumnElement, FromClause

from jointcloud.core.models import ChecksumAlgorithm, ContentHash, ObjectInfo, ObjectMeta
from jointcloud.meta import layouts, uploads
from jointcloud.meta import tables as t
from jointcloud.meta.catalog._shared import visible
from jointcloud.meta.driver import DriverQuery
from jointcloud.meta.rows import (
    aware,
    checksum_values,
    dump_hash,
    dump_map,
    dump_policy,
    meta_values,
    now,
    stamp,
)
from jointcloud.redundancy.policy import Redundancy
from jointcloud.turns import in_turns

# What a clone takes of its source's row as it is (all but these).
_CLONE_SETS = ("id", "package_id", "committed", "created_at", "updated_at")


async def clone_objects(
    conn: AsyncConnection, src_package_id: int, package_id: int, after: str | None, limit: int
) -> str | None:
    """Clone the next ``limit`` visible objects of a package past ``after``
    (path order) into ``package_id``, sharing their immutable layouts; the
    last path cloned, or None when none was left. Three statements a batch,
    however many objects it holds: cloned one by one, a package of 40,000
    objects cost 80,000 statements (34 s) under the write lock (found by
    review)."""
    o = t.objects
    q = select(o.c.path).where(visible, o.c.package_id == src_package_id)
    if after is not None:
        q = q.where(o.c.path > after)
    paths: list[str] = [r.path for r in await conn.execute(q.order_by(o.c.path).limit(limit))]
    if not paths:
        return None
    last = paths[-1]

    def batch(of: FromClause) -> ColumnElement[bool]:
        where = and_(of.c.committed.is_(True), of.c.package_id == src_package_id, of.c.path <= last)
        return where if after is None else and_(where, of.c.path > after)

    ts = now()
    kept = [c for c in o.c if c.name not in _CLONE_SETS]
    await conn.execute(
        insert(o).from_select(
            ["package_id", "committed", "created_at", "updated_at", *(c.name for c in kept)],
            select(
                literal(package_id, o.c.package_id.type),
                literal(True, o.c.committed.type),
                literal(ts, o.c.created_at.type),
                literal(ts, o.c.updated_at.type),
                *kept,
            ).where(batch(o)),
        )
    )
    src, dst, p = o.alias("src"), o.alias("dst"), t.object_parts
    await conn.execute(
        insert(p).from_select(
            ["object_id", "seq", "layout_id", "offset", "checksums"],
            select(dst.c.id, p.c.seq, p.c.layout_id, p.c.offset, p.c.checksums)
            .select_from(
                p.join(src, src.c.id == p.c.object_id).join(
                    dst, and_(dst.c.package_id == package_id, dst.c.path == src.c.path)
                )
            )
            .where(batch(src)),
        )
    )
    return last


async def set_object_tags(conn: AsyncConnection, object_id: int, tags: Mapping[str, str]) -> None:
    """Replace an object's tags (its content and update time stay)."""
    await conn.execute(
        update(t.objects).where(t.objects.c.id == object_id).values(tags=dump_map(tags))
    )


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
        async for part in in_turns(layouts.chunks(taken)):
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
            async for part in in_turns(layouts.chunks(old_ids)):
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
    """Delete the objects with their parts (and a JCS upload linked to one),
    releasing the layouts nothing references any more. A few statements per
    batch of ids, not per object: a batch delete of 1,000 keys ran 3,000."""
    released: list[int] = []
    async for part in in_turns(layouts.chunks(list(dict.fromkeys(object_ids)))):
        of_these = t.object_parts.c.object_id.in_(part)
        found = await conn.execute(select(t.object_parts.c.layout_id).where(of_these))
        released += [int(r.layout_id) for r in found]
        await conn.execute(delete(t.object_parts).where(of_these))
        linked = await conn.execute(select(t.uploads.c.id).where(t.uploads.c.object_id.in_(part)))
        released += await uploads.drop(conn, [int(r.id) for r in linked])
        await conn.execute(delete(t.objects).where(t.objects.c.id.in_(part)))
    await layouts.release_unreferenced(conn, released)


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
    Returns whether anything was dropped.

    The package's paths are locked first, as every writer of them takes
    them (and before the upload's row, as a completion takes them): a PUT
    of the path makes the placeholder's row the visible object, and on
    PostgreSQL a placeholder read as invisible before that PUT committed
    was deleted after it, with the acknowledged object (found by review)."""
    if upload is not None:
        where = await uploads.get_row(conn, upload)
        if where is None:
            return False
        await lock_package_paths(conn, where.package_id)
        rec = await uploads.get_row(conn, upload, lock=True)
        if rec is None:
            return False
        if before is not None and not await uploads.is_abandoned(conn, upload, before):
            return False
        released = await uploads.drop(conn, [rec.row_id])
        if rec.object_id is not None and await _invisible_in(conn, rec.object_id, where.package_id):
            await delete_objects(conn, [rec.object_id])
        await layouts.release_unreferenced(conn, released)
        return True
    if placeholder is None:
        return False
    found = (
        await conn.execute(select(t.objects.c.package_id).where(t.objects.c.id == placeholder))
    ).first()
    if found is None:
        return False
    await lock_package_paths(conn, int(found.package_id))
    row = (
        await conn.execute(
            select(t.objects.c.package_id, t.objects.c.committed, t.objects.c.updated_at).where(
                t.objects.c.id == placeholder
            )
        )
    ).first()
    if row is None or row.committed or row.package_id != found.package_id:
        return False
    if before is not None and aware(row.updated_at) >= before:
        return False
    if await uploads.for_object(conn, placeholder) is not None:
        return False
    await delete_objects(conn, [placeholder])
    return True


async def _invisible_in(conn: AsyncConnection, object_id: int, package_id: int) -> bool:
    """Whether the object is a placeholder in the package whose paths the
    caller locked (a placeholder never moves; an object made of it may)."""
    row = (
        await conn.execute(
            select(t.objects.c.package_id, t.objects.c.committed).where(t.objects.c.id == object_id)
        )
    ).first()
    return row is not None and not row.committed and int(row.package_id) == package_id
