"""Deletes of one JCS bucket (project) at once, on PostgreSQL (READ
COMMITTED): each found the bucket, then its DELETE waited for the first
one's and deleted nothing, and every one answered OK (found by review: four
concurrent v1 ``/v1/bucket/delete`` of one bucket against two servers, all
200 OK). Packages had the same fault and were fixed before
(``test_races_of_reads_and_deletes``); user spaces had it too."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core_support import World
from sqlalchemy import select
from test_races_of_reads_and_deletes import postgresql_only, until_blocked

from jointcloud.errors import BucketNotFound
from jointcloud.meta import tables as t


async def test_of_two_deletes_of_one_project_one_finds_it_gone(world: World) -> None:
    postgresql_only(world)
    ctx, alice = world.ctx, world.alice
    doomed = await ctx.buckets.create(alice, "doomed")
    async with ctx.db.write() as conn:
        # Something holds the bucket's row while both deletes start.
        q = select(t.buckets.c.id).where(t.buckets.c.id == doomed.bucket_id).with_for_update()
        assert (await conn.execute(q)).first() is not None
        deletes = [
            asyncio.ensure_future(ctx.buckets.delete(alice, doomed.bucket_id)) for _ in range(2)
        ]
        await until_blocked(world, deletes, 2)
    outcomes = await asyncio.gather(*deletes, return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["BucketNotFound", "NoneType"]
    assert all(o is None or isinstance(o, BucketNotFound) for o in outcomes)
    assert doomed.bucket_id not in [b.bucket_id for b in await ctx.buckets.list(alice)]


async def test_of_two_deletes_of_one_user_space_one_finds_it_gone(
    world: World, tmp_path: Path
) -> None:
    """The same for a user space: both deletes found it, the second's
    DELETE waited for the first's and removed nothing, and both said OK."""
    postgresql_only(world)
    ctx, bob = world.ctx, world.bob
    space = await ctx.spaces.create(bob, "spare", {"type": "Local", "path": str(tmp_path / "s")})
    sid = space.user_space_id
    async with ctx.db.write() as conn:
        q = select(t.user_spaces.c.id).where(t.user_spaces.c.id == sid).with_for_update()
        assert (await conn.execute(q)).first() is not None
        deletes = [asyncio.ensure_future(ctx.spaces.delete(bob, sid)) for _ in range(2)]
        await until_blocked(world, deletes, 2)
    outcomes = await asyncio.gather(*deletes, return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["NoneType", "SpaceNotFound"]
    assert sid not in [s.user_space_id for s in await ctx.spaces.list(bob)]
