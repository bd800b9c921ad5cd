"""Drain and repair against GC: a block is swapped to its new copy only
while GC has neither taken the copy's intent (then the copy is gone too)
nor is deleting the layout (then the new file would be left without a row).
On SQLite and PostgreSQL; the second race only on PostgreSQL, where GC and
a drain write at the same time (SQLite lets one transaction write)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

import pytest
from jcs_helpers import Api
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jointcloud.core import drain as drain_module
from jointcloud.core import repair as repair_module
from jointcloud.core.drain import drain_once
from jointcloud.core.fsck import fsck
from jointcloud.core.gc import collect_garbage
from jointcloud.core.models import LayoutRecord
from jointcloud.core.recode import Recoder
from jointcloud.core.repair import REPAIRED
from jointcloud.jobs.base import JobResult
from jointcloud.jobs.recode import RecodeJob
from jointcloud.jobs.registry import job_board, recode_services
from jointcloud.jobs.runner import JobRunner
from jointcloud.meta import layouts
from jointcloud.meta import tables as t
from jointcloud.meta.rows import now

NONE = {"type": "none"}
REP2 = {"type": "rep", "repCount": 2}
DATA = bytes(range(256)) * 1200  # 300 KiB: blocks in spaces, not inline
# GC's delay as seen by a copy that outlasted the real one: every pending
# layout, the copy's intent among them, is past it.
PAST_ANY_DELAY = timedelta(seconds=-60)


async def block_rows(api: Api) -> set[tuple[int, str]]:
    async with api.ctx.db.read() as conn:
        rows = await conn.execute(select(t.blocks.c.user_space_id, t.blocks.c.key))
        return {(r.user_space_id, r.key) for r in rows}


async def assert_disk_matches_db(api: Api) -> None:
    """Every block file is a block row and the reverse: nothing leaked, nothing lost."""
    on_disk = {str(p) for p in api.all_block_files()}
    in_db = {str(api.spaces[sid] / "jcs" / key) for sid, key in await block_rows(api)}
    assert on_disk == in_db


async def test_a_drain_copy_gc_took_is_not_swapped_in(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GC takes the copy's intent (and the copy) between the copy and the
    swap: the block stays where it was; before, the block was pointed at
    the deleted copy and its only file was deleted after the swap."""
    [victim] = await api.add_spaces(1)
    pkg = await api.package("d", NONE)
    o = await api.upload_one(pkg, "x", DATA, affinity=victim)
    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    copy = drain_module._copy

    async def copy_then_gc(*args: Any) -> int:
        copied = await copy(*args)
        await collect_garbage(api.ctx.db, api.ctx.store, PAST_ANY_DELAY)
        return copied

    monkeypatch.setattr(drain_module, "_copy", copy_then_gc)
    report = await drain_once(api.ctx.db, api.ctx.store)
    assert report.moved == 0 and report.remaining == 1, report.summary()
    assert await api.download(o["objectID"]) == DATA
    await assert_disk_matches_db(api)

    monkeypatch.setattr(drain_module, "_copy", copy)  # the next pass moves it
    report = await drain_once(api.ctx.db, api.ctx.store)
    assert report.moved == 1 and report.remaining == 0, report.summary()
    assert await api.download(o["objectID"]) == DATA
    await assert_disk_matches_db(api)


async def test_a_drain_copy_that_outlasts_gc_delay_keeps_its_intent(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy's intent is renewed while the copy runs, as an upload's, so
    that a block that takes longer than GC's delay to copy (a big replica
    between clouds) is moved at all; before, GC took the intent of every
    such copy."""
    api.ctx.store.renewals.every = 0.05
    [victim] = await api.add_spaces(1)
    pkg = await api.package("l", NONE)
    o = await api.upload_one(pkg, "x", DATA, affinity=victim)
    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    renewed = watch_renewals(monkeypatch)
    copy = drain_module._copy

    async def copy_for_an_hour(*args: Any) -> int:
        copied = await copy(*args)
        await an_hour_later_gc(api, renewed)
        return copied

    monkeypatch.setattr(drain_module, "_copy", copy_for_an_hour)
    report = await drain_once(api.ctx.db, api.ctx.store)
    assert report.moved == 1 and report.remaining == 0, report.summary()
    assert await api.download(o["objectID"]) == DATA
    await assert_disk_matches_db(api)


def watch_renewals(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set each time pending layouts are renewed."""
    renewed = asyncio.Event()
    renew = layouts.renew_pending

    async def renew_pending(conn: AsyncConnection, ids: Sequence[int]) -> int:
        count = await renew(conn, ids)
        renewed.set()
        return count

    monkeypatch.setattr(layouts, "renew_pending", renew_pending)
    return renewed


