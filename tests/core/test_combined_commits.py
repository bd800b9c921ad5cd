"""Uploads into one package that queue behind a running commit are
committed together (``core/combiner.py``), yet each succeeds or fails on
its own. The first upload's commit is held open (its ``before_commit``
waits) while the others queue, so what is combined is known, not left to
timing. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from core_support import FailingSync, World
from sqlalchemy.ext.asyncio import AsyncConnection
from test_objects_support import at, body, md5, package, read_all, stored

from jointcloud.core import combiner as combiner_module
from jointcloud.core.commands import GetObject, PutObject
from jointcloud.core.gc import collect_garbage
from jointcloud.core.models import ObjectInfo, Package, StagedLayout
from jointcloud.errors import BadArgument, Conflict, MetadataOutOfReach, MetadataUnavailable
from jointcloud.meta.catalog import NewContent
from jointcloud.meta.db import NotDurable
from jointcloud.redundancy.policy import Redundancy


async def files(*named: tuple[str, bytes]) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    for path, data in named:
        yield path, body(data)


class Held:
    """An upload whose commit transaction stays open until ``release``."""

    def __init__(self, world: World, pkg: Package) -> None:
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

        async def hold() -> None:
            self.entered.set()
            await self.gate.wait()

        self.task = asyncio.ensure_future(
            world.ctx.objects.upload(
                world.alice, pkg.package_id, files(("first", b"first")), before_commit=hold
            )
        )

    async def __aenter__(self) -> Held:
        await self.entered.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.gate.set()
        await self.task


Queued = Callable[[int], Awaitable[None]]


@pytest.fixture
def queued(world: World, monkeypatch: pytest.MonkeyPatch) -> Queued:
    """``await queued(n)``: until ``n`` uploads wait behind the held commit
    (each reaches the queue after its own staging)."""
    combiner = world.ctx.objects.combiner
    real = combiner.submit
    wanted: dict[int, asyncio.Event] = {}

    def submit(*args: Any, **kwargs: Any) -> asyncio.Future[list[ObjectInfo]]:
        done = real(*args, **kwargs)
        for n, event in wanted.items():
            if combiner.waiting() >= n:
                event.set()
        return done

    monkeypatch.setattr(combiner, "submit", submit)

    async def wait(n: int) -> None:
        event = wanted.setdefault(n, asyncio.Event())
        if combiner.waiting() >= n:
            event.set()
        await event.wait()

    return wait


def before_statements(
    monkeypatch: pytest.MonkeyPatch, check: Callable[[Sequence[NewContent]], None]
) -> None:
    """``check`` sees the items of each bulk write (and may raise) before
    the statements run."""
    real = combiner_module.write_contents

    async def write(
        conn: AsyncConnection,
        package_id: int,
        policy: Redundancy,
        staged: Sequence[StagedLayout],
        items: Sequence[NewContent],
    ) -> list[ObjectInfo]:
        check(items)
        return await real(conn, package_id, policy, staged, items)

    monkeypatch.setattr(combiner_module, "write_contents", write)


def put(world: World, pkg: Package, path: str, data: bytes) -> asyncio.Future[ObjectInfo]:
    return asyncio.ensure_future(
        world.ctx.objects.put(world.alice, PutObject(at(pkg, path), body(data)))
    )


async def read(world: World, pkg: Package, path: str) -> bytes:
    got = await world.ctx.objects.get(world.alice, GetObject(at(pkg, path)))
    return await read_all(got.body)


async def test_uploads_queued_behind_a_commit_are_committed_in_one(
    world: World, queued: Queued
) -> None:
    ctx = world.ctx
    pkg = await package(world)
    before = ctx.objects.combiner.transactions
    datas = {f"k/{i:02d}": b"object %d " % i * (i + 1) for i in range(20)}
    async with Held(world, pkg):
        puts = {path: put(world, pkg, path, data) for path, data in datas.items()}
        # A multi-file upload queues with them.
        upload = asyncio.ensure_future(
            ctx.objects.upload(world.alice, pkg.package_id, files(("m/a", b"a"), ("m/b", b"bb")))
        )
        await queued(21)
    infos = {path: await task for path, task in puts.items()}
    multi = await upload
    # The held upload's commit, then one for the 21 that queued behind it.
    assert ctx.objects.combiner.transactions - before == 2
    for path, data in datas.items():
        assert (infos[path].path, infos[path].size) == (path, len(data))
        assert await read(world, pkg, path) == data
    assert [(o.path, o.size) for o in multi] == [("m/a", 1), ("m/b", 2)]
    assert len({i.object_id for i in [*infos.values(), *multi]}) == 22
    listed = await ctx.objects.package_objects(world.alice, pkg.package_id)
    assert sorted(o.path for o in listed) == sorted([*datas, "m/a", "m/b", "first"])


async def test_one_path_written_twice_in_a_batch_keeps_the_last(
    world: World, queued: Queued
) -> None:
    ctx = world.ctx
    pkg = await package(world)
    first = await ctx.objects.put(world.alice, PutObject(at(pkg, "same"), body(b"v0")))
    before = ctx.objects.combiner.transactions
    async with Held(world, pkg):
        tasks = [put(world, pkg, "same", b"v%d" % i) for i in range(1, 5)]
        tasks.append(put(world, pkg, "other", b"o"))
        fresh = [b"f%d" % i * (i + 1) for i in range(3)]
        tasks += [put(world, pkg, "fresh", data) for data in fresh]  # a new path
        await queued(8)
    infos = [await t for t in tasks]
    # One transaction for the eight (writing each path in turn), none alone.
    assert ctx.objects.combiner.transactions - before == 2
    # Every writer of a path was told it wrote that path's one object.
    assert {i.object_id for i in infos[:4]} == {first.object_id}
    assert len({i.object_id for i in infos[5:]}) == 1
    assert await read(world, pkg, "same") == b"v4"  # the last to arrive
    assert await read(world, pkg, "fresh") == fresh[-1]
    for path, data in (("same", b"v4"), ("fresh", fresh[-1])):
        head = await ctx.objects.head(world.alice, at(pkg, path))
        assert (head.size, head.etag) == (len(data), md5(data))
    assert await read(world, pkg, "other") == b"o"
    await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
    objects, layouts, _, _ = await stored(ctx)
    # first, same, other, fresh: no replaced layout left
    assert (objects, layouts) == (4, 4)


async def test_an_upload_that_cannot_commit_fails_alone(
    world: World, monkeypatch: pytest.MonkeyPatch, queued: Queued
) -> None:
    ctx = world.ctx
    pkg = await package(world)

    def refusing(items: Sequence[NewContent]) -> None:
        if any(it.path == "bad" for it in items):
            raise Conflict("refused for the test")

    before_statements(monkeypatch, refusing)
    empty = await stored(ctx)
    before = ctx.objects.combiner.transactions
    async with Held(world, pkg):
        good = [put(world, pkg, f"g{i}", b"good %d" % i) for i in range(3)]
        bad = put(world, pkg, "bad", b"bad")
        await queued(4)
    for i, task in enumerate(good):
        assert (await task).path == f"g{i}"
        assert await read(world, pkg, f"g{i}") == b"good %d" % i
    with pytest.raises(Conflict, match="refused for the test"):
        await bad
    # Held, the combined attempt, then each of the four alone.
    assert ctx.objects.combiner.transactions - before == 6
    await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
    objects, layouts, _, _ = await stored(ctx)
    assert (objects - empty[0], layouts - empty[1]) == (4, 4)  # first and g0..g2


class Abandoned(BaseException):
    """Not an ``Exception``: a hook may raise anything."""


@pytest.mark.parametrize("refusal", [BadArgument, Abandoned])
async def test_a_refusing_before_commit_drops_only_its_upload(
    world: World, queued: Queued, refusal: type[BaseException]
) -> None:
    ctx = world.ctx
    pkg = await package(world)
    empty = await stored(ctx)

    def refuse() -> Callable[[], Awaitable[None]]:
        async def gone() -> None:
            raise refusal("the client went away")

        return gone

    before = ctx.objects.combiner.transactions
    async with Held(world, pkg):
        kept = put(world, pkg, "kept", b"kept")
        dropped = asyncio.ensure_future(
            ctx.objects.upload(
                world.alice, pkg.package_id, files(("dropped", b"d")), before_commit=refuse()
            )
        )
        await queued(2)
    assert (await kept).path == "kept"
    with pytest.raises(refusal, match="went away"):
        await dropped
    assert ctx.objects.combiner.transactions - before == 2
    listed = await ctx.objects.package_objects(world.alice, pkg.package_id)
    assert sorted(o.path for o in listed) == ["first", "kept"]
    await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
    objects, layouts, _, _ = await stored(ctx)
    assert (objects - empty[0], layouts - empty[1]) == (2, 2)


async def test_a_cancelled_drain_leaves_no_upload_waiting(world: World, queued: Queued) -> None:
    """The server stopping cancels the task that commits a package's queue:
    the uploads it held and those queued behind are cancelled (their staged
    blocks go), none waits forever, and the package still takes uploads."""
    ctx = world.ctx
    pkg = await package(world)
    empty = await stored(ctx)
    held = Held(world, pkg)
    await held.entered.wait()
    waiting = [put(world, pkg, f"w{i}", b"w") for i in range(3)]
    await queued(3)
    ((_, drain),) = ctx.objects.combiner._draining.items()
    drain.cancel()
    tasks: list[asyncio.Future[Any]] = [held.task, *waiting]
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await stored(ctx) == empty  # nothing visible, no block left
    # A cancelled drain that never ran does not wedge its package either.
    lost = put(world, pkg, "x", b"x")
    await queued(1)  # its drain is started, not yet running
    ((_, drain),) = ctx.objects.combiner._draining.items()
    drain.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lost
    again = await ctx.objects.put(world.alice, PutObject(at(pkg, "y"), body(b"y")))
    assert again.path == "y" and await read(world, pkg, "y") == b"y"


async def test_a_transaction_takes_a_bounded_number_of_objects(
    world: World, queued: Queued, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multi-file upload counts its files against the bound; the queue is
    committed in arrival order, in as many transactions as the bound needs."""
    monkeypatch.setattr(combiner_module, "MAX_ITEMS", 3)
    ctx = world.ctx
    pkg = await package(world)
    before = ctx.objects.combiner.transactions
    async with Held(world, pkg):
        s1, s2 = put(world, pkg, "s1", b"1"), put(world, pkg, "s2", b"2")
        await queued(2)
        multi = asyncio.ensure_future(
            ctx.objects.upload(world.alice, pkg.package_id, files(("m1", b"a"), ("m2", b"b")))
        )
        await queued(3)
        s3 = put(world, pkg, "s3", b"3")
        await queued(4)
    # Held; then s1 and s2 (the upload of two would make four); then it and s3.
    assert [o.path for o in await multi] == ["m1", "m2"]
    assert [(await t).path for t in (s1, s2, s3)] == ["s1", "s2", "s3"]
    assert ctx.objects.combiner.transactions - before == 3


