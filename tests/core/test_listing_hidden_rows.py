"""A restricted key's listing that passes many rows it may not see reads
them in large batches: a link to one object, asked for one row, does not
cost a query per two hidden rows. The page is the same as before."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from core_support import World, listed_rows
from test_objects_support import package

from jointcloud.core import listing
from jointcloud.core.authz import Caveat, PathGrant
from jointcloud.core.commands import ListObjects, PackageRef
from jointcloud.meta import catalog

HIDDEN = 600


async def test_hidden_rows_are_passed_in_few_queries(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx
    pkg = await package(world, "wide")

    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        async def one(data: bytes) -> AsyncIterator[bytes]:
            yield data

        for i in range(HIDDEN):
            yield f"y{i:04d}", one(b"h")
        yield "z", one(b"shared")

    await ctx.objects.upload(world.alice, pkg.package_id, files())
    link = world.alice.restricted(Caveat(paths=(PathGrant("wide", "z"),)))
    queries: list[int] = []
    fetch = catalog.list_listed

    async def counted(conn: Any, package_id: int, *args: Any) -> Sequence[Any]:
        queries.append(args[2])
        return await fetch(conn, package_id, *args)

    monkeypatch.setattr(catalog, "list_listed", counted)
    ref = PackageRef.by_id(pkg.package_id)
    page = await ctx.objects.list_brief(link, ListObjects(ref, max_keys=1))
    assert [o.path for o in page.objects] == ["z"]
    assert len(queries) <= HIDDEN // listing.HIDDEN_BATCH + 2, queries
    if page.next_token is not None:  # nothing it may see follows
        more = await ctx.objects.list_brief(link, ListObjects(ref, continuation=page.next_token))
        assert more.objects == []
    # The owner's pages are as small as asked.
    queries.clear()
    owner = await ctx.objects.list_brief(world.alice, ListObjects(ref, max_keys=1))
    assert [o.path for o in owner.objects] == ["y0000"] and queries == [2]


async def test_rows_outside_a_keys_prefixes_are_not_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link to one object deep in a large package made every listing of it
    (a share page, its zip, an S3 ListObjects with no prefix) read every row
    before that object: the time grew with the package, for anyone holding
    the link (found by review). The listing now starts at the key's
    prefixes and stops after the last; its pages are what they were."""
    ctx = world.ctx
    pkg = await package(world, "deep")

    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        async def one(data: bytes) -> AsyncIterator[bytes]:
            yield data

        for name in ("a/1", "big/aa/1", "big/zz/only.txt", "big/zz2", "c/1", "c/2", "d/1"):
            yield name, one(b"x")
        for i in range(HIDDEN):
            yield f"big/m{i:04d}", one(b"h")

    await ctx.objects.upload(world.alice, pkg.package_id, files())
    grants = (PathGrant("deep", "big/zz/only.txt"), PathGrant("deep", "c/"))
    link = world.alice.restricted(Caveat(paths=grants))
    rows = listed_rows(monkeypatch)
    ref = PackageRef.by_id(pkg.package_id)
    page = await ctx.objects.list_brief(link, ListObjects(ref))
    assert [o.path for o in page.objects] == ["big/zz/only.txt", "c/1", "c/2"]
    assert sum(rows) <= 8, rows
    rolled = await ctx.objects.list_brief(link, ListObjects(ref, delimiter="/"))
    assert (rolled.common_prefixes, rolled.objects) == (["big/", "c/"], [])
    one_by_one: list[str] = []
    token = None
    while True:
        part = await ctx.objects.list_brief(link, ListObjects(ref, max_keys=1, continuation=token))
        one_by_one += [o.path for o in part.objects]
        token = part.next_token
        if token is None:
            break
    assert one_by_one == ["big/zz/only.txt", "c/1", "c/2"]
