"""What a copy reads of its source: a checksum of another algorithm than
the source has (S3's CopyObject with ``x-amz-checksum-algorithm``) and, for
a copy of one piece (S3's CopyObject), the MD5 of a source completed from
uploaded parts, which becomes the copy's ETag as on AWS. Each is read once,
and committed only for the version it was read from."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from core_support import World
from test_multipart_support import SMALL_PARTS, data, multipart_etag
from test_multipart_support import at as mp_at
from test_multipart_support import body as mp_body
from test_multipart_support import package as mp_package
from test_objects_support import at, body, package, read_all

from jointcloud.context import Context
from jointcloud.core import copy_checksum
from jointcloud.core import objects as objects_module
from jointcloud.core.commands import (
    ChecksumAlgorithm,
    Conditions,
    CopyObject,
    GetObject,
    PutObject,
)
from jointcloud.core.models import ObjectInfo, Package
from jointcloud.errors import Conflict, CopyTooLarge, ObjectNotFound, PreconditionFailed

SHA1 = ChecksumAlgorithm.SHA1


def sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def count_reads(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per read of an object's stored bytes from now on."""
    reads: list[int] = []
    original = ctx.store.read

    def counting(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ctx.store, "read", counting)
    return reads


@pytest.mark.parametrize("size", [100, 300_000], ids=["inline", "blocks"])
async def test_the_copy_carries_the_asked_checksum_alone(world: World, size: int) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    data = bytes(range(256)) * (size // 256) + b"tail"
    src = await ctx.objects.put(
        alice, PutObject(at(pkg, "src"), body(data), compute=frozenset({ChecksumAlgorithm.CRC32}))
    )
    assert set(src.checksums) == {ChecksumAlgorithm.CRC32}
    done = await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst"), checksum=SHA1))
    assert done.checksums == {SHA1: sha1(data)}
    assert done.etag == src.etag and done.size == len(data)
    got = await ctx.objects.get(alice, GetObject(at(pkg, "dst")))
    assert await read_all(got.body) == data
    # The source is as it was.
    assert (await ctx.objects.head(alice, at(pkg, "src"))).checksums == src.checksums


async def test_a_source_replaced_while_it_is_read_is_not_copied_with_a_stale_checksum(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checksum is of the version read; the source replaced before the
    copy commits would have given the copy the new bytes with the old
    bytes' checksum. The copy is refused (Conflict) and nothing is made."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    await ctx.objects.put(alice, PutObject(at(pkg, "src"), body(b"first version")))
    original = objects_module.read_digests

    async def then_replaced(*args: Any, **kwargs: Any) -> Any:
        value = await original(*args, **kwargs)
        await ctx.objects.put(alice, PutObject(at(pkg, "src"), body(b"second version!")))
        return value

    monkeypatch.setattr(objects_module, "read_digests", then_replaced)
    with pytest.raises(Conflict, match="was replaced while it was read for the copy"):
        await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst"), checksum=SHA1))
    with pytest.raises(ObjectNotFound):
        await ctx.objects.head(alice, at(pkg, "dst"))
    monkeypatch.setattr(objects_module, "read_digests", original)
    done = await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst"), checksum=SHA1))
    assert done.checksums == {SHA1: sha1(b"second version!")}


async def test_a_copy_that_would_read_too_much_or_cannot_commit_reads_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source larger than S3's copy limit is refused before a byte is
    read (each retry of a slow copy read it all again), and so is a copy
    whose destination condition already fails."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    await ctx.objects.put(alice, PutObject(at(pkg, "src"), body(b"x" * 5000)))
    await ctx.objects.put(alice, PutObject(at(pkg, "taken"), body(b"here")))
    read = count_reads(ctx, monkeypatch)
    monkeypatch.setattr(copy_checksum, "MAX_READ_FOR_COPY", 4999)
    with pytest.raises(CopyTooLarge, match="maximum allowable size for a copy source: 4999"):
        await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst"), checksum=SHA1))
    create_only = Conditions(if_none_match=("*",))
    with pytest.raises(PreconditionFailed):
        await ctx.objects.copy(
            alice,
            CopyObject(at(pkg, "src"), at(pkg, "taken"), conditions=create_only, checksum=SHA1),
        )
    assert read == []
    with pytest.raises(ObjectNotFound):
        await ctx.objects.head(alice, at(pkg, "dst"))
    monkeypatch.setattr(copy_checksum, "MAX_READ_FOR_COPY", 5000)
    await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst"), checksum=SHA1))
    assert read == [1]  # the count sees the reads the copy makes


async def _multipart_source(world: World, pkg: Package, path: str) -> tuple[bytes, ObjectInfo]:
    ctx, alice = world.ctx, world.alice
    parts = [data(SMALL_PARTS, 1), data(SMALL_PARTS + 7, 2), b"the end"]
    up = await ctx.multipart.create(alice, mp_at(pkg, path))
    done = [
        await ctx.multipart.upload_part(alice, up.upload_id, mp_at(pkg, path), n, mp_body(raw))
        for n, raw in enumerate(parts, 1)
    ]
    listed = [(n, part.etag, {}) for n, part in enumerate(done, 1)]
    info = await ctx.multipart.complete(alice, up.upload_id, mp_at(pkg, path), listed)
    assert info.etag == multipart_etag(*parts)
    return b"".join(parts), info


async def test_a_copy_of_one_piece_of_a_multipart_source_has_the_md5_of_its_bytes(
    world: World,
) -> None:
    """AWS gives a CopyObject of an object uploaded in parts the MD5 of its
    bytes as ETag (it is a new object of one piece), and shows it as one
    part; the JCS clone, and any copy not of one piece, keeps the source's."""
    ctx, alice = world.ctx, world.alice
    pkg = await mp_package(world, "mp")
    raw, src = await _multipart_source(world, pkg, "src")
    done = await ctx.objects.copy(
        alice, CopyObject(mp_at(pkg, "src"), mp_at(pkg, "dst"), one_piece=True)
    )
    assert done.etag == hashlib.md5(raw).hexdigest()
    assert (await ctx.objects.head(alice, mp_at(pkg, "dst"))).etag == done.etag
    got = await ctx.objects.get(alice, GetObject(mp_at(pkg, "dst")))
    assert await read_all(got.body) == raw
    _, whole = await ctx.objects.head_part(alice, mp_at(pkg, "dst"), 1)
    assert (whole.offset, whole.length, whole.parts_count) == (0, len(raw), 1)
    assert (await ctx.objects.attributes(alice, mp_at(pkg, "dst"))).part_sizes is None
    # The source keeps its parts; a copy not of one piece keeps its ETag.
    assert (await ctx.objects.attributes(alice, mp_at(pkg, "src"))).part_sizes is not None
    kept = await ctx.objects.copy(alice, CopyObject(mp_at(pkg, "src"), mp_at(pkg, "kept")))
    assert kept.etag == src.etag


async def test_the_v1_clone_of_a_multipart_source_reads_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only S3's copy of one piece reads its source; the JCS clone shares the
    source's data and keeps its ETag, at any size."""
    ctx, alice = world.ctx, world.alice
    pkg = await mp_package(world, "mp")
    _, src = await _multipart_source(world, pkg, "src")
    reads = count_reads(ctx, monkeypatch)
    [clone] = await ctx.objects.clone(alice, [(src.object_id, pkg.package_id, "clone")])
    assert clone is not None and clone.etag == src.etag and reads == []


async def test_the_md5_and_a_checksum_are_read_in_one_pass(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await mp_package(world, "mp")
    raw, _ = await _multipart_source(world, pkg, "src")
    reads = count_reads(ctx, monkeypatch)
    done = await ctx.objects.copy(
        alice,
        CopyObject(mp_at(pkg, "src"), mp_at(pkg, "dst"), checksum=SHA1, one_piece=True),
    )
    assert reads == [1]
    assert done.etag == hashlib.md5(raw).hexdigest()
    assert done.checksums == {SHA1: sha1(raw)}
    # A source of one piece already has its MD5: nothing is read.
    await ctx.objects.copy(
        alice, CopyObject(mp_at(pkg, "dst"), mp_at(pkg, "again"), one_piece=True)
    )
    assert reads == [1]


async def test_a_multipart_source_replaced_while_read_for_its_md5_is_not_copied(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await mp_package(world, "mp")
    await _multipart_source(world, pkg, "src")
    original = objects_module.read_digests

    async def then_replaced(*args: Any, **kwargs: Any) -> Any:
        value = await original(*args, **kwargs)
        await _multipart_source(world, pkg, "src")  # the same bytes, a new version
        return value

    monkeypatch.setattr(objects_module, "read_digests", then_replaced)
    with pytest.raises(Conflict, match="was replaced while it was read for the copy"):
        await ctx.objects.copy(
            alice, CopyObject(mp_at(pkg, "src"), mp_at(pkg, "dst"), one_piece=True)
        )
    with pytest.raises(ObjectNotFound):
        await ctx.objects.head(alice, mp_at(pkg, "dst"))


async def test_a_copy_of_one_piece_refuses_a_source_over_the_limit_whatever_it_needs(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 copies at most 5 GiB in one CopyObject, even where nothing need be
    read (larger ones are copied in parts); the JCS clone has no limit."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    await ctx.objects.put(alice, PutObject(at(pkg, "src"), body(b"x" * 5000)))
    monkeypatch.setattr(copy_checksum, "MAX_READ_FOR_COPY", 4999)
    with pytest.raises(CopyTooLarge, match="it is 5000 bytes"):
        await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst"), one_piece=True))
    with pytest.raises(ObjectNotFound):
        await ctx.objects.head(alice, at(pkg, "dst"))
    await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst")))
