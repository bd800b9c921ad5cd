"""Every core call takes a ``Principal``: the bucket, package, id-addressed
object (JCS) and user space services authorize it in ``core/authz.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from core_support import World

from jointcloud.core.authz import Caveat, Operation, PathGrant, Principal
from jointcloud.core.userspaces import SpaceChanges
from jointcloud.errors import (
    AccessDenied,
    AlreadyExists,
    BucketNotFound,
    ObjectNotFound,
    PackageNotFound,
)

NO_WRITES = Caveat(disallow=frozenset({Operation.WRITE, Operation.DELETE}))


async def files(*items: tuple[str, bytes]) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
    for path, data in items:

        async def one(data: bytes = data) -> AsyncIterator[bytes]:
            yield data

        yield path, one()


async def test_project_scope_keeps_to_its_project(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    mine = await ctx.packages.create(alice, world.project.bucket_id, "mine")
    other = await ctx.buckets.create(alice, "other")
    theirs = await ctx.packages.create(alice, other.bucket_id, "theirs")
    scoped = Principal(alice.user_id, project_id=world.project.bucket_id)

    assert [b.bucket_id for b in await ctx.buckets.list(scoped)] == [world.project.bucket_id]
    assert (await ctx.buckets.get(scoped, world.project.bucket_id)).name == "proj"
    assert [p.name for p in await ctx.packages.list(scoped, world.project.bucket_id)] == ["mine"]
    assert (await ctx.packages.get(scoped, mine.package_id)) == mine
    # Another project is not found for a key of one (refusing would confirm it).
    with pytest.raises(BucketNotFound, match=f"bucket {other.bucket_id} not found"):
        await ctx.buckets.get(scoped, other.bucket_id)
    with pytest.raises(BucketNotFound):
        await ctx.buckets.get_by_name(scoped, "other")
    with pytest.raises(BucketNotFound):
        await ctx.packages.list(scoped, other.bucket_id)
    with pytest.raises(PackageNotFound):
        await ctx.packages.get(scoped, theirs.package_id)
    with pytest.raises(BucketNotFound):
        await ctx.packages.get_by_full_name(scoped, "other", "theirs")
    with pytest.raises(AccessDenied, match="another project"):
        await ctx.packages.create(scoped, other.bucket_id, "sneaky")
    with pytest.raises(PackageNotFound):
        await ctx.packages.delete(scoped, theirs.package_id)
    with pytest.raises(PackageNotFound):
        await ctx.packages.set_redundancy(scoped, theirs.package_id, None)
    with pytest.raises(AccessDenied, match="another project"):
        await ctx.packages.clone(scoped, mine.package_id, other.bucket_id, "copy")
    with pytest.raises(BucketNotFound):
        await ctx.buckets.delete(scoped, other.bucket_id)
    with pytest.raises(BucketNotFound):
        await ctx.buckets.set_redundancy(scoped, other.bucket_id, None)
    with pytest.raises(AccessDenied):
        await ctx.buckets.create(scoped, "another")
    with pytest.raises(PackageNotFound):
        await ctx.objects.upload(scoped, theirs.package_id, files(("a", b"a")))
    # Nothing was made or removed; the unscoped key sees it all.
    assert [p.name for p in await ctx.packages.list(alice, other.bucket_id)] == ["theirs"]
    assert sorted(b.name for b in await ctx.buckets.list(alice)) == ["other", "proj"]
    # Inside its project the scoped key works.
    made = await ctx.objects.upload(scoped, mine.package_id, files(("a", b"a")))
    assert [o.path for o in made] == ["a"]


async def test_other_users_things_stay_not_found(world: World) -> None:
    ctx = world.ctx
    theirs = await ctx.packages.create(world.bob, world.bob_project.bucket_id, "p")
    with pytest.raises(BucketNotFound):
        await ctx.buckets.get(world.alice, world.bob_project.bucket_id)
    with pytest.raises(PackageNotFound):
        await ctx.packages.get(world.alice, theirs.package_id)
    with pytest.raises(BucketNotFound):
        await ctx.packages.create(world.alice, world.bob_project.bucket_id, "x")


async def test_read_only_caveat_cannot_create_delete_or_upload(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await ctx.packages.create(alice, world.project.bucket_id, "p")
    (obj,) = await ctx.objects.upload(alice, pkg.package_id, files(("a", b"a")))
    read_only = alice.restricted(NO_WRITES)

    with pytest.raises(AccessDenied, match="forbids write"):
        await ctx.buckets.create(read_only, "b2")
    with pytest.raises(AccessDenied, match="forbids write"):
        await ctx.buckets.set_redundancy(read_only, world.project.bucket_id, None)
    with pytest.raises(AccessDenied, match="forbids delete"):
        await ctx.buckets.delete(read_only, world.project.bucket_id)
    with pytest.raises(AccessDenied, match="forbids write"):
        await ctx.packages.create(read_only, world.project.bucket_id, "p2")
    with pytest.raises(AccessDenied, match="forbids write"):
        await ctx.packages.set_redundancy(read_only, pkg.package_id, None)
    with pytest.raises(AccessDenied, match="forbids delete"):
        await ctx.packages.delete(read_only, pkg.package_id)
    with pytest.raises(AccessDenied, match="forbids write"):
        await ctx.objects.upload(read_only, pkg.package_id, files(("b", b"b")))
    with pytest.raises(AccessDenied, match="forbids delete"):
        await ctx.objects.delete(read_only, [obj.object_id])
    with pytest.raises(AccessDenied, match="forbids delete"):
        await ctx.objects.delete_by_path(read_only, pkg.package_id, "a")
    _, failed = await ctx.objects.move(read_only, [(obj.object_id, pkg.package_id, "moved")])
    assert [oid for oid, _ in failed] == [obj.object_id]
    assert await ctx.objects.clone(read_only, [(obj.object_id, pkg.package_id, "c")]) == [None]

    # Reads still work, and nothing changed.
    assert (await ctx.objects.get_by_id(read_only, obj.object_id)).path == "a"
    assert [p.name for p in await ctx.packages.list(read_only, world.project.bucket_id)] == ["p"]
    assert [o.path for o in await ctx.objects.package_objects(alice, pkg.package_id)] == ["a"]


async def test_path_caveat_filters_listings(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await ctx.packages.create(alice, world.project.bucket_id, "p")
    await ctx.packages.create(alice, world.project.bucket_id, "hidden")
    made = await ctx.objects.upload(
        alice,
        pkg.package_id,
        files(("2023/a", b"a"), ("2024/b", b"b"), ("2024/c/d", b"d"), ("top", b"t")),
    )
    ids = {o.path: o.object_id for o in made}
    key = alice.restricted(Caveat(paths=(PathGrant("p", "2024/"),)))

    def paths(listing: object) -> list[str]:
        return [o.path for o in listing.objects]  # type: ignore[attr-defined]

    every = await ctx.objects.list_by_path(
        key, pkg.package_id, "", is_prefix=True, no_recursive=False
    )
    assert paths(every) == ["2024/b", "2024/c/d"]
    top = await ctx.objects.list_by_path(key, pkg.package_id, "", is_prefix=True, no_recursive=True)
    assert top.common_prefixes == ["2024/"] and paths(top) == []
    inside = await ctx.objects.list_by_path(
        key, pkg.package_id, "2024/", is_prefix=True, no_recursive=False
    )
    assert paths(inside) == ["2024/b", "2024/c/d"]
    with pytest.raises(AccessDenied, match="does not reach"):
        await ctx.objects.list_by_path(
            key, pkg.package_id, "2023/", is_prefix=True, no_recursive=False
        )
    with pytest.raises(AccessDenied):
        await ctx.objects.list_by_path(
            key, pkg.package_id, "top", is_prefix=False, no_recursive=False
        )
    exact = await ctx.objects.list_by_path(
        key, pkg.package_id, "2024/b", is_prefix=False, no_recursive=False
    )
    assert paths(exact) == ["2024/b"]

    assert [o.path for o in await ctx.objects.package_objects(key, pkg.package_id)] == [
        "2024/b",
        "2024/c/d",
    ]
    found = await ctx.objects.by_ids(key, [ids["2023/a"], ids["2024/b"]])
    assert [o.path if o else None for o in found] == [None, "2024/b"]
    # By id, an object outside the key's prefixes is not found (its path unsaid).
    with pytest.raises(ObjectNotFound, match=f"object {ids['top']} not found"):
        await ctx.objects.get_by_id(key, ids["top"])
    with pytest.raises(ObjectNotFound):
        await ctx.objects.open(key, ids["2023/a"])
    assert [p.name for p in await ctx.packages.list(key, world.project.bucket_id)] == ["p"]
    # The plain key sees everything.
    everything = await ctx.objects.list_by_path(
        alice, pkg.package_id, "", is_prefix=True, no_recursive=False
    )
    assert paths(everything) == ["2023/a", "2024/b", "2024/c/d", "top"]


async def test_a_key_that_reaches_part_of_a_package_cannot_make_it(world: World) -> None:
    # As the published satellite: a write with no path (making the bucket)
    # is allowed only by a caveat path whose prefix is empty.
    ctx, alice = world.ctx, world.alice
    bucket_id = world.project.bucket_id
    part = alice.restricted(Caveat(paths=(PathGrant("new", "pub/"),)))
    with pytest.raises(AccessDenied, match="only part of package 'new'"):
        await ctx.packages.create(part, bucket_id, "new")
    src = await ctx.packages.create(alice, bucket_id, "src")
    with pytest.raises(AccessDenied, match="only part of package 'new'"):
        await ctx.packages.clone(
            alice.restricted(Caveat(paths=(PathGrant("src"), PathGrant("new", "pub/")))),
            src.package_id,
            bucket_id,
            "new",
        )
    assert [p.name for p in await ctx.packages.list(alice, bucket_id)] == ["src"]
    # One that does not reach the package at all is told so (found by review).
    with pytest.raises(AccessDenied, match="does not reach package 'other'"):
        await ctx.packages.create(part, bucket_id, "other")
    # A caveat naming the whole package may make it.
    whole = alice.restricted(Caveat(paths=(PathGrant("new"),)))
    assert (await ctx.packages.create(whole, bucket_id, "new")).name == "new"
    # Made, it "already exists" to the key that reaches into it (S3 clients
    # such as rclone send CreateBucket before they upload).
    with pytest.raises(AlreadyExists):
        await ctx.packages.create(part, bucket_id, "new")


@pytest.mark.parametrize(
    "restrict",
    [
        lambda p, w: Principal(p.user_id, project_id=w.project.bucket_id),
        lambda p, w: p.restricted(Caveat(disallow=frozenset({Operation.DELETE}))),
        lambda p, w: p.restricted(Caveat(paths=(PathGrant("p"),))),
    ],
    ids=["project", "no-delete", "one-package"],
)
async def test_restricted_keys_cannot_manage_the_account(world: World, restrict: object) -> None:
    ctx, alice = world.ctx, world.alice
    key: Principal = restrict(alice, world)  # type: ignore[operator]
    (space,) = await ctx.spaces.list(alice)
    storage = {"type": "Local", "path": str(ctx.settings.data_dir / "spaces" / "x")}
    account_only = "needs an account key"
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.spaces.list(key)
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.spaces.get(key, space.user_space_id)
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.spaces.create(key, "x", storage)
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.spaces.update(key, space.user_space_id, SpaceChanges(name="renamed"))
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.spaces.drain(key, space.user_space_id)
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.spaces.delete(key, space.user_space_id)
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.spaces.test_existing(key, space.user_space_id)
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.spaces.test_config(key, storage, None, None)
    assert [s.name for s in await ctx.spaces.list(alice)] == [space.name]
    # Nor mint a plain key of the account, which would lift its restrictions.
    with pytest.raises(AccessDenied, match=account_only):
        await ctx.accounts.new_key(key)
    assert await ctx.accounts.principal((await ctx.accounts.new_key(alice))[1]) == alice


async def test_transfer_tasks_need_an_account_key(world: World) -> None:
    """Tasks copy between user spaces (account-level): a key restricted to a
    project, or with caveats, neither sees nor cancels them."""
    ctx, alice = world.ctx, world.alice
    scoped = Principal(alice.user_id, project_id=world.project.bucket_id)
    read_only = alice.restricted(Caveat(disallow=frozenset({Operation.WRITE})))
    assert (await ctx.transfers.list(alice)).tasks == []
    for key in (scoped, read_only):
        with pytest.raises(AccessDenied, match="account key"):
            await ctx.transfers.list(key)
        with pytest.raises(AccessDenied, match="account key"):
            await ctx.transfers.get(key, 1)
        with pytest.raises(AccessDenied, match="account key"):
            await ctx.transfers.cancel(key, 1)
