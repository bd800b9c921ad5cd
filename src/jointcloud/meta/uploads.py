"""Multipart uploads and their parts (``uploads``, ``multipart_parts``).

An upload is its own row with an opaque random id; several may target one
path. Each part is a live layout that the part row references until the
upload completes (the object then references it) or goes (the caller
releases the layouts the functions here hand back, with
``layouts.release_unreferenced``). A JCS v1 upload is linked to its object
(``object_id``). This module imports no other repository, so ``layouts``
and ``catalog`` may call it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import ChecksumAlgorithm, ObjectMeta
from jointcloud.meta import tables as t
from jointcloud.meta.rows import (
    aware,
    dump_map,
    dump_policy,
    load_map,
    load_policy_required,
    meta_values,
    to_meta,
)
from jointcloud.redundancy.policy import Redundancy

IN_CHUNK = 500


FULL_OBJECT = "FULL_OBJECT"  # uploads.checksum_type


@dataclass(frozen=True)
class UploadRecord:
    row_id: int  # internal; parts refer to it
    upload_id: str  # what clients name it by
    package_id: int
    path: str
    policy: Redundancy
    meta: ObjectMeta
    checksum_algorithm: ChecksumAlgorithm | None
    object_id: int | None  # the object a JCS upload is linked to
    create_time: datetime
    update_time: datetime
    full_object: bool = False  # the checksum is a CRC of the whole object


@dataclass(frozen=True)
class PartRecord:
    part_number: int
    layout_id: int
    size: int
    md5: str
    sha256: str
    checksums: Mapping[ChecksumAlgorithm, str] = field(hash=False)
    create_time: datetime


def _upload(r: Any) -> UploadRecord:
    return UploadRecord(
        row_id=int(r.id),
        upload_id=r.upload_id,
        package_id=int(r.package_id),
        path=r.path,
        policy=load_policy_required(r.redundancy),
        meta=to_meta(r),
        checksum_algorithm=(
            None if r.checksum_algorithm is None else ChecksumAlgorithm(r.checksum_algorithm)
        ),
        object_id=None if r.object_id is None else int(r.object_id),
        create_time=aware(r.created_at),
        update_time=aware(r.updated_at),
        full_object=r.checksum_type == FULL_OBJECT,
    )


def _part(r: Any) -> PartRecord:
    return PartRecord(
        part_number=int(r.part_number),
        layout_id=int(r.layout_id),
        size=int(r.size),
        md5=r.md5,
        sha256=r.sha256,
        checksums={ChecksumAlgorithm(a): v for a, v in load_map(r.checksums).items()},
        create_time=aware(r.created_at),
    )


async def create(
    conn: AsyncConnection,
    *,
    upload_id: str,
    package_id: int,
    path: str,
    policy: Redundancy,
    meta: ObjectMeta | None,
    checksum_algorithm: ChecksumAlgorithm | None,
    object_id: int | None,
    ts: datetime,
    full_object: bool = False,
) -> UploadRecord:
    res = await conn.execute(
        insert(t.uploads).values(
            upload_id=upload_id,
            package_id=package_id,
            path=path,
            redundancy=dump_policy(policy),
            checksum_algorithm=None if checksum_algorithm is None else str(checksum_algorithm),
            checksum_type=FULL_OBJECT if full_object else None,
            object_id=object_id,
            created_at=ts,
            updated_at=ts,
            **meta_values(meta),
        )
    )
    row_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    found = await _get(conn, t.uploads.c.id == row_id)
    assert found is not None
    return found


async def _get(conn: AsyncConnection, where: Any, *, lock: bool = False) -> UploadRecord | None:
    q = select(t.uploads).where(where)
    if lock:
        # Serialises part uploads, completion and abort of one upload.
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    return None if row is None else _upload(row)


async def get(conn: AsyncConnection, upload_id: str, *, lock: bool = False) -> UploadRecord | None:
    return await _get(conn, t.uploads.c.upload_id == upload_id, lock=lock)


async def get_row(conn: AsyncConnection, row_id: int, *, lock: bool = False) -> UploadRecord | None:
    return await _get(conn, t.uploads.c.id == row_id, lock=lock)


async def for_object(
    conn: AsyncConnection, object_id: int, *, lock: bool = False
) -> UploadRecord | None:
    """The upload linked to an object (a JCS upload), if any."""
    return await _get(conn, t.uploads.c.object_id == object_id, lock=lock)


async def retarget(conn: AsyncConnection, row_id: int, package_id: int, path: str) -> None:
    """Follow the linked object to where it was moved."""
    await conn.execute(
        update(t.uploads).where(t.uploads.c.id == row_id).values(package_id=package_id, path=path)
    )


async def put_part(
    conn: AsyncConnection,
    row_id: int,
    part_number: int,
    *,
    layout_id: int,
    size: int,
    md5: str,
    sha256: str,
    checksums: Mapping[ChecksumAlgorithm, str],
    ts: datetime,
) -> int | None:
    """Store a part (replacing one with that number) and mark the upload
    touched; returns the layout of the replaced part, for release."""
    where = and_(
        t.multipart_parts.c.upload_row_id == row_id,
        t.multipart_parts.c.part_number == part_number,
    )
    old = (
        await conn.execute(select(t.multipart_parts.c.layout_id).where(where))
    ).scalar_one_or_none()
    if old is not None:
        await conn.execute(delete(t.multipart_parts).where(where))
    await conn.execute(
        insert(t.multipart_parts).values(
            upload_row_id=row_id,
            part_number=part_number,
            layout_id=layout_id,
            size=size,
            md5=md5,
            sha256=sha256,
            checksums=dump_map({str(a): v for a, v in checksums.items()}),
            created_at=ts,
        )
    )
    await conn.execute(update(t.uploads).where(t.uploads.c.id == row_id).values(updated_at=ts))
    return None if old is None else int(old)


async def parts(conn: AsyncConnection, row_id: int) -> dict[int, PartRecord]:
    q = select(t.multipart_parts).where(t.multipart_parts.c.upload_row_id == row_id)
    return {p.part_number: p for p in map(_part, await conn.execute(q))}


async def part_page(
    conn: AsyncConnection, row_id: int, after: int | None, limit: int
) -> list[PartRecord]:
    """Parts numbered above ``after``, in order, at most ``limit``."""
    q = select(t.multipart_parts).where(t.multipart_parts.c.upload_row_id == row_id)
    if after is not None:
        q = q.where(t.multipart_parts.c.part_number > after)
    q = q.order_by(t.multipart_parts.c.part_number).limit(limit)
    return [_part(r) for r in await conn.execute(q)]


async def page(
    conn: AsyncConnection,
    package_id: int,
    prefix: str,
    key_marker: str | None,
    upload_id_marker: str | None,
    limit: int,
) -> list[UploadRecord]:
    """Uploads of a package under ``prefix``, ordered by (path, upload id),
    after the markers (S3: after ``key_marker``, or at it with an upload id
    above ``upload_id_marker``)."""
    path, uid = t.uploads.c.path, t.uploads.c.upload_id
    q = select(t.uploads).where(t.uploads.c.package_id == package_id)
    if prefix:
        q = q.where(path >= prefix, path < prefix + "\U0010ffff")
    if key_marker is not None:
        if upload_id_marker is not None:
            q = q.where(or_(path > key_marker, and_(path == key_marker, uid > upload_id_marker)))
        else:
            q = q.where(path > key_marker)
    q = q.order_by(path, uid).limit(limit)
    return [_upload(r) for r in await conn.execute(q)]


async def drop(conn: AsyncConnection, row_ids: Sequence[int]) -> list[int]:
    """Delete uploads and their parts; the parts' layouts, to release."""
    layout_ids: list[int] = []
    ids = list(row_ids)
    for i in range(0, len(ids), IN_CHUNK):
        chunk = ids[i : i + IN_CHUNK]
        parts = t.multipart_parts
        layout_ids += [
            int(r.layout_id)
            for r in await conn.execute(
                select(parts.c.layout_id).where(parts.c.upload_row_id.in_(chunk))
            )
        ]
        await conn.execute(delete(parts).where(parts.c.upload_row_id.in_(chunk)))
        await conn.execute(delete(t.uploads).where(t.uploads.c.id.in_(chunk)))
    return layout_ids


