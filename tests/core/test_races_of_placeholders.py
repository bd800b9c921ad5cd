"""Races of a JCS upload's invisible placeholder with a write of its path
(PostgreSQL, READ COMMITTED), each interleaved here deterministically.

A JCS three-step upload holds its path with an invisible placeholder
object. A PUT of that path (any protocol) takes the placeholder's row and
makes it the visible object. Dropping the upload (an S3 abort, which names
it by the upload id ListMultipartUploads shows, or GC's drop of an
abandoned one) deletes the placeholder only while it is invisible; it read
"invisible" before the PUT committed, then deleted the row the PUT had just
made the object: the PUT was answered 200, the object was gone and its
blocks were live and referenced by nothing, never collected (found by
review)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from core_support import World
from sqlalchemy import select
from test_multipart_support import at, body, data, package, read_back
from test_races_of_reads_and_deletes import postgresql_only, until_blocked

from jointcloud.core import combiner as combiner_module
from jointcloud.core.commands import Conditions, GetObject, PutObject
from jointcloud.core.gc import collect_garbage
from jointcloud.meta import tables as t

ANYWHERE = Conditions(if_none_match=("*",))  # the placeholder is invisible


def writes_then(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], Awaitable[Any]], world: World
) -> list[asyncio.Task[Any]]:
    """The next commit of object rows, once written and before it commits,
    starts ``meanwhile`` and waits until it waits for a row lock (or ends)."""
    real = combiner_module.write_contents
    started: list[asyncio.Task[Any]] = []

    async def written(*args: Any, **kwargs: Any) -> Any:
        infos = await real(*args, **kwargs)
        if not started:
            started.append(asyncio.ensure_future(meanwhile()))
            await until_blocked(world, started, 1)
        return infos

    monkeypatch.setattr(combiner_module, "write_contents", written)
    monkeypatch.setattr("jointcloud.core.uploads.write_contents", written)
    return started


async def unreferenced_live_layouts(world: World) -> list[int]:
    """Layouts that nothing references and GC will never take (not released)."""
    layouts, parts, mparts = t.layouts.c, t.object_parts.c, t.multipart_parts.c
    q = select(layouts.id).where(
        layouts.state == "live",
        layouts.released_at.is_(None),
        layouts.inline_data.is_(None),
        ~select(parts.layout_id).where(parts.layout_id == layouts.id).exists(),
        ~select(mparts.layout_id).where(mparts.layout_id == layouts.id).exists(),
    )
    async with world.ctx.db.read() as conn:
        return [int(r.id) for r in await conn.execute(q)]


@pytest.mark.parametrize("conditions", [ANYWHERE, Conditions()], ids=["create-only", "plain"])
async def test_an_abort_of_a_jcs_upload_never_deletes_the_object_a_put_made_of_it(
    world: World, monkeypatch: pytest.MonkeyPatch, conditions: Conditions
) -> None:
    postgresql_only(world)
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "placeholders")
    where = at(pkg, "k")
    placeholder = await ctx.multipart.new_linked(alice, where)
    linked = await ctx.multipart.linked(alice, placeholder.object_id)
    assert linked is not None
    aborts = writes_then(
        monkeypatch, lambda: ctx.multipart.abort(alice, linked.upload_id, where), world
    )
    raw = data(300_000)
    info = await ctx.objects.put(alice, PutObject(where, body(raw), conditions=conditions))
    assert info.object_id == placeholder.object_id  # the PUT took the placeholder's row
    assert aborts
    await aborts[0]  # the upload is gone, whatever became of its placeholder
    got = await ctx.objects.get(alice, GetObject(where))
    assert b"".join([c async for c in got.body]) == raw
    assert await read_back(ctx, info) == raw
    assert await unreferenced_live_layouts(world) == []


async def test_gc_dropping_an_abandoned_jcs_upload_never_deletes_the_object_a_put_made_of_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgresql_only(world)
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "abandoned")
    where = at(pkg, "k")
    await ctx.multipart.new_linked(alice, where)
    # Abandoned: untouched for longer than the expiry (none here).
    gcs = writes_then(
        monkeypatch,
        lambda: collect_garbage(
            ctx.db, ctx.store, timedelta(days=1), multipart_expiry=timedelta(seconds=-1)
        ),
        world,
    )
    raw = data(300_000, seed=1)
    info = await ctx.objects.put(alice, PutObject(where, body(raw)))
    assert gcs
    await gcs[0]
    got = await ctx.objects.get(alice, GetObject(where))
    assert b"".join([c async for c in got.body]) == raw
    assert await read_back(ctx, info) == raw
    assert await unreferenced_live_layouts(world) == []
