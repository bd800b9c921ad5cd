"""Races a review reproduced against a real server on PostgreSQL (READ
COMMITTED, where each statement of a read has its own snapshot and a check
made before a lock can be stale by the time the lock is held), each
interleaved here deterministically.

- An S3 DeleteBucket (delete only if empty) racing a writer of the bucket:
  an object committed between the emptiness check and the delete was
  deleted with the package after its writer had been answered.
- Two deletes of one package both succeeded.
- ListParts racing a completion answered an empty list for a live upload.
- An object and its copy deleted at once left their shared layout live
  and unreferenced, never collected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from core_support import World
from sqlalchemy import select, text
from test_multipart_support import SMALL_PARTS, at, body, data, package

from jointcloud.core import deletes as deletes_module
from jointcloud.core import multipart as multipart_module
from jointcloud.core.commands import Conditions, CopyObject, GetObject, PackageRef, PutObject
from jointcloud.errors import NotEmpty, PackageNotFound, UploadNotFound
from jointcloud.meta import catalog
from jointcloud.meta import tables as t


async def lock_waiters(world: World) -> int:
    async with world.ctx.db.read() as conn:
        q = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return int((await conn.execute(q)).scalar_one())


async def until_blocked(world: World, tasks: list[asyncio.Task[Any]], count: int) -> None:
    """Until ``count`` of the tasks wait for a row lock or all are done
    (PostgreSQL says so; nothing wakes a waiter on that, so it is asked
    again until then)."""
    while not all(t.done() for t in tasks) and await lock_waiters(world) < count:
        await asyncio.wait(tasks, timeout=0.01)


def postgresql_only(world: World) -> None:
    if world.ctx.db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: the delete cannot start inside a write")


async def test_an_empty_bucket_delete_never_deletes_an_object_it_raced_with(
    world: World,
) -> None:
    """The writer holds the package's paths when the delete starts; the
    delete must wait for it, then find the object and refuse (BucketNotEmpty
    in S3), and the acknowledged object stays."""
    postgresql_only(world)
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "racing")
    deletes: list[asyncio.Task[None]] = []

    async def delete_meanwhile() -> None:
        deletes.append(
            asyncio.ensure_future(ctx.packages.delete(alice, pkg.package_id, only_if_empty=True))
        )
        await until_blocked(world, deletes, 1)

    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        yield "kept", body(b"acknowledged")

    [info] = await ctx.objects.upload(
        alice, pkg.package_id, files(), before_commit=delete_meanwhile
    )
    with pytest.raises(NotEmpty):
        await deletes[0]
    got = await ctx.objects.get(alice, GetObject(at(pkg, "kept")))
    assert b"".join([c async for c in got.body]) == b"acknowledged"
    assert got.info.object_id == info.object_id


async def test_of_two_deletes_of_one_package_one_finds_it_gone(world: World) -> None:
    postgresql_only(world)
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "twice")
    async with ctx.db.write() as conn:
        # A writer of the package holds its paths while both deletes start.
        assert await catalog.lock_package_paths(conn, pkg.package_id)
        deletes = [
            asyncio.ensure_future(ctx.packages.delete(alice, pkg.package_id, only_if_empty=True))
            for _ in range(2)
        ]
        await until_blocked(world, deletes, 2)
    outcomes = await asyncio.gather(*deletes, return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["NoneType", "PackageNotFound"]
    assert all(o is None or isinstance(o, PackageNotFound) for o in outcomes)


@pytest.mark.parametrize("ending", ["complete", "abort"])
async def test_list_parts_racing_the_end_of_an_upload_never_answers_an_empty_list(
    world: World, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """The upload ends between the read of its row and of its parts: the
    answer is its parts as they were, or NoSuchUpload; never a live upload
    with no parts (a resuming client would upload everything again)."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "parts")
    where = at(pkg, "k")
    up = await ctx.multipart.create(alice, where)
    raws = [data(SMALL_PARTS, n) for n in (1, 2, 3)]
    done = [
        await ctx.multipart.upload_part(alice, up.upload_id, where, n, body(raw))
        for n, raw in enumerate(raws, 1)
    ]
    part_page = multipart_module.uploads.part_page

    async def ended_first(*args: Any) -> Any:
        monkeypatch.setattr(multipart_module.uploads, "part_page", part_page)
        if ending == "complete":
            listed = [(n, p.etag, {}) for n, p in enumerate(done, 1)]
            await ctx.multipart.complete(alice, up.upload_id, where, listed)
        else:
            await ctx.multipart.abort(alice, up.upload_id, where)
        return await part_page(*args)

    monkeypatch.setattr(multipart_module.uploads, "part_page", ended_first)
    try:
        page = await ctx.multipart.list_parts(alice, up.upload_id, where)
    except UploadNotFound:
        return
    # SQLite reads in one snapshot: the upload as it was, whole.
    assert ctx.db.is_sqlite
    assert [p.part_number for p in page.parts] == [1, 2, 3]


