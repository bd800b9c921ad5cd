"""Object and package tags; what the JCS v1 API shows of objects written with
metadata (exactly what it showed before: no new field)."""

from __future__ import annotations

import httpx
import pytest
from core_support import World
from test_objects_support import at, body, package

from jointcloud.api.jcs.app import create_app
from jointcloud.core.authz import Caveat, Operation
from jointcloud.core.commands import (
    ChecksumAlgorithm,
    CopyObject,
    ObjectMeta,
    PackageRef,
    PutObject,
    tag_map,
)
from jointcloud.errors import AccessDenied, BadArgument, ObjectNotFound, PackageNotFound


async def test_object_tags(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    info = await ctx.objects.put(
        alice, PutObject(at(pkg, "a"), body(b"x"), meta=ObjectMeta(tags={"k": "v"}))
    )
    assert await ctx.objects.get_tags(alice, at(pkg, "a")) == {"k": "v"}
    tagged = await ctx.objects.set_tags(alice, at(pkg, "a"), {"env": "prod", "team": ""})
    assert tagged.meta.tags == {"env": "prod", "team": ""}
    head = await ctx.objects.head(alice, at(pkg, "a"))
    # Tagging changes neither the content nor the modification time.
    assert (head.etag, head.update_time, head.meta.tags) == (
        info.etag,
        info.update_time,
        {"env": "prod", "team": ""},
    )
    # A copy takes the tags along.
    copy = await ctx.objects.copy(alice, CopyObject(at(pkg, "a"), at(pkg, "b")))
    assert copy.meta.tags == {"env": "prod", "team": ""}
    await ctx.objects.delete_tags(alice, at(pkg, "a"))
    assert await ctx.objects.get_tags(alice, at(pkg, "a")) == {}
    with pytest.raises(BadArgument, match="tags: 11 given"):
        await ctx.objects.set_tags(alice, at(pkg, "a"), {str(i): "" for i in range(11)})
    with pytest.raises(ObjectNotFound):
        await ctx.objects.set_tags(alice, at(pkg, "missing"), {"k": "v"})
    read_only = alice.restricted(Caveat(disallow=frozenset({Operation.WRITE})))
    assert await ctx.objects.get_tags(read_only, at(pkg, "b")) == copy.meta.tags
    with pytest.raises(AccessDenied):
        await ctx.objects.set_tags(read_only, at(pkg, "b"), {})


def test_tag_pairs_refuse_a_repeated_key() -> None:
    assert tag_map([("a", "1"), ("b", "")]) == {"a": "1", "b": ""}
    with pytest.raises(BadArgument, match="tag key 'a' is given twice"):
        tag_map([("a", "1"), ("a", "2")])


async def test_package_tags(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    ref = PackageRef.by_name(pkg.name, world.project.bucket_id)
    assert await ctx.packages.get_tags(alice, ref) == {}
    many = {f"k{i}": str(i) for i in range(50)}
    assert await ctx.packages.set_tags(alice, ref, many) == many
    assert await ctx.packages.get_tags(alice, PackageRef.by_id(pkg.package_id)) == many
    with pytest.raises(BadArgument, match="tags: 51 given; at most 50 per package"):
        await ctx.packages.set_tags(alice, ref, {f"k{i}": "" for i in range(51)})
    await ctx.packages.delete_tags(alice, ref)
    assert await ctx.packages.get_tags(alice, ref) == {}
    with pytest.raises(PackageNotFound):
        await ctx.packages.get_tags(world.bob, PackageRef.by_id(pkg.package_id))


async def test_jcs_shows_what_it_showed(world: World) -> None:
    """An object written with metadata and checksums through core looks, in
    every JCS answer, like one uploaded through JCS."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    meta = ObjectMeta(content_type="text/plain", user_metadata={"a": "b"}, tags={"t": "v"})
    info = await ctx.objects.put(
        alice,
        PutObject(
            at(pkg, "dir/a.txt"),
            body(b"hello"),
            meta=meta,
            compute=frozenset(ChecksumAlgorithm),
        ),
    )
    key = (ctx.settings.data_dir / "root.key").read_text().strip()
    transport = httpx.ASGITransport(app=create_app(ctx, background=False))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://jcs.test", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        listed = (
            await client.get(
                "/v1/object/listByPath",
                params={"packageID": pkg.package_id, "path": "dir/", "isPrefix": "true"},
            )
        ).json()
        (shown,) = listed["data"]["objects"]
        assert set(shown) == {
            "objectID",
            "packageID",
            "path",
            "size",
            "fileHash",
            "redundancy",
            "createTime",
            "updateTime",
        }
        assert (shown["objectID"], shown["size"]) == (info.object_id, "5")
        got = await client.get("/v1/object/download", params={"objectID": info.object_id})
        assert got.content == b"hello"
        assert got.headers["content-type"] == "application/octet-stream"
        assert not any(h.startswith("x-amz-") for h in got.headers)
