"""Buckets and packages: create, look up, set policies, tags and CORS rules,
delete (a package's objects go with it, ``writes.delete_objects``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import Bucket, CorsRule, Package
from jointcloud.meta import tables as t
from jointcloud.meta.catalog.writes import delete_objects, lock_package_paths
from jointcloud.meta.rows import (
    dump_map,
    dump_policy,
    load_map,
    load_policy,
    now,
    to_bucket,
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


async def delete_bucket(conn: AsyncConnection, bucket_id: int) -> bool:
    """Whether there was one to delete (a concurrent delete may have been first)."""
    res = await conn.execute(delete(t.buckets).where(t.buckets.c.id == bucket_id))
    return bool(res.rowcount)


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


async def packages_from(
    conn: AsyncConnection, bucket_id: int, start: str, inclusive: bool, limit: int
) -> list[Package]:
    """At most ``limit`` of the bucket's packages by name in byte order (as
    S3 lists buckets), from ``start`` on, past it unless ``inclusive``: a
    page read from the bucket's unique index, not every package."""
    name: Any = t.packages.c.name
    if conn.dialect.name == "postgresql":
        name = name.collate("C")  # byte order, not the database's locale
    q = (
        select(*_PACKAGE_COLUMNS)
        .where(t.packages.c.bucket_id == bucket_id, name >= start if inclusive else name > start)
        .order_by(name)
        .limit(limit)
    )
    return [to_package(r) for r in await conn.execute(q)]


async def delete_package(conn: AsyncConnection, package_id: int) -> None:
    # The package's paths first, as every writer of its objects takes them
    # (a delete by IDs holding them would otherwise wait on rows this
    # deleted, while this waited on its package row: a deadlock).
    await lock_package_paths(conn, package_id)
    ids = [
        r.id
        for r in await conn.execute(
            select(t.objects.c.id).where(t.objects.c.package_id == package_id)
        )
    ]
    await delete_objects(conn, ids)
    await conn.execute(delete(t.packages).where(t.packages.c.id == package_id))


# --- tags and CORS ---------------------------------------------------------


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
