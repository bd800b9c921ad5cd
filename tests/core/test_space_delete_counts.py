"""A refused delete of a user space counts its blocks outside the write lock.

The delete counted every block of the space inside its write transaction,
on SQLite the one writer lock: a request refused for a space of a million
blocks held every writer while it counted them, and anyone owning a space
could repeat it (found by the review of jobs with a large backlog). The
count is taken from a snapshot; under the lock only whether one block is
left (placed meanwhile) is read.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_support import World
from test_objects_support import at, body, package

from jointcloud.core.commands import PutObject
from jointcloud.errors import Conflict
from jointcloud.meta import accounts
from support.counting import write_transactions
from support.sqlplans import recorded

BLOCKS = 3


async def a_space_with_blocks(world: World) -> int:
    ctx = world.ctx
    pkg = await package(world, "p")
    for i in range(BLOCKS):  # past the inline size: one block each
        await ctx.objects.put(world.alice, PutObject(at(pkg, f"o{i}"), body(b"x" * 5000)))
    [space] = await ctx.spaces.list(world.alice)
    return space.user_space_id


async def test_a_refused_delete_takes_no_write_lock(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    space_id = await a_space_with_blocks(world)
    opened = write_transactions(world.ctx.db, monkeypatch)
    with pytest.raises(Conflict, match=f"still holds {BLOCKS} blocks; drain it"):
        await world.ctx.spaces.delete(world.alice, space_id)
    assert opened == []


async def test_blocks_placed_after_the_count_refuse_the_delete_without_a_count(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    space_id = await a_space_with_blocks(world)

    async def none_yet(conn: Any, sid: int) -> int:  # the blocks came after the snapshot
        return 0

    monkeypatch.setattr(accounts, "count_blocks_in_space", none_yet)
    with (
        recorded(world.ctx.db) as statements,
        pytest.raises(Conflict, match="still holds blocks; drain it"),
    ):
        await world.ctx.spaces.delete(world.alice, space_id)
    assert not [sql for sql, _ in statements if "count(" in sql.lower()], statements
    assert [s.user_space_id for s in await world.ctx.spaces.list(world.alice)] == [space_id]
