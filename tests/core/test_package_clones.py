"""A package clone costs a few statements per batch of objects, not per object.

Each object was cloned with two statements of its own (its row, then its
parts), all under the write lock: a package of 40,000 objects cost 80,000
statements and held every other writer of a SQLite store for 34 s (found
by review). A batch of objects is now copied with three statements however
many it holds, rows and parts as they are in the source.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_support import World
from sqlalchemy import event, select
from test_multipart_support import SMALL_PARTS, data
from test_multipart_support import at as mp_at
from test_multipart_support import body as mp_body
from test_multipart_support import package as mp_package
from test_objects_support import at, body, read_all

from jointcloud.core import buckets as buckets_module
from jointcloud.core.commands import GetObject, PutObject
from jointcloud.core.models import ChecksumAlgorithm, ObjectMeta
from jointcloud.meta import tables as t

OBJECTS = 35
BATCH = 10  # CLONE_BATCH in this test: four batches, the last one short


def _count_statements(world: World) -> list[str]:
    sent: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(world.ctx.db.engine.sync_engine, "before_cursor_execute", note)
    return sent


async def _rows(world: World, package_id: int) -> dict[str, tuple[Any, list[Any]]]:
    """Each object's row (all but its id, package and times) and parts."""
    o, p = t.objects, t.object_parts
    kept = [c for c in o.c if c.name not in ("id", "package_id", "created_at", "updated_at")]
    async with world.ctx.db.read() as conn:
        rows = (await conn.execute(select(o.c.id, *kept).where(o.c.package_id == package_id))).all()
        out = {}
        for r in rows:
            parts = await conn.execute(
                select(p.c.seq, p.c.layout_id, p.c.offset, p.c.checksums)
                .where(p.c.object_id == r.id)
                .order_by(p.c.seq)
            )
            out[r.path] = (tuple(r[1:]), [tuple(x) for x in parts])
    return out


async def test_a_package_clone_copies_objects_in_batches(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, alice = world.ctx, world.alice
    monkeypatch.setattr(buckets_module, "CLONE_BATCH", BATCH, raising=False)
    src = await mp_package(world, "src")
    for i in range(OBJECTS - 2):
        await ctx.objects.put(
            alice,
            PutObject(
                at(src, f"d{i % 3}/k{i:03d}"),
                body(b"x" * i),
                meta=ObjectMeta(content_type="text/plain", tags={"n": str(i)}),
                compute=frozenset({ChecksumAlgorithm.CRC32}),
            ),
        )
    # One object of three parts, and one multipart upload in progress (its
    # placeholder is no object to clone).
    parts = [data(SMALL_PARTS, 1), data(SMALL_PARTS + 7, 2), b"the end"]
    up = await ctx.multipart.create(alice, mp_at(src, "multi"))
    done = [
        await ctx.multipart.upload_part(alice, up.upload_id, mp_at(src, "multi"), n, mp_body(raw))
        for n, raw in enumerate(parts, 1)
    ]
    listed = [(n, part.etag, {}) for n, part in enumerate(done, 1)]
    await ctx.multipart.complete(alice, up.upload_id, mp_at(src, "multi"), listed)
    await ctx.multipart.create(alice, mp_at(src, "pending"))
    await ctx.objects.put(alice, PutObject(at(src, "zz-last"), body(b"last")))

    sent = _count_statements(world)
    dst = await ctx.packages.clone(alice, src.package_id, world.project.bucket_id, "copy")
    assert sent, "nothing was counted: the count no longer sees the statements"
    # The package and the checks around it, then three statements for each
    # of four batches and one that finds none left; one by one it was 75.
    assert len(sent) <= 12 + 3 * 4 + 1, (len(sent), sent)

    source, copy = await _rows(world, src.package_id), await _rows(world, dst.package_id)
    assert "pending" not in copy and len(copy) == OBJECTS
    assert copy == {path: row for path, row in source.items() if path != "pending"}
    got = await ctx.objects.get(alice, GetObject(at(dst, "multi")))
    assert await read_all(got.body) == b"".join(parts)
    info = await ctx.objects.head(alice, at(dst, "d1/k001"))
    assert info.meta.tags == {"n": "1"} and ChecksumAlgorithm.CRC32 in info.checksums
    assert info.package_id == dst.package_id
