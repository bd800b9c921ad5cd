"""A drain or a repair whose process dies (or whose pass is cancelled)
between the transaction that swaps a block to its new copy and the delete
of the block let go of: the old block is owed with the swap, so GC deletes
it. Before, it was owed only when its delete failed, and a death in
between left an untracked file that no GC run took (a crash campaign's
SIGKILLs found it; only ``fsck --repair`` removed it)."""

from __future__ import annotations

import pytest
from jcs_helpers import Api
from sqlalchemy import select

from jointcloud.core.drain import drain_once
from jointcloud.core.fsck import fsck
from jointcloud.meta import tables as t
from jointcloud.spaces.local import LocalSpace

NONE = {"type": "none"}
REP2 = {"type": "rep", "repCount": 2}
DATA = bytes(range(256)) * 1200  # 300 KiB: blocks in spaces, not inline


class Died(BaseException):
    """The process dying there: nothing after it runs."""


async def die(self: LocalSpace, key: str) -> None:
    raise Died(key)


async def assert_gc_leaves_only_live_blocks(api: Api) -> None:
    await api.gc()
    async with api.ctx.db.read() as conn:
        rows = await conn.execute(select(t.blocks.c.user_space_id, t.blocks.c.key))
        in_db = {str(api.spaces[r.user_space_id] / "jcs" / r.key) for r in rows}
    assert {str(p) for p in api.all_block_files()} == in_db
    report = await fsck(api.ctx)
    assert report.clean, report.summary()


async def test_a_drain_that_dies_before_deleting_the_old_block_leaks_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    [victim] = await api.add_spaces(1)
    pkg = await api.package("d", NONE)
    o = await api.upload_one(pkg, "x", DATA, affinity=victim)
    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    with monkeypatch.context() as m:
        m.setattr(LocalSpace, "delete", die)
        with pytest.raises(Died):
            await drain_once(api.ctx.db, api.ctx.store)
    assert api.block_files()[victim], "the old block is still there"
    assert await api.download(o["objectID"]) == DATA  # from the copy
    await assert_gc_leaves_only_live_blocks(api)
    assert api.block_files()[victim] == []
    assert await api.download(o["objectID"]) == DATA


async def test_a_repair_that_dies_before_deleting_the_old_block_leaks_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.add_spaces(2)
    pkg = await api.package("r", REP2)
    o = await api.upload_one(pkg, "x", DATA)
    layout_id = await api.layout_of(o["objectID"])
    [bad] = [p for p in api.all_block_files() if p.name.endswith(".0")]
    bad.write_bytes(b"\0" * bad.stat().st_size)  # corrupt: rebuilt, then deleted
    with monkeypatch.context() as m:
        m.setattr(LocalSpace, "delete", die)
        with pytest.raises(Died):
            await api.ctx.repair.repair(layout_id)
    assert bad in api.all_block_files()
    assert await api.download(o["objectID"]) == DATA
    await assert_gc_leaves_only_live_blocks(api)
    assert bad not in api.all_block_files()
    assert await api.download(o["objectID"]) == DATA
