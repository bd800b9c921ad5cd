"""A v1 listing (``listByPath``, ``isPrefix``) of a package holding keys an
S3 client wrote: each common prefix it answers, given back as ``path``,
lists what is under it, as S3's ``Prefix`` does (cross-protocol review,
2026-12-07). ``b//`` was read as ``b/`` (the same page again, ``b//`` in it
once more: a client walking the tree never ended) and ``./`` and ``a/../``
were refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from core_support import World
from test_objects_support import at, body, package

from jointcloud.api.jcs.app import create_app
from jointcloud.context import Context
from jointcloud.core.commands import PutObject

KEYS = [
    "a",
    "a/../b",
    "a//c",
    "b/",
    "b/x",
    "b//y",
    "b///z",
    "./d",
    "../e",
    "x" * 300 + "/f",
    "c\x01/z",  # S3 keys may hold the ASCII controls but NUL
    "c\n/\t/y",
]


async def _listing(client: httpx.AsyncClient, pid: int, path: str) -> dict[str, Any]:
    params = {"packageID": pid, "path": path, "isPrefix": "true", "noRecursive": "true"}
    answer = (await client.get("/v1/object/listByPath", params=params)).json()
    assert answer["code"] == "OK", (path, answer)
    data: dict[str, Any] = answer["data"]
    return data


@asynccontextmanager
async def root_client(ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    """The v1 API in process, as the root user."""
    root_key = (ctx.settings.data_dir / "root.key").read_text().strip()
    transport = httpx.ASGITransport(app=create_app(ctx, background=False))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://jcs.test",
        headers={"Authorization": f"Bearer {root_key}"},
    ) as client:
        yield client


async def test_each_common_prefix_lists_what_is_under_it(world: World) -> None:
    ctx = world.ctx
    pkg = await package(world)
    for key in KEYS:
        await ctx.objects.put(world.alice, PutObject(at(pkg, key), body(key.encode())))
    async with root_client(ctx) as client:
        # A walk of the tree, one level at a time, as a file browser does it
        seen: list[str] = []
        todo, visited = [""], set()
        while todo:
            prefix = todo.pop()
            assert prefix not in visited, f"{prefix!r} listed twice"
            visited.add(prefix)
            data = await _listing(client, pkg.package_id, prefix)
            for obj in data["objects"]:
                assert obj["path"].startswith(prefix), (prefix, obj["path"])
                seen.append(obj["path"])
            todo += data["commonPrefixes"]
        assert sorted(seen) == sorted(KEYS)
        assert (await _listing(client, pkg.package_id, "b//"))["objects"][0]["path"] == "b//y"
        # The v1 path rules still hold where they say something: a leading
        # '/' is dropped and '\' is '/'.
        under_b = await _listing(client, pkg.package_id, "\\b/")
        assert [o["path"] for o in under_b["objects"]] == ["b/", "b/x"]
        assert await _listing(client, pkg.package_id, "/b/") == under_b


async def test_a_folder_marker_downloads_under_its_folders_name(world: World) -> None:
    """``dir/`` (an S3 folder marker) was sent as ``filename=``, no name at
    all; the gateway names it ``dir``, and so does v1 now."""
    ctx = world.ctx
    pkg = await package(world)
    names = {"dir/": "dir", "a/b//": "b", "/": "download", "x": "x"}
    made = {
        key: await ctx.objects.put(world.alice, PutObject(at(pkg, key), body(b""))) for key in names
    }
    async with root_client(ctx) as client:
        for key, name in names.items():
            got = await client.get("/v1/object/download", params={"objectID": made[key].object_id})
            assert got.headers["content-disposition"] == f"attachment; filename={name}", key
