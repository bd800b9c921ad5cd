"""A space whose deletes hang is sent one delete, not one per block.

GC deletes many layouts' blocks in one call (``BlockDeletes.delete_keys``),
several at once: a space that hangs was sent up to ``PUT_PARALLEL``
deletes before the first of them timed out, each a request left hanging
in the client library (found by the review of jobs with a large backlog,
once GC deleted layouts in batches). Each space's first block goes alone;
the rest follow once it is answered, and are owed at once when it was not.
"""

from __future__ import annotations

import asyncio

import pytest
from core_support import World
from sqlalchemy import select
from test_objects_support import at, body, package

from jointcloud.core import blockdeletes
from jointcloud.core.commands import PutObject
from jointcloud.meta import tables as t
from jointcloud.spaces.local import LocalSpace

BLOCKS = 5


async def test_a_space_that_hangs_is_asked_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx
    pkg = await package(world, "p")
    for i in range(BLOCKS):  # past the inline size: one block each, in the one space
        await ctx.objects.put(world.alice, PutObject(at(pkg, f"o{i}"), body(b"x" * 5000)))
    async with ctx.db.read() as conn:
        rows = (await conn.execute(select(t.blocks.c.user_space_id, t.blocks.c.key))).all()
    blocks = [(int(r.user_space_id), str(r.key)) for r in rows]
    assert len(blocks) == BLOCKS
    asked: list[str] = []

    async def hangs(self: LocalSpace, key: str) -> None:
        asked.append(key)
        await asyncio.Event().wait()  # a cloud that never answers

    monkeypatch.setattr(LocalSpace, "delete", hangs)
    monkeypatch.setattr(blockdeletes, "DELETE_SECONDS", 0.2)
    left = await ctx.store.delete_keys(blocks)
    assert left == blocks  # none deleted: all to owe
    assert asked == [blocks[0][1]]
