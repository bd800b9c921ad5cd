"""A drain counts the blocks left on the draining spaces up to a bound.

Each pass (256 blocks) counted every block left, twice (the total of its
progress and what is left): a drain of N blocks read about N²/256 rows, a
cost that grew with the backlog and, at a million blocks, came near the
copying itself (found by the review of jobs with a large backlog). The
count stops at ``COUNTED`` + 1; a pass past it says "over COUNTED left".
The count is made small here: what a user sees, and the bound each
statement carries.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from core_support import World
from test_objects_support import at, body, package

from jointcloud.core import drain as drain_module
from jointcloud.core.commands import PutObject
from jointcloud.core.drain import drain_once
from support.sqlplans import recorded

OBJECTS = 12


async def test_a_drain_counts_what_is_left_up_to_a_bound(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx
    pkg = await package(world, "p")
    for i in range(OBJECTS):  # past the inline size: one block each, in the first space
        await ctx.objects.put(world.alice, PutObject(at(pkg, f"o{i:02d}"), body(b"x" * 5000)))
    [first] = await ctx.spaces.list(world.alice)
    await ctx.spaces.create(
        world.alice, "second", {"type": "Local", "path": str(tmp_path / "second")}, None, "jcs"
    )
    await ctx.spaces.drain(world.alice, first.user_space_id)
    monkeypatch.setattr(drain_module, "COUNTED", 5, raising=False)

    with recorded(ctx.db) as statements:
        report = await drain_once(ctx.db, ctx.store, 4)
    # A full batch leaves its last layout to the next pass: 3 blocks a pass.
    assert report.summary() == "moved 3 blocks off 1 draining space, over 5 left"
    counts = [params for sql, params in statements if "count(" in sql.lower()]
    assert len(counts) == 2 and all(6 in tuple(p) for p in counts), counts
    said = []
    while report.cursor:
        report = await drain_once(ctx.db, ctx.store, 4, after_layout=report.cursor)
        said.append(report.summary())
    assert said == [
        "moved 3 blocks off 1 draining space, over 5 left",
        "moved 3 blocks off 1 draining space, 3 left",
        "moved 3 blocks off 1 draining space, 0 left",
    ]