async def test_an_object_and_its_copy_deleted_at_once_release_their_layout(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy shares its source's layouts. Deleted at the same moment, each
    delete saw the other's reference (deleted, not yet committed) under READ
    COMMITTED, and neither released the layout: it stayed live with nothing
    referencing it, and GC never took it (found by review)."""
    postgresql_only(world)
    ctx, alice = world.ctx, world.alice
    a, b = await package(world, "src"), await package(world, "dst")
    src = await ctx.objects.put(alice, PutObject(at(a, "k"), body(b"x" * 300_000)))
    await ctx.objects.copy(alice, CopyObject(at(a, "k"), at(b, "k")))
    async with ctx.db.read() as conn:
        q = select(t.object_parts.c.layout_id).where(t.object_parts.c.object_id == src.object_id)
        shared = [r.layout_id for r in await conn.execute(q)]
    assert shared
    real = deletes_module.catalog.delete_objects
    first_in, go_on = asyncio.Event(), asyncio.Event()

    async def first_stays_open(conn: Any, ids: Any) -> None:
        await real(conn, ids)
        if not first_in.is_set():
            first_in.set()
            await go_on.wait()  # the first delete's transaction is still open

    monkeypatch.setattr(deletes_module.catalog, "delete_objects", first_stays_open)
    first = asyncio.ensure_future(
        ctx.objects.delete_many(alice, PackageRef.by_id(a.package_id), [("k", Conditions())])
    )
    await first_in.wait()
    second = asyncio.ensure_future(
        ctx.objects.delete_many(alice, PackageRef.by_id(b.package_id), [("k", Conditions())])
    )
    await until_blocked(world, [second], 1)
    go_on.set()
    assert await first == [None] and await second == [None]
    async with ctx.db.read() as conn:
        q = select(t.layouts.c.id, t.layouts.c.released_at).where(t.layouts.c.id.in_(shared))
        rows = (await conn.execute(q)).all()
    assert rows and all(r.released_at is not None for r in rows), rows


async def test_a_package_clone_never_mixes_two_versions_of_an_object(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overwrite committed while a package was cloned gave the clone the
    row of one version and the parts of the next (PostgreSQL): its bytes
    did not match its size and hash (found by review). The clone holds the
    source's paths: the writer waits for it."""
    postgresql_only(world)
    ctx, alice = world.ctx, world.alice
    src = await package(world, "cloned")
    first, second = b"1" * 300_000, b"2" * 200_000
    await ctx.objects.put(alice, PutObject(at(src, "k"), body(first)))
    writers: list[asyncio.Task[Any]] = []
    clone_objects = catalog.clone_objects

    async def overwritten_meanwhile(*args: Any) -> Any:
        if not writers:
            writers.append(
                asyncio.ensure_future(ctx.objects.put(alice, PutObject(at(src, "k"), body(second))))
            )
            await until_blocked(world, writers, 1)
        return await clone_objects(*args)

    monkeypatch.setattr(catalog, "clone_objects", overwritten_meanwhile)
    dst = await ctx.packages.clone(alice, src.package_id, world.project.bucket_id, "copy")
    await writers[0]
    got = await ctx.objects.get(alice, GetObject(at(dst, "k")))
    assert got.info.size == len(first)
    assert b"".join([c async for c in got.body]) == first
    now = await ctx.objects.get(alice, GetObject(at(src, "k")))
    assert b"".join([c async for c in now.body]) == second


async def test_a_clone_by_id_copies_that_object_or_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object named by id is looked up, then copied by its path: another
    object put at that path in between was cloned in its place, answered as
    a success (found by review, on both databases)."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "byid")
    named = await ctx.objects.put(alice, PutObject(at(pkg, "a"), body(b"the one named")))
    get_object = catalog.get_object
    swapped: list[bool] = []

    async def swapped_meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = await get_object(*args, **kwargs)
        if not swapped:
            swapped.append(True)
            await ctx.objects.delete(alice, [named.object_id])
            await ctx.objects.put(alice, PutObject(at(pkg, "a"), body(b"another object")))
        return found

    monkeypatch.setattr(catalog, "get_object", swapped_meanwhile)
    [clone] = await ctx.objects.clone(alice, [(named.object_id, pkg.package_id, "b")])
    assert swapped and clone is None
    assert [o.path for o in await ctx.objects.package_objects(alice, pkg.package_id)] == ["a"]