async def drop_for_object(conn: AsyncConnection, object_id: int) -> list[int]:
    """Drop the upload linked to an object (if any); its layouts, to release."""
    q = select(t.uploads.c.id).where(t.uploads.c.object_id == object_id)
    return await drop(conn, [int(r.id) for r in await conn.execute(q)])


def _abandoned(before: datetime) -> Any:
    # Untouched since ``before``, or left behind by a deleted package.
    return or_(
        t.uploads.c.updated_at < before,
        ~exists().where(t.packages.c.id == t.uploads.c.package_id),
    )


async def abandoned(conn: AsyncConnection, before: datetime, limit: int = 500) -> list[int]:
    """Row ids of uploads to drop: untouched since ``before`` (no part came
    since), or of a package that no longer exists."""
    q = select(t.uploads.c.id).where(_abandoned(before)).order_by(t.uploads.c.id).limit(limit)
    return [int(r.id) for r in await conn.execute(q)]


async def is_abandoned(conn: AsyncConnection, row_id: int, before: datetime) -> bool:
    q = select(t.uploads.c.id).where(t.uploads.c.id == row_id, _abandoned(before))
    return (await conn.execute(q)).first() is not None


async def bare_placeholders(conn: AsyncConnection, before: datetime, limit: int = 500) -> list[int]:
    """Invisible placeholder objects untouched since ``before`` that no
    upload is linked to (none should exist; a safety net)."""
    q = (
        select(t.objects.c.id)
        .where(
            t.objects.c.committed.is_(False),
            t.objects.c.updated_at < before,
            ~exists().where(t.uploads.c.object_id == t.objects.c.id),
        )
        .order_by(t.objects.c.id)
        .limit(limit)
    )
    return [int(r.id) for r in await conn.execute(q)]
