"""Part copy (a byte range of an existing object stored again on the server)
and the collection of abandoned uploads."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from core_support import World
from test_multipart_support import (
    SMALL_PARTS,
    add_spaces,
    at,
    block_files,
    body,
    data,
    gc,
    md5,
    object_at,
    package,
    read_back,
)

from jointcloud.core.commands import ByteRange, Conditions, PackageRef
from jointcloud.core.fsck import fsck
from jointcloud.core.models import ObjectContent, ObjectInfo, Package
from jointcloud.core.multipart import MultipartService
from jointcloud.errors import InvalidRange, ObjectNotFound, PreconditionFailed, UploadNotFound
from jointcloud.meta import catalog

EC = {"type": "ec", "k": 2, "n": 3, "chunkSize": 4096}
EXPIRED = timedelta(seconds=-1)  # every upload counts as abandoned


async def _object(world: World, pkg: Package, path: str, *parts: bytes) -> ObjectInfo:
    ctx, alice = world.ctx, world.alice
    up = await ctx.multipart.create(alice, at(pkg, path))
    listed = []
    for n, raw in enumerate(parts, 1):
        part = await ctx.multipart.upload_part(alice, up.upload_id, at(pkg, path), n, body(raw))
        listed.append((n, part.etag, {}))
    return await ctx.multipart.complete(alice, up.upload_id, at(pkg, path), listed)


async def test_part_copy_of_a_range_of_an_ec_object(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, alice = world.ctx, world.alice
    await add_spaces(world, 2)
    src_pkg = await package(world, "src", EC)
    first, second = data(30_000, 1), data(25_000, 2)
    source = await _object(world, src_pkg, "big.bin", first, second)
    whole = first + second
    assert await read_back(ctx, source) == whole

    # The command carries no body: the bytes come from the source's blocks.
    params = inspect.signature(MultipartService.upload_part_copy).parameters
    assert "body" not in params and "source" in params
    reads: list[tuple[int, int, int]] = []
    real_read = ctx.store.read

    def counting_read(
        content: ObjectContent, offset: int, length: int, *, read_ahead: int | None = None
    ) -> AsyncIterator[bytes]:
        reads.append((content.info.object_id, offset, length))
        return real_read(content, offset, length, read_ahead=read_ahead)

    monkeypatch.setattr(ctx.store, "read", counting_read)

    dst_pkg = await package(world, "dst")
    where = at(dst_pkg, "copy.bin")
    up = await ctx.multipart.create(alice, where)
    source_at = at(src_pkg, "big.bin")
    # Bytes 20000..34999: across the source's part boundary (and its segments).
    p1 = await ctx.multipart.upload_part_copy(
        alice, up.upload_id, where, 1, source_at, ByteRange(20_000, 34_999)
    )
    assert reads == [(source.object_id, 20_000, 15_000)]
    assert p1.size == 15_000 and p1.etag == md5(whole[20_000:35_000])
    p2 = await ctx.multipart.upload_part(alice, up.upload_id, where, 2, body(b"middle" * 300))
    p3 = await ctx.multipart.upload_part_copy(alice, up.upload_id, where, 3, source_at)  # whole
    p4 = await ctx.multipart.upload_part_copy(
        alice, up.upload_id, where, 4, source_at, ByteRange(suffix=100)
    )
    assert (p3.size, p4.size) == (len(whole), 100)

    # Source conditions and ranges are checked before anything is stored.
    before = block_files(ctx)
    for cond in (
        Conditions(if_match=('"nope"',)),
        Conditions(if_none_match=(source.etag,)),
    ):
        with pytest.raises(PreconditionFailed):
            await ctx.multipart.upload_part_copy(
                alice, up.upload_id, where, 5, source_at, source_conditions=cond
            )
    with pytest.raises(InvalidRange):
        await ctx.multipart.upload_part_copy(
            alice, up.upload_id, where, 5, source_at, ByteRange(len(whole), None)
        )
    with pytest.raises(ObjectNotFound):
        await ctx.multipart.upload_part_copy(alice, up.upload_id, where, 5, at(src_pkg, "missing"))
    assert block_files(ctx) == before
    await ctx.multipart.upload_part_copy(
        alice,
        up.upload_id,
        where,
        5,
        source_at,
        ByteRange(0, 9),
        Conditions(if_match=(f'"{source.etag}"',)),
    )

    done = await ctx.multipart.complete(
        alice,
        up.upload_id,
        where,
        [(n, p.etag, {}) for n, p in ((1, p1), (2, p2), (3, p3), (4, p4))],
    )
    expected = whole[20_000:35_000] + b"middle" * 300 + whole + whole[-100:]
    assert await read_back(ctx, done) == expected
    # The copy is stored on its own: the source may go, the copy stays.
    async with ctx.db.write() as conn:
        await catalog.delete_objects(conn, [source.object_id])
    await gc(ctx)
    again = await object_at(ctx, dst_pkg, "copy.bin")
    assert again is not None and await read_back(ctx, again) == expected


async def test_gc_collects_an_abandoned_upload_and_no_live_part(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    kept = await _object(world, pkg, "kept", b"an object")
    before = block_files(ctx)
    where = at(pkg, "f")
    up = await ctx.multipart.create(alice, where)
    for n in (1, 2):
        await ctx.multipart.upload_part(alice, up.upload_id, where, n, body(data(SMALL_PARTS, n)))
    assert len(block_files(ctx)) == len(before) + 2

    await gc(ctx)  # no expiry given: uploads are left alone, live parts kept
    await gc(ctx, timedelta(hours=1))  # not expired yet
    assert len(block_files(ctx)) == len(before) + 2
    listed = await ctx.multipart.list_parts(alice, up.upload_id, where)
    assert [p.part_number for p in listed.parts] == [1, 2]

    await gc(ctx, EXPIRED)  # the upload goes, its parts are released...
    with pytest.raises(UploadNotFound):
        await ctx.multipart.list_parts(alice, up.upload_id, where)
    await gc(ctx, EXPIRED)  # ...and their blocks removed
    assert block_files(ctx) == before
    assert await read_back(ctx, kept) == b"an object"
    assert (await ctx.multipart.list_uploads(alice, PackageRef.by_id(pkg.package_id))).uploads == []


async def test_gc_collects_the_uploads_of_a_deleted_package(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "doomed")
    ups: list[Any] = []
    for path in ("a", "a", "b"):
        up = await ctx.multipart.create(alice, at(pkg, path))
        await ctx.multipart.upload_part(alice, up.upload_id, at(pkg, path), 1, body(b"part"))
        ups.append(up)
    assert len(block_files(ctx)) == 3
    await ctx.packages.delete(alice, pkg.package_id)
    # Whatever its age, an upload of a package that is gone is collected.
    await gc(ctx, timedelta(days=1))
    await gc(ctx, timedelta(days=1))
    assert block_files(ctx) == []


async def test_fsck_counts_the_parts_of_uploads_in_flight(world: World) -> None:
    """Parts are layouts in use: checked like objects', never orphans."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    for path in ("a", "a", "b"):
        up = await ctx.multipart.create(alice, at(pkg, path))
        for n in (1, 2):
            await ctx.multipart.upload_part(alice, up.upload_id, at(pkg, path), n, body(b"p" * n))
    files = block_files(ctx)
    assert len(files) == 6
    # No safety delay: every key is old enough to be judged (and deleted if orphan).
    ctx.settings = dataclasses.replace(ctx.settings, gc_delay=timedelta(seconds=0))
    report = await fsck(ctx, deep=True, repair=True)
    assert report.clean and report.findings == [], report.findings
    assert report.layouts_checked == 6 and report.orphans_deleted == 0
    assert block_files(ctx) == files
