"""Deleting or moving by IDs with a restricted key: the caveats are checked where the
objects are, and an object moved out of the key's reach between that check
and the delete is not deleted. The move is made for real between the two
(inside the delete's first lookup), not left to timing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from core_support import World
from test_objects_support import at, body, package, read_all

from jointcloud.core.authz import Caveat, PathGrant
from jointcloud.core.commands import CopyObject, GetObject, PutObject
from jointcloud.errors import Conflict, ObjectNotFound
from jointcloud.meta import catalog, sweeps
from jointcloud.meta.catalog import buckets as catalog_buckets


async def test_an_object_moved_out_of_reach_meanwhile_is_not_deleted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx
    pkg = await package(world, "race")
    info = await ctx.objects.put(world.alice, PutObject(at(pkg, "tmp/a"), body(b"keep me")))
    narrow = world.alice.restricted(Caveat(paths=(PathGrant("race", "tmp/"),)))
    lookup = catalog.objects_by_ids
    calls = 0

    async def then_moved(conn: Any, user_id: int, ids: Sequence[int]) -> Any:
        nonlocal calls
        found = await lookup(conn, user_id, ids)
        calls += 1
        if calls == 1:  # the caveat check has its answer: the owner moves it away
            moved, failed = await ctx.objects.move(
                world.alice, [(info.object_id, pkg.package_id, "keep/a")]
            )
            assert moved == [info.object_id] and not failed
        return found

    monkeypatch.setattr(catalog, "objects_by_ids", then_moved)
    with pytest.raises(Conflict, match="changed while it was being deleted"):
        await ctx.objects.delete_by_ids(narrow, [info.object_id])
    monkeypatch.setattr(catalog, "objects_by_ids", lookup)
    kept = await catalog_object(world, info.object_id)
    assert kept is not None and kept.path == "keep/a"


async def catalog_object(world: World, object_id: int) -> Any:
    async with world.ctx.db.read() as conn:
        return (await catalog.objects_by_ids(conn, world.alice.user_id, [object_id])).get(object_id)


async def test_a_move_of_an_object_moved_out_of_reach_meanwhile_fails(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a move by ID (found by review): the key's caveats
    were checked at tmp/a, the owner moved it to private/a meanwhile, and
    the key's move took it from there back into its reach."""
    ctx = world.ctx
    pkg = await package(world, "race2")
    info = await ctx.objects.put(world.alice, PutObject(at(pkg, "tmp/a"), body(b"secret")))
    narrow = world.alice.restricted(Caveat(paths=(PathGrant("race2", "tmp/"),)))
    lookup = catalog.get_object
    calls = 0

    async def then_moved(conn: Any, user_id: int, object_id: int) -> Any:
        nonlocal calls
        found = await lookup(conn, user_id, object_id)
        calls += 1
        if calls == 1:  # the caveat check has its answer: the owner moves it away
            monkeypatch.setattr(catalog, "get_object", lookup)
            moved, failed = await ctx.objects.move(
                world.alice, [(info.object_id, pkg.package_id, "private/a")]
            )
            assert moved == [info.object_id] and not failed
            monkeypatch.setattr(catalog, "get_object", then_moved)
        return found

    monkeypatch.setattr(catalog, "get_object", then_moved)
    moved, failed = await ctx.objects.move(narrow, [(info.object_id, pkg.package_id, "tmp/b")])
    monkeypatch.setattr(catalog, "get_object", lookup)
    assert moved == [] and failed == [(info.object_id, "the object moved meanwhile; try again")]
    kept = await catalog_object(world, info.object_id)
    assert kept is not None and kept.path == "private/a"


