"""Conditional operations in core (RFC 7232 precedence): on read, write,
copy source and delete, evaluated against the current object inside the
transaction that acts, so "create only if absent" is atomic."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from core_support import World
from test_objects_support import at, body, package, read_all, stored

from jointcloud.core.commands import (
    Conditions,
    CopyObject,
    DeleteObject,
    GetObject,
    PutObject,
)
from jointcloud.core.models import ObjectInfo, Package
from jointcloud.errors import NotModified, ObjectNotFound, PreconditionFailed

CREATE_ONLY = Conditions(if_none_match=("*",))


async def _one(world: World, data: bytes = b"content") -> tuple[Package, ObjectInfo]:
    pkg = await package(world)
    info = await world.ctx.objects.put(world.alice, PutObject(at(pkg, "o"), body(data)))
    return pkg, info


def _around(info: ObjectInfo) -> tuple[datetime, datetime]:
    """A date before the last modification and one at it (whole seconds)."""
    at_ = info.update_time.replace(microsecond=0)
    return at_ - timedelta(seconds=1), at_


async def test_read_conditions(world: World) -> None:
    pkg, info = await _one(world)
    ctx, alice = world.ctx, world.alice
    earlier, same = _around(info)
    etag = info.etag

    async def check(cond: Conditions) -> None:
        await ctx.objects.head(alice, at(pkg, "o"), cond)
        got = await ctx.objects.get(alice, GetObject(at(pkg, "o"), conditions=cond))
        assert await read_all(got.body) == b"content"

    passing = [
        Conditions(if_match=(etag,)),
        Conditions(if_match=(f'"{etag}"',)),
        Conditions(if_match=("other", "*")),
        Conditions(if_unmodified_since=same),
        Conditions(if_none_match=("other",)),
        Conditions(if_modified_since=earlier),
        # If-Match wins over a failing If-Unmodified-Since (S3 answers 200).
        Conditions(if_match=(etag,), if_unmodified_since=earlier),
        # If-None-Match wins over If-Modified-Since.
        Conditions(if_none_match=("other",), if_modified_since=same),
    ]
    for cond in passing:
        await check(cond)
    failing: list[tuple[Conditions, type[Exception]]] = [
        (Conditions(if_match=("other",)), PreconditionFailed),
        (Conditions(if_unmodified_since=earlier), PreconditionFailed),
        (Conditions(if_none_match=(etag,)), NotModified),
        (Conditions(if_none_match=("*",)), NotModified),
        (Conditions(if_modified_since=same), NotModified),
        (Conditions(if_none_match=(etag,), if_modified_since=earlier), NotModified),
        # A failed If-Match is reported before a failed If-None-Match.
        (Conditions(if_match=("other",), if_none_match=(etag,)), PreconditionFailed),
    ]
    for cond, error in failing:
        with pytest.raises(error):
            await ctx.objects.head(alice, at(pkg, "o"), cond)
        with pytest.raises(error):
            await ctx.objects.get(alice, GetObject(at(pkg, "o"), conditions=cond))
    # A missing object is missing whatever the conditions.
    with pytest.raises(ObjectNotFound):
        await ctx.objects.head(alice, at(pkg, "nope"), Conditions(if_none_match=("*",)))


async def test_write_conditions(world: World) -> None:
    pkg, info = await _one(world)
    ctx, alice = world.ctx, world.alice
    earlier, same = _around(info)
    put = ctx.objects.put
    before = await stored(ctx)
    for cond in (
        CREATE_ONLY,
        Conditions(if_match=("other",)),
        Conditions(if_none_match=(info.etag,)),
        Conditions(if_unmodified_since=earlier),
    ):
        with pytest.raises(PreconditionFailed):
            await put(alice, PutObject(at(pkg, "o"), body(b"new"), conditions=cond))
    with pytest.raises(ObjectNotFound, match="no object at that path"):  # S3 says 404
        await put(
            alice, PutObject(at(pkg, "new"), body(b"x"), conditions=Conditions(if_match=("*",)))
        )
    assert await stored(ctx) == before
    # If-Modified-Since is for GET and HEAD only: a write ignores it.
    ignored = Conditions(if_modified_since=same)
    updated = await put(alice, PutObject(at(pkg, "o"), body(b"v2"), conditions=ignored))
    swapped = await put(
        alice,
        PutObject(at(pkg, "o"), body(b"v3"), conditions=Conditions(if_match=(updated.etag,))),
    )
    assert swapped.object_id == info.object_id
    created = await put(alice, PutObject(at(pkg, "fresh"), body(b"f"), conditions=CREATE_ONLY))
    assert created.size == 1


async def test_delete_conditions(world: World) -> None:
    pkg, info = await _one(world)
    ctx, alice = world.ctx, world.alice
    with pytest.raises(PreconditionFailed):
        await ctx.objects.delete(alice, DeleteObject(at(pkg, "o"), Conditions(if_match=("other",))))
    with pytest.raises(ObjectNotFound):
        await ctx.objects.delete(alice, DeleteObject(at(pkg, "gone"), Conditions(if_match=("*",))))
    assert (await ctx.objects.head(alice, at(pkg, "o"))).etag == info.etag
    match = Conditions(if_match=(info.etag,))
    assert await ctx.objects.delete(alice, DeleteObject(at(pkg, "o"), match)) is True


async def test_copy_source_conditions_all_fail_as_precondition(world: World) -> None:
    pkg, info = await _one(world)
    ctx, alice = world.ctx, world.alice
    earlier, same = _around(info)
    src, dst = at(pkg, "o"), at(pkg, "copy")
    for cond in (
        Conditions(if_match=("other",)),
        Conditions(if_unmodified_since=earlier),
        Conditions(if_none_match=(info.etag,)),
        Conditions(if_modified_since=same),
    ):
        with pytest.raises(PreconditionFailed, match="copy source"):
            await ctx.objects.copy(alice, CopyObject(src, dst, source_conditions=cond))
    # S3's pairs: If-Match true + If-Unmodified-Since false copies;
    # If-None-Match false + If-Modified-Since true refuses.
    ok = Conditions(if_match=(info.etag,), if_unmodified_since=earlier)
    assert (await ctx.objects.copy(alice, CopyObject(src, dst, source_conditions=ok))).size == 7
    refused = Conditions(if_none_match=(info.etag,), if_modified_since=earlier)
    with pytest.raises(PreconditionFailed):
        await ctx.objects.copy(alice, CopyObject(src, dst, source_conditions=refused))
    # The destination's own conditions: create only.
    with pytest.raises(PreconditionFailed, match="already exists"):
        await ctx.objects.copy(alice, CopyObject(src, dst, conditions=CREATE_ONLY))


@pytest.mark.parametrize(
    "size", [100, 100_000, 2 * 1024 * 1024], ids=["inline", "batched", "streamed"]
)
async def test_concurrent_create_only_puts_one_wins(world: World, size: int) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    before = await stored(ctx)
    datas = [os.urandom(size) for _ in range(4)]
    # Every body waits until all four puts are reading theirs: each one has
    # passed the early check, so only the commit's check can refuse.
    arrived = 0
    everyone = asyncio.Event()

    async def gated(data: bytes) -> AsyncIterator[bytes]:
        nonlocal arrived
        arrived += 1
        if arrived == len(datas):
            everyone.set()
        await everyone.wait()
        async for chunk in body(data):
            yield chunk

    results = await asyncio.gather(
        *(
            ctx.objects.put(alice, PutObject(at(pkg, "race"), gated(d), conditions=CREATE_ONLY))
            for d in datas
        ),
        return_exceptions=True,
    )
    assert arrived == len(datas)
    won = [r for r in results if isinstance(r, ObjectInfo)]
    lost = [r for r in results if not isinstance(r, ObjectInfo)]
    assert len(won) == 1, results
    assert all(isinstance(e, PreconditionFailed) for e in lost), lost
    winner = datas[results.index(won[0])]
    got = await ctx.objects.get(alice, GetObject(at(pkg, "race")))
    assert await read_all(got.body) == winner
    objects, layouts, blocks, files = await stored(ctx)
    # Exactly one object's layout and block (none for an inline object) more
    # than before: the losers left nothing.
    stored_blocks = 1 if size > ctx.settings.inline_max_bytes else 0
    assert (objects, layouts, blocks, files) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + stored_blocks,
        before[3] + stored_blocks,
    )
