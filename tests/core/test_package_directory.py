"""Packages are remembered per process (core/directory.py): a change made in
this process is seen by the next request at once; one made by another
process sharing the database is seen within the key-cache bound, and until
then it cannot lose or misplace data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from core_support import World
from test_objects_support import at, body, package, read_all

from jointcloud.context import Context
from jointcloud.core import directory
from jointcloud.core.authz import Operation
from jointcloud.core.commands import GetObject, PackageRef, PutObject
from jointcloud.core.directory import PackageDirectory
from jointcloud.core.models import Package
from jointcloud.errors import BucketNotFound, ObjectNotFound, PackageNotFound
from jointcloud.redundancy.policy import parse_redundancy

TWO_COPIES = {"type": "rep", "repCount": 2}
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


async def put(ctx: Context, world: World, pkg: Package, path: str, data: bytes) -> None:
    cmd = PutObject(at(pkg, path, by_name=True), body(data))
    await ctx.objects.put(world.alice, cmd)


async def test_a_deleted_package_is_gone_for_the_next_request(world: World) -> None:
    ctx = world.ctx
    pkg = await package(world)
    await put(ctx, world, pkg, "a", b"one")  # remembered now
    await ctx.packages.delete(world.alice, pkg.package_id)
    with pytest.raises(PackageNotFound):
        await put(ctx, world, pkg, "b", b"two")
    with pytest.raises(PackageNotFound):
        await ctx.objects.get(world.alice, GetObject(at(pkg, "a", by_name=True)))
    with pytest.raises(PackageNotFound):
        await ctx.packages.resolve(world.alice, PackageRef.by_id(pkg.package_id), Operation.READ)
    # The same name again is a new package, found as such.
    again = await package(world)
    await put(ctx, world, again, "a", b"three")
    got = await ctx.objects.get(world.alice, GetObject(at(again, "a", by_name=True)))
    assert await read_all(got.body) == b"three"
    assert got.info.package_id == again.package_id != pkg.package_id


async def test_policy_changes_reach_the_next_upload(world: World) -> None:
    ctx = world.ctx
    pkg = await package(world)
    await put(ctx, world, pkg, "before", b"x")
    await ctx.buckets.set_redundancy(world.alice, world.project.bucket_id, TWO_COPIES)
    await put(ctx, world, pkg, "bucket-policy", b"x")
    await ctx.packages.set_redundancy(world.alice, pkg.package_id, {"type": "none"})
    await put(ctx, world, pkg, "package-policy", b"x")

    async def policy(path: str) -> object:
        got = await ctx.objects.get(world.alice, GetObject(at(pkg, path, by_name=True)))
        return got.info.redundancy

    assert await policy("bucket-policy") == parse_redundancy(TWO_COPIES)
    assert await policy("package-policy") == parse_redundancy({"type": "none"})


@pytest.fixture
async def second(ctx: Context) -> AsyncIterator[Context]:
    """Another server process on the same database and data directory."""
    other = await Context.open(ctx.settings)
    yield other
    await other.close()


async def test_another_process_sees_a_deletion_within_the_bound(
    world: World, second: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx
    pkg = await package(world)
    await put(ctx, world, pkg, "a", b"one")
    ref = PackageRef.by_name(pkg.name, pkg.bucket_id)
    assert await second.packages.resolve(world.alice, ref, Operation.WRITE) == pkg
    await ctx.packages.delete(world.alice, pkg.package_id)

    # Within the bound the other process still knows the package, but it
    # neither stores into it nor serves anything from it.
    with pytest.raises(PackageNotFound):
        await second.objects.put(world.alice, PutObject(at(pkg, "b", by_name=True), body(b"b")))
    with pytest.raises(ObjectNotFound):
        await second.objects.get(world.alice, GetObject(at(pkg, "a", by_name=True)))

    # Past the bound it looks again (the clock moved, nothing slept).
    later = directory.time.monotonic() + directory.KEY_CACHE_SECONDS + 1
    monkeypatch.setattr(directory.time, "monotonic", lambda: later)
    with pytest.raises(PackageNotFound):
        await second.packages.resolve(world.alice, ref, Operation.READ)


async def test_a_deleted_bucket_is_gone_for_the_next_request(world: World) -> None:
    ctx = world.ctx
    bucket = await ctx.buckets.create(world.alice, "short-lived")
    pkg = await ctx.packages.create(world.alice, bucket.bucket_id, "p")
    ref = PackageRef.by_name("p", bucket.bucket_id)
    await ctx.packages.resolve(world.alice, ref, Operation.READ)
    await ctx.packages.delete(world.alice, pkg.package_id)
    await ctx.buckets.delete(world.alice, bucket.bucket_id)
    with pytest.raises(BucketNotFound):
        await ctx.packages.resolve(world.alice, ref, Operation.READ)


def test_an_answer_read_before_a_change_is_not_kept() -> None:
    d = PackageDirectory(seconds=60)
    pkg = Package(1, 1, "p", None, EPOCH)
    generation = d.generation  # a lookup starts...
    d.changed()  # ...a change commits meanwhile...
    d.put("k", pkg, generation)  # ...and the lookup ends with what it read
    assert d.get("k") is None
    d.put("k", pkg, d.generation)
    assert d.get("k") is pkg


def test_entries_are_bounded() -> None:
    d = PackageDirectory(seconds=60, entries=3)
    for i in range(5):
        d.put(i, Package(i, 1, f"p{i}", None, EPOCH), d.generation)
    assert [d.get(i) is not None for i in range(5)] == [False, False, True, True, True]
