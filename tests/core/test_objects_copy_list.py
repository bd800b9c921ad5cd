"""Server-side copy (shared layouts, COPY/REPLACE metadata) and listings
(delimiter, common prefixes, pages, caveat filtering) of the typed object
service."""

from __future__ import annotations

import base64
import json
import os

import pytest
from core_support import World
from test_objects_support import at, body, package, read_all, stored

from jointcloud.core.authz import Caveat, Operation, PathGrant, Principal
from jointcloud.core.commands import (
    ChecksumAlgorithm,
    CopyObject,
    DeleteObject,
    GetObject,
    ListObjects,
    MetadataDirective,
    ObjectMeta,
    PackageRef,
    PutObject,
)
from jointcloud.core.models import ListedObject, Package
from jointcloud.errors import AccessDenied, BadArgument, ObjectNotFound, PackageNotFound

REPLACE = MetadataDirective.REPLACE
SOURCE_META = ObjectMeta(content_type="text/plain", user_metadata={"a": "1"}, tags={"t": "source"})


async def test_copy_shares_layouts_and_metadata(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    src_pkg, dst_pkg = await package(world, "src"), await package(world, "dst")
    data = os.urandom(300_000)
    src = await ctx.objects.put(
        alice,
        PutObject(
            at(src_pkg, "a"),
            body(data),
            meta=SOURCE_META,
            compute=frozenset({ChecksumAlgorithm.CRC32C}),
        ),
    )
    before = await stored(ctx)
    copy = await ctx.objects.copy(alice, CopyObject(at(src_pkg, "a"), at(dst_pkg, "b/c")))
    # A new object row; no layout, block or file more: the bytes are shared.
    assert await stored(ctx) == (before[0] + 1, *before[1:])
    assert (copy.package_id, copy.path) == (dst_pkg.package_id, "b/c")
    assert (copy.size, copy.etag, copy.meta, copy.checksums) == (
        src.size,
        src.etag,
        src.meta,
        src.checksums,
    )
    assert copy.object_id != src.object_id
    # Independent: deleting the source leaves the copy readable.
    assert await ctx.objects.delete(alice, DeleteObject(at(src_pkg, "a")))
    got = await ctx.objects.get(alice, GetObject(at(dst_pkg, "b/c")))
    assert await read_all(got.body) == data


async def test_copy_directives(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    await ctx.objects.put(alice, PutObject(at(pkg, "a"), body(b"x"), meta=SOURCE_META))
    new = ObjectMeta(content_type="image/png", user_metadata={"B": "2"}, tags={"t": "new"})
    replaced = await ctx.objects.copy(
        alice, CopyObject(at(pkg, "a"), at(pkg, "r"), directive=REPLACE, meta=new)
    )
    # REPLACE takes the given metadata; tags follow their own directive (COPY).
    assert replaced.meta == ObjectMeta(
        content_type="image/png", user_metadata={"b": "2"}, tags={"t": "source"}
    )
    both = await ctx.objects.copy(
        alice,
        CopyObject(at(pkg, "a"), at(pkg, "s"), directive=REPLACE, meta=new, tags_directive=REPLACE),
    )
    assert both.meta.tags == {"t": "new"} and both.meta.content_type == "image/png"
    only_tags = await ctx.objects.copy(
        alice, CopyObject(at(pkg, "a"), at(pkg, "t"), meta=new, tags_directive=REPLACE)
    )
    assert only_tags.meta.content_type == "text/plain" and only_tags.meta.tags == {"t": "new"}
    # Onto itself: only to change its metadata (S3's rule), which then works.
    with pytest.raises(BadArgument, match="onto itself"):
        await ctx.objects.copy(alice, CopyObject(at(pkg, "a"), at(pkg, "a")))
    itself = await ctx.objects.copy(
        alice, CopyObject(at(pkg, "a"), at(pkg, "a"), directive=REPLACE, meta=new)
    )
    assert itself.meta.content_type == "image/png"
    got = await ctx.objects.get(alice, GetObject(at(pkg, "a")))
    assert await read_all(got.body) == b"x"
    with pytest.raises(BadArgument, match="tags: 11 given"):
        await ctx.objects.copy(
            alice,
            CopyObject(
                at(pkg, "a"),
                at(pkg, "u"),
                tags_directive=REPLACE,
                meta=ObjectMeta(tags={str(i): "" for i in range(11)}),
            ),
        )
    with pytest.raises(ObjectNotFound):
        await ctx.objects.copy(alice, CopyObject(at(pkg, "missing"), at(pkg, "v")))


async def test_copy_needs_read_on_source_and_write_on_destination(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    src_pkg, dst_pkg = await package(world, "src"), await package(world, "dst")
    await ctx.objects.put(alice, PutObject(at(src_pkg, "a"), body(b"x")))
    no_read = alice.restricted(Caveat(disallow=frozenset({Operation.READ})))
    with pytest.raises(AccessDenied, match="forbids read"):
        await ctx.objects.copy(no_read, CopyObject(at(src_pkg, "a"), at(dst_pkg, "a")))
    only_src = alice.restricted(Caveat(paths=(PathGrant("src"),)))
    # By id, a package outside the key's reach is not found (its name stays unsaid).
    with pytest.raises(PackageNotFound, match=f"package {dst_pkg.package_id} not found"):
        await ctx.objects.copy(only_src, CopyObject(at(src_pkg, "a"), at(dst_pkg, "a")))
    with pytest.raises(ObjectNotFound):
        await ctx.objects.head(alice, at(dst_pkg, "a"))


async def _tree(world: World) -> tuple[Package, list[str]]:
    pkg = await package(world)
    paths = [
        "a.txt",
        "docs/2023/x",
        "docs/2024/y",
        "docs/2024/z",
        "docs/readme",
        "docs-old/q",
        "photos/1.jpg",
        "photos/2.jpg",
        "zz",
    ]
    for i, p in enumerate(paths):
        # Some with a checksum, which listings show the algorithm of.
        crc = frozenset({ChecksumAlgorithm.CRC32}) if i % 2 else frozenset()
        await world.ctx.objects.put(
            world.alice, PutObject(at(pkg, p), body(p.encode()), compute=crc)
        )
    return pkg, paths


async def _all_pages(
    world: World, cmd: ListObjects, principal: Principal | None = None
) -> list[str]:
    """Every object path and common prefix of a listing, page by page; the
    brief listing (S3's) of every page is the full one, field for field."""
    who = principal or world.alice
    seen: list[str] = []
    token = None
    while True:
        page_cmd = ListObjects(
            cmd.package,
            prefix=cmd.prefix,
            delimiter=cmd.delimiter,
            start_after=cmd.start_after,
            continuation=token,
            max_keys=cmd.max_keys,
        )
        page = await world.ctx.objects.list(who, page_cmd)
        brief = await world.ctx.objects.list_brief(who, page_cmd)
        assert (brief.common_prefixes, brief.next_token) == (
            page.common_prefixes,
            page.next_token,
        )
        assert brief.objects == [
            ListedObject(o.path, o.size, o.etag, o.update_time, tuple(o.checksums))
            for o in page.objects
        ]
        assert len(page.objects) + len(page.common_prefixes) <= cmd.max_keys
        seen += page.common_prefixes + [o.path for o in page.objects]
        token = page.next_token
        if token is None:
            return seen


@pytest.mark.parametrize("max_keys", [1, 2, 1000])
async def test_listing_with_delimiter_and_pages(world: World, max_keys: int) -> None:
    pkg, paths = await _tree(world)
    ref = PackageRef.by_id(pkg.package_id)
    flat = await _all_pages(world, ListObjects(ref, max_keys=max_keys))
    assert flat == sorted(paths)  # byte order: '-' sorts before '/'
    top = await _all_pages(world, ListObjects(ref, delimiter="/", max_keys=max_keys))
    assert sorted(top) == ["a.txt", "docs-old/", "docs/", "photos/", "zz"]
    under = await _all_pages(world, ListObjects(ref, "docs/", "/", max_keys=max_keys))
    assert sorted(under) == ["docs/2023/", "docs/2024/", "docs/readme"]
    # A delimiter other than '/', and a prefix that is not a whole segment.
    dashed = await _all_pages(world, ListObjects(ref, "docs", "-", max_keys=max_keys))
    assert sorted(dashed) == ["docs-", "docs/2023/x", "docs/2024/y", "docs/2024/z", "docs/readme"]
    after = await _all_pages(world, ListObjects(ref, start_after="docs/2024/y", max_keys=max_keys))
    assert after == ["docs/2024/z", "docs/readme", "photos/1.jpg", "photos/2.jpg", "zz"]


async def test_listing_edges(world: World) -> None:
    pkg, _ = await _tree(world)
    ref = PackageRef.by_id(pkg.package_id)
    empty = await world.ctx.objects.list(world.alice, ListObjects(ref, max_keys=0))
    assert (empty.objects, empty.common_prefixes, empty.next_token) == ([], [], None)
    big = await world.ctx.objects.list(world.alice, ListObjects(ref, max_keys=10**6))
    assert len(big.objects) == 9
    with pytest.raises(BadArgument, match="max_keys"):
        await world.ctx.objects.list(world.alice, ListObjects(ref, max_keys=-1))
    with pytest.raises(BadArgument, match="continuation is not a token"):
        await world.ctx.objects.list(world.alice, ListObjects(ref, continuation="nonsense"))


async def test_listing_shows_only_what_caveats_reach(world: World) -> None:
    pkg, _ = await _tree(world)
    ref = PackageRef.by_name(pkg.name, world.project.bucket_id)
    key = world.alice.restricted(Caveat(paths=(PathGrant("pkg", "docs/2024/"),)))
    flat = await _all_pages(world, ListObjects(ref, max_keys=2), key)
    assert flat == ["docs/2024/y", "docs/2024/z"]
    top = await _all_pages(world, ListObjects(ref, delimiter="/"), key)
    assert top == ["docs/"]
    under = await _all_pages(world, ListObjects(ref, "docs/", "/"), key)
    assert under == ["docs/2024/"]
    with pytest.raises(AccessDenied):
        await world.ctx.objects.list(key, ListObjects(ref, prefix="photos/"))
    no_list = world.alice.restricted(Caveat(disallow=frozenset({Operation.LIST})))
    with pytest.raises(AccessDenied, match="forbids list"):
        await world.ctx.objects.list(no_list, ListObjects(ref))


async def test_listing_past_the_last_character_before_surrogates(world: World) -> None:
    """A common prefix ending in U+D7FF resumes at U+E000 (no key holds a
    surrogate); a token carrying a character no key can hold is refused."""
    pkg = await package(world)
    paths = ["a\ud7ffb", "a\ud7ffc", "a\ue000", "b"]
    for p in paths:
        await world.ctx.objects.put(world.alice, PutObject(at(pkg, p), body(b"x")))
    ref = PackageRef.by_id(pkg.package_id)
    seen = await _all_pages(world, ListObjects(ref, delimiter="\ud7ff", max_keys=1))
    assert seen == ["a\ud7ff", "a\ue000", "b"]
    with pytest.raises(BadArgument, match="token"):
        await world.ctx.objects.list(
            world.alice, ListObjects(ref, continuation=_token_of("a\x00"), max_keys=5)
        )


def _token_of(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"a": after, "i": False}).encode()).decode()