async def an_hour_later_gc(api: Api, renewed: asyncio.Event) -> None:
    """As if the work in flight began an hour ago: its intents are aged, a
    renewal is waited for (5 s at most: without one GC takes them), and
    GC runs with a 10-minute delay."""
    async with api.ctx.db.write() as conn:
        await conn.execute(
            update(t.layouts)
            .where(t.layouts.c.state == "pending")
            .values(created_at=now() - timedelta(hours=1))
        )
    renewed.clear()
    with contextlib.suppress(TimeoutError):  # nothing renews it: GC takes it
        await asyncio.wait_for(renewed.wait(), 5)
    await collect_garbage(api.ctx.db, api.ctx.store, timedelta(minutes=10))


async def test_a_rebuilt_block_gc_took_is_not_swapped_in(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for repair: it never reports a block rebuilt that GC deleted."""
    await api.add_spaces(2)
    pkg = await api.package("r", REP2)
    o = await api.upload_one(pkg, "x", DATA)
    layout_id = await api.layout_of(o["objectID"])
    [lost] = [p for p in api.all_block_files() if p.name.endswith(".0")]
    lost.unlink()
    rebuild = repair_module.rebuild_blocks

    async def rebuild_then_gc(*args: Any) -> None:
        await rebuild(*args)
        await collect_garbage(api.ctx.db, api.ctx.store, PAST_ANY_DELAY)

    monkeypatch.setattr(repair_module, "rebuild_blocks", rebuild_then_gc)
    outcome = await api.ctx.repair.repair(layout_id)
    assert outcome.status != REPAIRED, outcome.message
    monkeypatch.setattr(repair_module, "rebuild_blocks", rebuild)
    outcome = await api.ctx.repair.repair(layout_id)
    assert outcome.status == REPAIRED, outcome.message
    assert await api.download(o["objectID"]) == DATA
    await assert_disk_matches_db(api)
    report = await fsck(api.ctx)
    assert report.clean, report.summary()


async def test_a_recode_that_outlasts_gc_delay_keeps_its_intent(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-encoding renews its new layout's intent while it runs, as an
    upload does; before, GC took the intent (and the new blocks) of every
    re-encoding longer than its delay (a large object between clouds), and
    the recode failed again on every pass."""
    api.ctx.store.renewals.every = 0.05
    await api.add_spaces(2)
    pkg = await api.package("c", NONE)
    o = await api.upload_one(pkg, "x", DATA)
    await api.post("/v1/package/update", {"packageID": pkg, "redundancy": REP2})
    renewed = watch_renewals(monkeypatch)
    swap = Recoder._swap

    async def an_hour_then_swap(self: Recoder, *args: Any) -> int:
        await an_hour_later_gc(api, renewed)
        return await swap(self, *args)

    monkeypatch.setattr(Recoder, "_swap", an_hour_then_swap)
    [result] = await run_recode(api)
    assert result.message.startswith("re-encoded 1 layout "), result.message
    assert await api.download(o["objectID"]) == DATA
    await api.gc()
    await assert_disk_matches_db(api)
    report = await fsck(api.ctx)
    assert report.clean, report.summary()


async def run_recode(api: Api) -> list[JobResult]:
    """One pass of the recode job through the runner, as ``jcs admin recode --once``."""
    runner = JobRunner(job_board(api.ctx), [RecodeJob(recode_services(api.ctx), 60)])
    return [await runner.run_now("recode")]


async def lock_waiters(api: Api) -> int:
    async with api.ctx.db.read() as conn:
        q = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return int((await conn.execute(q)).scalar_one())


async def blocked_or_done(api: Api, task: asyncio.Task[Any]) -> None:
    """Wait until ``task`` ends or waits for a row lock (PostgreSQL says
    so; nothing wakes a waiter on that, so it is asked again until then)."""
    while not task.done() and not await lock_waiters(api):
        await asyncio.wait([task], timeout=0.01)


async def test_gc_and_a_drain_of_the_same_released_layout_leak_nothing(
    api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GC has read a released layout's blocks and is deleting them when a
    drain swaps one of them to its copy: before, GC then deleted the block
    row pointing at the copy, whose file was left in the space for ever."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite lets one transaction write: GC and the swap cannot overlap")
    [victim] = await api.add_spaces(1)
    pkg = await api.package("g", NONE)
    o = await api.upload_one(pkg, "x", DATA, affinity=victim)
    await api.post("/v1/object/delete", {"objectIDs": [o["objectID"]]})  # released
    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    store = api.ctx.store
    delete_blocks: Callable[[Iterable[LayoutRecord]], Awaitable[list[tuple[int, str]]]] = (
        store.delete_blocks
    )
    drains: list[asyncio.Task[Any]] = []

    async def drain_meanwhile(records: Iterable[LayoutRecord]) -> list[tuple[int, str]]:
        records = list(records)
        if not drains:
            drains.append(asyncio.ensure_future(drain_once(api.ctx.db, store)))
            await blocked_or_done(api, drains[0])
        return await delete_blocks(records)

    monkeypatch.setattr(store, "delete_blocks", drain_meanwhile)
    report = await collect_garbage(api.ctx.db, store, PAST_ANY_DELAY)
    assert report.layouts >= 1 and drains  # the drain's intent too, if GC came first
    await drains[0]
    assert await block_rows(api) == set()
    assert list(api.all_block_files()) == []
