"""Queries of the redundancy change (re-encoding) job.

An object needs re-encoding when one of its layouts has a policy other than
its package's effective one (the package's own, else the bucket's, else
none) *and* it was last written before that policy was set: setting a policy
applies it to what the package holds at that moment, while an upload that
overrides the policy later keeps its own. Policies are compared as their
canonical JSON text (``rows.dump_policy``), which is how every policy is
stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core.models import ContentHash
from jointcloud.meta import tables as t
from jointcloud.meta.rows import dump_policy, load_hash
from jointcloud.redundancy.policy import NonePolicy

NONE_TEXT = dump_policy(NonePolicy())


@dataclass(frozen=True)
class Candidate:
    layout_id: int
    object_id: int
    target: str  # the policy to re-encode to, as stored JSON text
    user_id: int
    size: int  # of the layout
    file_hash: ContentHash  # of the object


def _effective() -> Any:
    return func.coalesce(t.packages.c.redundancy, t.buckets.c.redundancy, literal(NONE_TEXT))


def _stale() -> Any:
    """Rows of objects ⋈ packages ⋈ buckets ⋈ object_parts ⋈ layouts that need work."""
    return and_(
        t.objects.c.committed.is_(True),
        # Inline small objects keep their form: a policy governs what is
        # stored in spaces, above the inline threshold.
        t.layouts.c.inline_data.is_(None),
        t.layouts.c.policy != _effective(),
        or_(
            t.objects.c.updated_at < t.packages.c.policy_changed_at,
            and_(
                t.packages.c.redundancy.is_(None),
                t.objects.c.updated_at < t.buckets.c.policy_changed_at,
            ),
        ),
    )


def _joined() -> Any:
    return (
        t.objects.join(t.packages, t.packages.c.id == t.objects.c.package_id)
        .join(t.buckets, t.buckets.c.id == t.packages.c.bucket_id)
        .join(t.object_parts, t.object_parts.c.object_id == t.objects.c.id)
        .join(t.layouts, t.layouts.c.id == t.object_parts.c.layout_id)
    )


async def candidates(conn: AsyncConnection, after_layout: int, limit: int) -> list[Candidate]:
    """(layout, object) pairs needing re-encoding, by layout id past ``after_layout``."""
    q = (
        select(
            t.object_parts.c.layout_id,
            t.objects.c.id.label("object_id"),
            _effective().label("target"),
            t.buckets.c.user_id,
            t.layouts.c.size,
            t.objects.c.file_hash,
        )
        .select_from(_joined())
        .where(_stale(), t.object_parts.c.layout_id > after_layout)
        .distinct()
        .order_by(t.object_parts.c.layout_id, t.objects.c.id)
        .limit(limit)
    )
    return [
        Candidate(
            layout_id=int(r.layout_id),
            object_id=int(r.object_id),
            target=str(r.target),
            user_id=int(r.user_id),
            size=int(r.size),
            file_hash=load_hash(str(r.file_hash)),
        )
        for r in await conn.execute(q)
    ]


async def lock_objects(conn: AsyncConnection, object_ids: Sequence[int]) -> None:
    """Row-lock the objects (in id order) for the rest of the transaction, so
    two swaps of different parts of one object see each other's result when
    they settle its redundancy. SQLite runs one writer at a time anyway."""
    if object_ids:
        await conn.execute(
            select(t.objects.c.id)
            .where(t.objects.c.id.in_(sorted(object_ids)))
            .order_by(t.objects.c.id)
            .with_for_update()
        )


async def swap_part(conn: AsyncConnection, object_id: int, old: int, new: int) -> bool:
    """Point the object's parts at layout ``new`` — only where they still
    point at ``old`` (an overwrite or delete meanwhile wins)."""
    res = await conn.execute(
        update(t.object_parts)
        .where(t.object_parts.c.object_id == object_id, t.object_parts.c.layout_id == old)
        .values(layout_id=new)
    )
    return res.rowcount > 0


async def settle_policy(conn: AsyncConnection, object_ids: Sequence[int], target: str) -> None:
    """Record ``target`` as the redundancy of those objects whose every part has it."""
    if not object_ids:
        return
    other = (
        select(t.object_parts.c.object_id)
        .join(t.layouts, t.layouts.c.id == t.object_parts.c.layout_id)
        .where(t.object_parts.c.object_id == t.objects.c.id, t.layouts.c.policy != target)
    )
    await conn.execute(
        update(t.objects)
        .where(t.objects.c.id.in_(list(object_ids)), ~exists(other))
        .values(redundancy=target)
    )


async def clear_finished(conn: AsyncConnection) -> int:
    """Forget the change time of packages and buckets none of whose objects
    need re-encoding any more, so later passes skip them. Compare-and-swap on
    the time read: a policy set meanwhile keeps its own."""
    cleared = 0
    pkgs = await conn.execute(
        select(t.packages.c.id, t.packages.c.policy_changed_at).where(
            t.packages.c.policy_changed_at.is_not(None)
        )
    )
    for pid, changed in list(pkgs):
        if not await _package_has_work(conn, int(pid)):
            cleared += await _clear(conn, t.packages, int(pid), changed)
    bkts = await conn.execute(
        select(t.buckets.c.id, t.buckets.c.policy_changed_at).where(
            t.buckets.c.policy_changed_at.is_not(None)
        )
    )
    for bid, changed in list(bkts):
        if not await _bucket_has_work(conn, int(bid)):
            cleared += await _clear(conn, t.buckets, int(bid), changed)
    return cleared


async def _package_has_work(conn: AsyncConnection, package_id: int) -> bool:
    q = select(t.objects.c.id).select_from(_joined()).where(_stale(), t.packages.c.id == package_id)
    return (await conn.execute(q.limit(1))).first() is not None


async def _bucket_has_work(conn: AsyncConnection, bucket_id: int) -> bool:
    q = (
        select(t.objects.c.id)
        .select_from(_joined())
        .where(
            _stale(),
            t.buckets.c.id == bucket_id,
            t.packages.c.redundancy.is_(None),
            t.objects.c.updated_at < t.buckets.c.policy_changed_at,
        )
    )
    return (await conn.execute(q.limit(1))).first() is not None


async def _clear(conn: AsyncConnection, table: Any, row_id: int, changed: datetime) -> int:
    res = await conn.execute(
        update(table)
        .where(table.c.id == row_id, table.c.policy_changed_at == changed)
        .values(policy_changed_at=None)
    )
    return int(res.rowcount)