async def test_a_copy_keeps_the_layouts_it_took_from_an_object_deleted_meanwhile(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: on PostgreSQL a delete by ID running while a copy
    had read its source's layouts released them (it could not see the
    copy's uncommitted references), and the copy's object then read
    layouts marked for GC, skipped by repair, scrub and fsck. The delete
    now waits for the copy (both lock the package's paths)."""
    ctx = world.ctx
    pkg = await package(world, "copyrace")
    data = b"y" * 5000  # past the inline size: a block
    src = await ctx.objects.put(world.alice, PutObject(at(pkg, "src"), body(data)))
    refs = catalog.part_refs
    deleting: list[asyncio.Future[None]] = []

    async def racing(conn: Any, object_id: int) -> Any:
        found = await refs(conn, object_id)
        if not deleting:
            deleting.append(
                asyncio.ensure_future(ctx.objects.delete_by_ids(world.alice, [src.object_id]))
            )
            # Before the fix it ran to its end here; now it waits for the copy.
            await asyncio.wait(deleting, timeout=2)
        return found

    monkeypatch.setattr(catalog, "part_refs", racing)
    dst = await ctx.objects.copy(
        world.alice, CopyObject(source=at(pkg, "src"), dest=at(pkg, "dst"))
    )
    monkeypatch.setattr(catalog, "part_refs", refs)
    await deleting[0]
    async with ctx.db.read() as conn:
        [layout_id] = [r.layout_id for r in await catalog.part_refs(conn, dst.object_id)]
        assert await sweeps.layout_status(conn, layout_id) == "live"
    got = await ctx.objects.get(world.alice, GetObject(at(pkg, "dst")))
    assert await read_all(got.body) == data


async def test_a_delete_by_ids_beside_a_package_delete_is_no_deadlock(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: a package delete took its objects' rows, then its
    package row; a delete by IDs took the package row, then the objects'
    rows. On PostgreSQL the two deadlocked. Both take the package first."""
    ctx = world.ctx
    pkg = await package(world, "gone")
    info = await ctx.objects.put(world.alice, PutObject(at(pkg, "a"), body(b"x" * 5000)))
    delete_objects = catalog_buckets.delete_objects
    beside: list[asyncio.Future[None]] = []

    async def then_by_ids(conn: Any, ids: Any) -> None:
        await delete_objects(conn, ids)
        beside.append(ensure(ctx.objects.delete_by_ids(world.alice, [info.object_id])))
        await asyncio.wait(beside, timeout=2)  # before the fix: the deadlock came here

    monkeypatch.setattr(catalog_buckets, "delete_objects", then_by_ids)
    await ctx.packages.delete(world.alice, pkg.package_id)
    with pytest.raises(ObjectNotFound):  # it waited for the package delete
        await beside[0]


async def test_a_delete_of_an_object_moved_before_its_lock_fails(
    world: World, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """Found by review: the delete locked the package its object was in at
    its first read; moved since, the object was deleted in a package not
    locked, and a copy from there could lose its layouts as above."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writer at a time: nothing moves inside a delete's write")
    ctx = world.ctx
    p1, p2 = await package(world, "m1"), await package(world, "m2")
    info = await ctx.objects.put(world.alice, PutObject(at(p1, "a"), body(b"x" * 5000)))
    lock = catalog.lock_package_paths
    moves = 0

    async def moved_first(conn: Any, package_id: int) -> Any:
        nonlocal moves
        if moves == 0:
            moves += 1
            monkeypatch.setattr(catalog, "lock_package_paths", lock)
            done, failed = await ctx.objects.move(
                world.alice, [(info.object_id, p2.package_id, "a")]
            )
            assert done == [info.object_id] and not failed
        return await lock(conn, package_id)

    monkeypatch.setattr(catalog, "lock_package_paths", moved_first)
    with pytest.raises(Conflict, match="changed while it was being deleted"):
        await ctx.objects.delete_by_ids(world.alice, [info.object_id])
    kept = await catalog_object(world, info.object_id)
    assert kept is not None and kept.package_id == p2.package_id


def ensure(work: Any) -> asyncio.Future[None]:
    return asyncio.ensure_future(work)


async def test_a_move_waits_for_a_delete_by_ids_that_checked_the_object(
    world: World, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """Found by review: a move took no package lock, so on PostgreSQL it
    could commit between a delete by IDs' last read (the object where the
    key may delete it) and its DELETE, which then removed the object where
    it had gone, outside the key's reach. The move now takes both
    packages' paths and waits for the delete."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writer at a time: nothing moves inside a delete's write")
    ctx = world.ctx
    p1, p2 = await package(world, "mv1"), await package(world, "mv2")
    info = await ctx.objects.put(world.alice, PutObject(at(p1, "tmp/a"), body(b"x" * 5000)))
    narrow = world.alice.restricted(Caveat(paths=(PathGrant("mv1", "tmp/"),)))
    lookup = catalog.objects_by_ids
    calls = 0
    moving: list[asyncio.Future[tuple[list[int], list[tuple[int, str]]]]] = []

    async def then_moved(conn: Any, user_id: int, ids: Sequence[int]) -> Any:
        nonlocal calls
        found = await lookup(conn, user_id, ids)
        calls += 1
        if calls == 3:  # the delete's read under its lock: the owner moves it away
            moving.append(
                asyncio.ensure_future(
                    ctx.objects.move(world.alice, [(info.object_id, p2.package_id, "kept/a")])
                )
            )
            # Before the fix the move committed here; now it waits for the delete.
            await asyncio.wait(moving, timeout=2)
        return found

    monkeypatch.setattr(catalog, "objects_by_ids", then_moved)
    await ctx.objects.delete_by_ids(narrow, [info.object_id])
    monkeypatch.setattr(catalog, "objects_by_ids", lookup)
    moved, failed = await moving[0]
    # The delete came first, where the key may delete: the move finds nothing.
    assert moved == [] and failed == [(info.object_id, f"object {info.object_id} not found")]
    assert await catalog_object(world, info.object_id) is None
