"""An upload that lasts longer than GC's delay keeps its pending layouts
(its request renews them, every file's until the commit of them all), and
one whose layout GC took anyway (a GC run with a shorter delay) fails
without leaving a block behind. On SQLite and PostgreSQL; the upload's
source waits on the test between its two halves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from core_support import World
from sqlalchemy import select, text, update
from test_objects_support import at, body, md5, package, read_all, stored

from jointcloud.context import Context
from jointcloud.core.commands import GetObject, PutObject
from jointcloud.core.fsck import fsck
from jointcloud.core.gc import collect_garbage
from jointcloud.errors import DomainError
from jointcloud.meta import catalog, layouts, sweeps
from jointcloud.meta import tables as t
from jointcloud.redundancy.policy import NonePolicy

DELAY = timedelta(seconds=2)
HALF = b"a" * (3 << 19)  # past the small-file size: it streams into a block at once


class SlowBody:
    """A source that sends one half, then waits until ``more`` is set."""

    def __init__(self) -> None:
        self.sent = asyncio.Event()
        self.more = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        yield HALF
        self.sent.set()
        await self.more.wait()
        yield HALF


async def pending(world: World) -> list[int]:
    async with world.ctx.db.read() as conn:
        q = select(t.layouts.c.id).where(t.layouts.c.state == "pending")
        return [r.id for r in await conn.execute(q)]


async def test_gc_leaves_an_upload_that_outlasts_its_delay(world: World) -> None:
    ctx = world.ctx
    ctx.store.renewals.every = 0.1
    pkg = await package(world, "slow")
    before = await stored(ctx)
    slow = SlowBody()
    put = asyncio.ensure_future(
        ctx.objects.put(world.alice, PutObject(at(pkg, "big"), slow.chunks()))
    )
    await slow.sent.wait()
    [layout_id] = await pending(world)
    # What is tested is time passing: past the delay since the upload
    # began, its layout would be garbage without renewals.
    await asyncio.sleep(DELAY.total_seconds() * 1.5)
    report = await collect_garbage(ctx.db, ctx.store, DELAY)
    assert report.layouts == 0 and report.temp_files == 0
    assert await pending(world) == [layout_id]

    slow.more.set()
    info = await put
    assert info.etag == md5(HALF + HALF)
    got = await ctx.objects.get(world.alice, GetObject(at(pkg, "big")))
    assert await read_all(got.body) == HALF + HALF
    await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
    report = await fsck(ctx)
    assert report.clean and report.young_keys == 0, report.summary()
    objects, layouts, blocks, files = await stored(ctx)
    assert (objects, layouts, blocks, files) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + 1,
        before[3] + 1,
    )


async def test_an_upload_whose_layout_gc_took_fails_and_leaves_no_block(world: World) -> None:
    ctx = world.ctx
    pkg = await package(world, "taken")
    before = await stored(ctx)
    slow = SlowBody()
    put = asyncio.ensure_future(
        ctx.objects.put(world.alice, PutObject(at(pkg, "big"), slow.chunks()))
    )
    await slow.sent.wait()
    # Its renewals did not get through (the database out of reach for
    # longer than the delay): GC takes the layout, and its blocks are not
    # there yet to be deleted. The temporary file is fresh and stays.
    async with ctx.db.write() as conn:
        await conn.execute(
            update(t.layouts)
            .where(t.layouts.c.state == "pending")
            .values(created_at=datetime.now(UTC) - timedelta(hours=1))
        )
    report = await collect_garbage(ctx.db, ctx.store, DELAY)
    assert (report.layouts, report.temp_files) == (1, 0)
    slow.more.set()
    with pytest.raises(DomainError) as failed:
        await put
    assert "concurrent change" in failed.value.message
    # The writer put its block in place after GC had looked: it goes too.
    assert await stored(ctx) == before
    report = await fsck(ctx)
    assert report.clean and report.young_keys == 0, report.summary()


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize("first", ["streamed", "batched"])
async def test_gc_leaves_the_first_files_of_an_upload_whose_last_is_slow(
    world: World, first: str, inline_max_bytes: int
) -> None:
    """Found by review: only the file being written was renewed; the ones
    staged before it waited for the commit unrenewed, and GC took them."""
    ctx = world.ctx
    ctx.store.renewals.every = 0.1
    pkg = await package(world, "multi")
    data = HALF if first == "streamed" else b"x" * (inline_max_bytes + 100)
    slow = SlowBody()

    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        yield "first", once(data)
        yield "second", slow.chunks()

    up = asyncio.ensure_future(ctx.objects.upload(world.alice, pkg.package_id, files()))
    await slow.sent.wait()
    # What is tested is time passing: past the delay since "first" was staged.
    await asyncio.sleep(DELAY.total_seconds() * 1.5)
    report = await collect_garbage(ctx.db, ctx.store, DELAY)
    assert report.layouts == 0 and report.temp_files == 0
    slow.more.set()
    infos = await up
    assert [i.path for i in infos] == ["first", "second"]
    got = await ctx.objects.get(world.alice, GetObject(at(pkg, "first")))
    assert await read_all(got.body) == data


async def test_gc_spares_a_layout_renewed_after_it_was_listed(world: World) -> None:
    """GC lists garbage, then deletes it layout by layout; a writer whose
    renewal comes in between keeps its layout (found by review)."""
    ctx = world.ctx
    async with ctx.db.write() as conn:
        [layout_id] = await layouts.create_pending_many(conn, NonePolicy(), [(b"k", [])])
        await conn.execute(
            update(t.layouts)
            .where(t.layouts.c.id == layout_id)
            .values(created_at=datetime.now(UTC) - timedelta(hours=1))
        )
    before = datetime.now(UTC) - DELAY
    async with ctx.db.read() as conn:
        assert layout_id in await layouts.garbage(conn, before)
    async with ctx.db.write() as conn:
        assert await layouts.renew_pending(conn, [layout_id]) == 1
    async with ctx.db.write() as conn:
        assert not await layouts.still_garbage(conn, [layout_id], before)


async def test_gc_ends_with_a_released_layout_that_is_referenced(world: World) -> None:
    """Found by review: a layout stamped released while something still
    references it (a copy that took it as a delete released it, on
    PostgreSQL) was listed as garbage and skipped, run after run: GC's loop
    never ended. It is not garbage, and GC ends, leaving it readable."""
    ctx = world.ctx
    pkg = await package(world, "loop")
    data = b"x" * 5000  # past the inline size: a block
    await ctx.objects.put(world.alice, PutObject(at(pkg, "a"), body(data)))
    async with ctx.db.write() as conn:
        await conn.execute(
            update(t.layouts).values(released_at=datetime.now(UTC) - timedelta(hours=1))
        )
    report = await asyncio.wait_for(collect_garbage(ctx.db, ctx.store, DELAY), 30)
    assert report.layouts == 0
    got = await ctx.objects.get(world.alice, GetObject(at(pkg, "a")))
    assert await read_all(got.body) == data


async def test_gc_makes_a_released_layout_that_is_referenced_live_again(world: World) -> None:
    """Found by review: such a layout (a release that raced a copy) was
    left released, and repair, scrub and fsck skip released layouts."""
    ctx = world.ctx
    pkg = await package(world, "heal")
    await ctx.objects.put(world.alice, PutObject(at(pkg, "a"), body(b"x" * 5000)))
    async with ctx.db.write() as conn:
        await conn.execute(update(t.layouts).values(released_at=datetime.now(UTC)))
    report = await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
    assert (report.healed, report.layouts) == (1, 0)
    async with ctx.db.read() as conn:
        live = await sweeps.live_layout_ids(conn, 0, 10)
    assert len(live) == 1


async def test_the_heal_leaves_a_release_that_a_concurrent_delete_made(
    world: World, database_url: str
) -> None:
    """Found by review: the heal, one UPDATE, waited on PostgreSQL for a
    delete that was dropping a released-but-referenced layout's last
    reference, then judged "referenced" by its own earlier snapshot and
    cleared a release that stood: the layout was live with nothing
    referencing it, and no GC would ever take it. The heal locks its
    candidates first and re-checks them in a statement of its own."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writer at a time: no heal runs inside a delete's write")
    ctx = world.ctx
    pkg = await package(world, "healrace")
    info = await ctx.objects.put(world.alice, PutObject(at(pkg, "a"), body(b"x" * 5000)))
    async with ctx.db.write() as conn:  # the state an old race left: released, yet referenced
        await conn.execute(update(t.layouts).values(released_at=datetime.now(UTC)))
        [layout_id] = [r.layout_id for r in await catalog.part_refs(conn, info.object_id)]

    async def heal() -> int:
        async with ctx.db.write() as conn:
            return await layouts.heal_released(conn)

    async with contextlib.AsyncExitStack() as deleting:
        conn = await deleting.enter_async_context(ctx.db.write())
        # The delete drops the last reference and stamps the layout again,
        # holding its row until it commits.
        await catalog.delete_objects(conn, [info.object_id])
        healing = asyncio.ensure_future(heal())
        await until_a_statement_waits_for_a_lock(ctx)
    assert await healing == 0
    async with ctx.db.read() as conn:
        assert await sweeps.layout_status(conn, layout_id) == "released"
    report = await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
    assert report.layouts == 1
    checked = await fsck(ctx)
    assert checked.clean, checked.summary()


async def until_a_statement_waits_for_a_lock(ctx: Context) -> None:
    """Polls PostgreSQL until some backend waits for a lock (30 s at most)."""
    db = ctx.db
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        async with db.read() as conn:
            waiting = (
                await conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            ).scalar_one()
        if waiting:
            return
        assert asyncio.get_running_loop().time() < deadline, "the heal never waited"
        await asyncio.sleep(0.01)
