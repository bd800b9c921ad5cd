"""GC deletes many garbage layouts per write transaction.

It deleted one layout (its blocks, then its rows) per write transaction:
a commit, on SQLite a sync of the log, per layout. 250 layouts a second,
a package of a million objects over an hour of GC, each transaction
competing with the users' writes for the write lock (found by the review
of jobs with a large backlog). Counted here in write transactions, with
batches made small: the blocks are still deleted before the rows, and a
pass that fails between the two leaves rows that the next pass finishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest
from core_support import World
from test_objects_support import at, body, package, stored

from jointcloud.context import Context
from jointcloud.core import gc as gc_module
from jointcloud.core.commands import PutObject
from jointcloud.core.gc import collect_garbage
from jointcloud.meta import layouts as layouts_module
from jointcloud.meta import strays
from support.counting import write_transactions

OBJECTS = 20
NOW = timedelta(seconds=-1)  # every released layout is past the delay


async def garbage_package(world: World) -> None:
    """``OBJECTS`` objects of one block each, deleted with their package."""
    ctx = world.ctx
    pkg = await package(world, "big")
    for i in range(OBJECTS):
        await ctx.objects.put(world.alice, PutObject(at(pkg, f"o{i:02d}"), body(b"x" * 5000)))
    await ctx.packages.delete(world.alice, pkg.package_id)


async def writes_of_gc(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> int:
    opened = write_transactions(ctx.db, monkeypatch)
    await collect_garbage(ctx.db, ctx.store, NOW)
    monkeypatch.undo()
    return len(opened)


async def test_gc_deletes_layouts_in_batches(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = world.ctx
    idle = await writes_of_gc(ctx, monkeypatch)  # what a pass writes with nothing to delete
    await garbage_package(world)
    monkeypatch.setattr(gc_module, "GC_BATCH", 8, raising=False)
    writes = await writes_of_gc(ctx, monkeypatch)
    assert writes - idle == 3  # 20 layouts: 8 + 8 + 4, not 20
    assert await stored(ctx) == (0, 0, 0, 0)  # no object, layout, block row or file left


async def test_a_batch_stops_at_its_blocks(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = world.ctx
    idle = await writes_of_gc(ctx, monkeypatch)
    await garbage_package(world)
    monkeypatch.setattr(gc_module, "GC_BATCH", 8, raising=False)
    monkeypatch.setattr(gc_module, "GC_BATCH_BLOCKS", 3, raising=False)
    writes = await writes_of_gc(ctx, monkeypatch)
    assert writes - idle == 7  # 20 layouts of one block, 3 blocks a transaction
    assert await stored(ctx) == (0, 0, 0, 0)


async def test_a_pass_that_fails_after_deleting_blocks_is_finished_by_the_next(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows of a batch whose blocks were deleted stay when its
    transaction fails (a crash does the same): the next pass deletes the
    blocks again (a delete of a missing block succeeds) and the rows."""
    ctx = world.ctx
    await garbage_package(world)
    monkeypatch.setattr(gc_module, "GC_BATCH", 8, raising=False)
    real = layouts_module.delete_layouts

    async def fails_second(conn: Any, ids: Iterable[int]) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed between the blocks and the rows")
        await real(conn, ids)

    calls: list[int] = []
    monkeypatch.setattr(layouts_module, "delete_layouts", fails_second)
    with pytest.raises(RuntimeError):
        await collect_garbage(ctx.db, ctx.store, NOW)
    objects, layouts, blocks, files = await stored(ctx)
    assert (objects, layouts, blocks) == (0, 12, 12)  # the first batch's 8 went
    assert files == 4  # the second batch's blocks went before its rows failed
    monkeypatch.undo()
    report = await collect_garbage(ctx.db, ctx.store, NOW)
    assert (report.layouts, report.owed) == (12, 0)
    assert await stored(ctx) == (0, 0, 0, 0)
    async with ctx.db.read() as conn:
        assert await strays.count(conn) == 0