async def test_an_upload_whose_commit_is_not_synced_keeps_its_blocks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync of a commit fails: the upload is not acknowledged
    (``NotDurable``), but the commit went through and the object is
    visible, so its blocks must stay readable (they were discarded)."""
    ctx = world.ctx
    if not ctx.db.is_sqlite:
        pytest.skip("PostgreSQL syncs its own commits: there is no sync of ours to fail")
    pkg = await package(world)
    data = os.urandom(300_000)  # blocks in spaces, not inline

    sync = FailingSync(monkeypatch)
    before_statements(monkeypatch, lambda items: sync.arm())  # the upload's commit
    with pytest.raises(NotDurable):
        await ctx.objects.put(world.alice, PutObject(at(pkg, "big"), body(data)))
    monkeypatch.undo()
    assert await read(world, pkg, "big") == data


async def test_a_drain_cancelled_while_its_commit_completes_keeps_the_blocks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stopping cancels a drain after its statements ran: the
    transaction still ends (on SQLite the group commit is finished for its
    members, and commits). The upload is answered with the cancellation,
    yet either its object is visible with all its bytes or nothing of it
    is left — never an object whose blocks were discarded."""
    ctx = world.ctx
    pkg = await package(world)
    empty = await stored(ctx)
    data = os.urandom(300_000)  # blocks in spaces, not inline

    def cancel_the_drain(items: Sequence[NewContent]) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # raised at the drain's next wait: the commit's end

    before_statements(monkeypatch, cancel_the_drain)
    with pytest.raises(asyncio.CancelledError):
        await ctx.objects.put(world.alice, PutObject(at(pkg, "big"), body(data)))
    monkeypatch.undo()
    listed = [o.path for o in await ctx.objects.package_objects(world.alice, pkg.package_id)]
    if ctx.db.is_sqlite:
        assert listed == ["big"]  # the group commit ran to its end
    if listed:
        assert await read(world, pkg, "big") == data
    else:
        assert await stored(ctx) == empty
    await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
    if listed:
        assert await read(world, pkg, "big") == data


