"""Listings take turns with the other requests of their process
(``turns``, ``ObjectListings.gate``).

The review of one heavy tenant (2026-12-07) measured another user's 4 KiB
GETs at a median of 120 ms while one user's 16 clients listed 1,000 keys a
page: a listing read, built and rendered its page without suspending (one
callback of about 4 ms on SQLite), and a turn of the event loop ran up to
16 of them. A listing now suspends between pieces of rows, and one user's
listings go at most ``LISTINGS_PER_USER`` at a time in a process, so each
turn holds little of them whoever lists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from core_support import World, turns_during
from test_objects_support import package

from jointcloud.core import listing
from jointcloud.core.commands import ListObjects, PackageRef
from jointcloud.core.listing import LISTINGS_PER_USER, TURN_QUERIES, PerUserGate
from jointcloud.meta import driver
from jointcloud.turns import PIECE

KEYS = 1000
FOLDERS, IN_FOLDER = 100, 40


async def _files(prefix: str) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    for i in range(KEYS):

        async def one(i: int = i) -> AsyncIterator[bytes]:
            yield f"object {i}".encode()

        yield f"{prefix}/{i:04d}", one()


async def test_a_long_listing_lets_other_tasks_run_between_pieces(world: World) -> None:
    ctx = world.ctx
    pkg = await package(world)
    await ctx.objects.upload(world.alice, pkg.package_id, _files("k"), from_client=False)
    pieces = KEYS // PIECE  # at least this many suspensions in reading the rows

    v1 = ctx.objects.list_by_path(
        world.alice, pkg.package_id, "k/", is_prefix=True, no_recursive=False
    )
    _, turns = await turns_during(v1)
    assert turns >= pieces, f"a 1,000-key v1 listing let others run {turns} times"
    assert len((await v1_page(world, pkg.package_id)).objects) == KEYS

    s3 = ctx.objects.list_brief(world.alice, ListObjects(PackageRef.by_id(pkg.package_id)))
    _, turns = await turns_during(s3)
    assert turns >= pieces, f"a 1,000-key S3 listing let others run {turns} times"

    whole = ctx.objects.package_objects(world.alice, pkg.package_id)
    _, turns = await turns_during(whole)
    assert turns >= pieces, f"a package's 1,000 objects let others run {turns} times"

    # A page of common prefixes with many objects under each: many small
    # reads (listing.ROLLUP_BATCH rows each), not a few large ones.
    reads = 0
    real = listing.catalog.list_entries

    async def counted(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real(*args)

    await ctx.objects.upload(world.alice, pkg.package_id, _folders(), from_client=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(listing.catalog, "list_entries", counted)
        folders = ctx.objects.list_by_path(
            world.alice, pkg.package_id, "d/", is_prefix=True, no_recursive=True
        )
        _, turns = await turns_during(folders)
    assert reads > 4 * TURN_QUERIES
    assert turns >= reads // TURN_QUERIES, f"{reads} reads let others run {turns} times"
    page = await ctx.objects.list_by_path(
        world.alice, pkg.package_id, "d/", is_prefix=True, no_recursive=True
    )
    assert page.common_prefixes == [f"d/{i:03d}/" for i in range(FOLDERS)]


async def _folders() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    for i in range(FOLDERS):
        for j in range(IN_FOLDER):

            async def one() -> AsyncIterator[bytes]:
                yield b"x"

            yield f"d/{i:03d}/{j:02d}", one()


async def v1_page(world: World, package_id: int) -> listing.EntryListing:
    return await world.ctx.objects.list_by_path(
        world.alice, package_id, "k/", is_prefix=True, no_recursive=False
    )


async def test_one_users_listings_wait_their_turn_and_another_users_do_not(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx
    cap = LISTINGS_PER_USER["sqlite" if ctx.db.is_sqlite else "postgresql"]
    pkg = await package(world)
    await ctx.objects.upload(world.alice, pkg.package_id, _files("k"), from_client=False)
    bob_pkg = await ctx.packages.create(world.bob, world.bob_project.bucket_id, "bobs")
    await ctx.objects.upload(world.bob, bob_pkg.package_id, _files("k"), from_client=False)

    # Count the listings reading rows at once, per package (= per user here).
    reading: dict[int, int] = {pkg.package_id: 0, bob_pkg.package_id: 0}
    most: dict[int, int] = dict(reading)

    def counting(real: Any) -> Any:
        async def counted(conn: Any, package_id: int, *args: Any) -> Any:
            reading[package_id] += 1
            most[package_id] = max(most[package_id], reading[package_id])
            try:
                return await real(conn, package_id, *args)
            finally:
                reading[package_id] -= 1

        return counted

    # A JCS page reads entries; a whole package (getPackageObjects, a
    # transfer's listing of its target) reads whole objects.
    for name in ("list_entries", "list_objects"):
        monkeypatch.setattr(listing.catalog, name, counting(getattr(listing.catalog, name)))

    async def whole() -> Any:
        return listing.EntryListing(
            [], await ctx.objects.package_objects(world.alice, pkg.package_id), None
        )

    alices = [
        asyncio.ensure_future(v1_page(world, pkg.package_id) if i % 2 else whole())
        for i in range(6)
    ]
    await asyncio.sleep(0)
    bobs = await ctx.objects.list_by_path(
        world.bob, bob_pkg.package_id, "k/", is_prefix=True, no_recursive=False
    )
    # Bob's listing ended while alice's queued ones had not: he did not wait
    # behind all of them.
    assert sum(not a.done() for a in alices) >= 6 - 2 * cap
    pages = await asyncio.gather(*alices)
    assert [len(p.objects) for p in pages] == [KEYS] * 6 and len(bobs.objects) == KEYS
    assert most[pkg.package_id] == cap, most
    assert ctx.objects.gate._gates == {}  # nothing kept of users not listing


async def test_the_gate_holds_each_user_to_their_share() -> None:
    gate = PerUserGate(2)
    inside: dict[int, int] = {1: 0, 2: 0}
    most: dict[int, int] = {1: 0, 2: 0}
    let_go = asyncio.Event()

    async def hold(user: int) -> None:
        async with gate.held(user):
            inside[user] += 1
            most[user] = max(most[user], inside[user])
            await let_go.wait()
            inside[user] -= 1

    tasks = [asyncio.ensure_future(hold(1)) for _ in range(5)]
    tasks.append(asyncio.ensure_future(hold(2)))
    for _ in range(3):
        await asyncio.sleep(0)
    assert inside == {1: 2, 2: 1}  # user 2 got in while user 1's three waited
    let_go.set()
    await asyncio.gather(*tasks)
    assert most == {1: 2, 2: 1} and inside == {1: 0, 2: 0}
    assert gate._gates == {}


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    gate = PerUserGate(1)
    let_go = asyncio.Event()

    async def hold() -> None:
        async with gate.held(1):
            await let_go.wait()

    first = asyncio.ensure_future(hold())
    second = asyncio.ensure_future(hold())
    await asyncio.sleep(0)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    let_go.set()
    await first
    assert gate._gates == {}
    async with asyncio.timeout(5):
        async with gate.held(1):
            pass


async def test_a_listing_cancelled_between_pieces_leaves_its_reader_clean(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing cancelled while its rows are read (between two pieces) left
    its statement running on the reader: ROLLBACK keeps the read snapshot of
    a statement still running, and the reader went back as clean. While
    anything held the cancelled task's exception (here its caller, as
    ``gather(..., return_exceptions=True)`` does), the next read on that
    reader saw the database as it was before, and once the reader went back
    to the pool, a write that took it failed as locked (``BEGIN
    IMMEDIATE`` on an old snapshot) after a minute of retries."""
    ctx = world.ctx
    if not ctx.db.is_sqlite:
        pytest.skip("PostgreSQL's rows come in one answer: no read stops between pieces")
    pkg = await package(world)
    await ctx.objects.upload(world.alice, pkg.package_id, _files("k"), from_client=False)
    between = asyncio.Event()
    real_turn = driver.turn

    async def stop_here() -> None:
        between.set()
        await asyncio.Event().wait()  # until cancelled

    monkeypatch.setattr(driver, "turn", stop_here)
    listing_task = asyncio.ensure_future(v1_page(world, pkg.package_id))
    await between.wait()
    listing_task.cancel()
    kept = await asyncio.gather(listing_task, return_exceptions=True)
    assert isinstance(kept[0], asyncio.CancelledError)
    monkeypatch.setattr(driver, "turn", real_turn)

    await ctx.objects.upload(world.alice, pkg.package_id, _one("new/0"), from_client=False)
    page = await ctx.objects.list_by_path(
        world.alice, pkg.package_id, "new/", is_prefix=True, no_recursive=False
    )
    assert [o.path for o in page.objects] == ["new/0"]  # was [] (an old snapshot)
    assert ctx.objects.gate._gates == {}


async def _one(path: str) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    async def body() -> AsyncIterator[bytes]:
        yield b"x"

    yield path, body()
