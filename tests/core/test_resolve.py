"""Addresses become packages in one place, under the principal's scope and
caveats: by id (JCS) or by name inside a project (S3, the gateway)."""

from __future__ import annotations

import pytest
from core_support import World

from jointcloud.core.authz import Caveat, Operation, PathGrant, Principal
from jointcloud.core.commands import PackageRef
from jointcloud.errors import AccessDenied, BadArgument, BucketNotFound, PackageNotFound


async def test_by_id_and_by_name(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await ctx.packages.create(alice, world.project.bucket_id, "photos")
    read = Operation.READ
    assert (await ctx.packages.resolve(alice, PackageRef.by_id(pkg.package_id), read)) == pkg
    by_name = PackageRef.by_name("photos", world.project.bucket_id)
    assert (await ctx.packages.resolve(alice, by_name, read)) == pkg
    by_project_name = PackageRef(name="photos", project_name="proj")
    assert (await ctx.packages.resolve(alice, by_project_name, read)) == pkg
    scoped = Principal(alice.user_id, project_id=world.project.bucket_id)
    assert (await ctx.packages.resolve(scoped, PackageRef(name="photos"), read)) == pkg
    with pytest.raises(BadArgument, match="which bucket"):
        await ctx.packages.resolve(alice, PackageRef(name="photos"), read)
    with pytest.raises(PackageNotFound):
        await ctx.packages.resolve(alice, PackageRef.by_name("nope", world.project.bucket_id), read)


async def test_other_users_packages_do_not_exist_for_you(world: World) -> None:
    ctx = world.ctx
    theirs = await ctx.packages.create(world.bob, world.bob_project.bucket_id, "p")
    with pytest.raises(PackageNotFound):
        await ctx.packages.resolve(world.alice, PackageRef.by_id(theirs.package_id), Operation.READ)
    with pytest.raises(BucketNotFound):
        ref = PackageRef.by_name("p", world.bob_project.bucket_id)
        await ctx.packages.resolve(world.alice, ref, Operation.READ)


async def test_caveats_refuse_before_existence_shows(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    await ctx.packages.create(alice, world.project.bucket_id, "photos")
    key = alice.restricted(Caveat(paths=(PathGrant("photos", "2024/"),)))
    ref = PackageRef.by_name("photos", world.project.bucket_id)
    await ctx.packages.resolve(key, ref, Operation.READ, "2024/a.jpg")
    with pytest.raises(AccessDenied, match="does not reach photos/2023"):
        await ctx.packages.resolve(key, ref, Operation.READ, "2023/a.jpg")
    # A package outside the caveat is refused whether it exists or not.
    for name in ("docs", "no-such-package"):
        with pytest.raises(AccessDenied, match="does not reach package"):
            await ctx.packages.resolve(
                key, PackageRef.by_name(name, world.project.bucket_id), Operation.READ
            )
    other_project = Principal(alice.user_id, project_id=world.project.bucket_id + 1000)
    with pytest.raises(AccessDenied, match="another project"):
        await ctx.packages.resolve(other_project, ref, Operation.READ)