def _disk_full(sqlite: bool) -> Exception:
    """What the database raises when its disk is full: SQLite (its extended
    code set the way the sqlite3 module sets it) or PostgreSQL."""
    if not sqlite:
        return asyncpg.DiskFullError('could not extend file "base/5/1": No space left on device')
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL
    return exc


async def test_a_commit_failed_by_a_full_disk_discards_its_blocks(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metadata database answers but cannot write: the upload fails
    with a 503's error, and its blocks go at once (on a full disk they are
    what is needed most), not after GC's delay."""
    ctx = world.ctx
    pkg = await package(world)
    empty = await stored(ctx)

    def fail(items: Sequence[NewContent]) -> None:
        raise _disk_full(ctx.db.is_sqlite)

    before_statements(monkeypatch, fail)
    said = "cannot use its file" if ctx.db.is_sqlite else r"out of service \(No space left"
    with pytest.raises(MetadataUnavailable, match=said):
        await ctx.objects.put(world.alice, PutObject(at(pkg, "big"), body(os.urandom(300_000))))
    monkeypatch.undo()
    assert await stored(ctx) == empty


async def test_a_commit_failed_by_a_database_out_of_reach_leaves_its_blocks_to_gc(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database out of reach: the discard is not tried (it would wait
    as long again); the pending layout and its blocks stay for GC."""
    ctx = world.ctx
    pkg = await package(world)
    empty = await stored(ctx)

    def fail(items: Sequence[NewContent]) -> None:
        raise MetadataOutOfReach("cannot reach the metadata database (test)")

    before_statements(monkeypatch, fail)
    with pytest.raises(MetadataOutOfReach):
        await ctx.objects.put(world.alice, PutObject(at(pkg, "big"), body(os.urandom(300_000))))
    monkeypatch.undo()
    objects, layouts, blocks, files = await stored(ctx)
    assert (objects, layouts, blocks, files) == (empty[0], empty[1] + 1, empty[2] + 1, empty[3] + 1)
    await collect_garbage(ctx.db, ctx.store, timedelta(seconds=-1))
    assert await stored(ctx) == empty
