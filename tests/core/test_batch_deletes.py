"""Many objects of one package deleted in one transaction (S3's
DeleteObjects): each path as a delete of its own would be (caveats,
conditions, a missing object no error), each failure its own, one commit
for the batch."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from core_support import World
from test_objects_support import at, body, package

from jointcloud.core.authz import Caveat, PathGrant
from jointcloud.core.commands import Conditions, PackageRef, PutObject
from jointcloud.errors import (
    AccessDenied,
    BadArgument,
    ObjectNotFound,
    PackageNotFound,
    PreconditionFailed,
)

NONE = Conditions()


async def test_each_path_is_deleted_as_alone_and_fails_alone(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "many")
    put = {}
    for path in ("a", "b", "tmp/c", "tmp/d"):
        put[path] = await ctx.objects.put(alice, PutObject(at(pkg, path), body(path.encode())))
    narrow = alice.restricted(Caveat(paths=(PathGrant("many", "tmp/"),)))
    ref = PackageRef.by_id(pkg.package_id)
    outcomes = await ctx.objects.delete_many(
        narrow,
        ref,
        [
            ("tmp/c", NONE),
            ("a", NONE),  # outside the caveat
            ("tmp/d", Conditions(if_match=("not-its-etag",))),
            ("tmp/missing", NONE),  # nothing there: no error
            ("tmp/gone", Conditions(if_match=("*",))),  # If-Match needs an object
            ("", NONE),
        ],
    )
    kinds = [None if o is None else type(o) for o in outcomes]
    assert kinds[0] is None and kinds[3] is None
    assert issubclass(kinds[1], AccessDenied)  # type: ignore[arg-type]
    assert kinds[2] is PreconditionFailed and kinds[4] is ObjectNotFound
    assert issubclass(kinds[5], BadArgument)  # type: ignore[arg-type]
    left = [o.path for o in (await ctx.objects.package_objects(alice, pkg.package_id))]
    assert left == ["a", "b", "tmp/d"]

    # A path named twice: the second finds it already deleted.
    outcomes = await ctx.objects.delete_many(
        alice,
        ref,
        [("tmp/d", NONE), ("tmp/d", Conditions(if_match=(put["tmp/d"].etag,))), ("b", NONE)],
    )
    assert outcomes[0] is None and isinstance(outcomes[1], ObjectNotFound) and outcomes[2] is None
    assert [o.path for o in await ctx.objects.package_objects(alice, pkg.package_id)] == ["a"]


async def test_a_missing_package_fails_the_whole_batch(world: World) -> None:
    with pytest.raises(PackageNotFound):
        await world.ctx.objects.delete_many(
            world.alice, PackageRef.by_id(987654), [("a", NONE), ("b", NONE)]
        )


async def test_a_batch_is_one_commit(world: World) -> None:
    """A thousand paths: one transaction, one sync of the metadata log
    (SQLite; PostgreSQL syncs its own commits), where one each made a batch
    of 1,000 cost 3.5 s."""
    ctx, alice = world.ctx, world.alice
    if not ctx.db.is_sqlite:
        pytest.skip("PostgreSQL syncs its own commits: there is no sync of ours to count")
    pkg = await package(world, "thousand")

    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        for i in range(1000):
            yield f"k{i:04d}", body(b"x")

    await ctx.objects.upload(alice, pkg.package_id, files())
    syncs = ctx.db.syncs
    outcomes = await ctx.objects.delete_many(
        alice, PackageRef.by_id(pkg.package_id), [(f"k{i:04d}", NONE) for i in range(1000)]
    )
    assert outcomes == [None] * 1000
    assert ctx.db.syncs - syncs == 1
    assert await ctx.objects.package_objects(alice, pkg.package_id) == []
