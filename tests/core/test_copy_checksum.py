"""A copy asked for a checksum of another algorithm than its source has:
computed by reading the source once, and committed only for the version it
was computed from (S3's CopyObject with ``x-amz-checksum-algorithm``)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from core_support import World
from test_objects_support import at, body, package, read_all

from jointcloud.core import copy_checksum
from jointcloud.core import objects as objects_module
from jointcloud.core.commands import (
    ChecksumAlgorithm,
    Conditions,
    CopyObject,
    GetObject,
    PutObject,
)
from jointcloud.errors import Conflict, CopyTooLarge, ObjectNotFound, PreconditionFailed

SHA1 = ChecksumAlgorithm.SHA1


def sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


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
    original = objects_module.checksum_of_object

    async def then_replaced(*args: Any) -> Any:
        value = await original(*args)
        await ctx.objects.put(alice, PutObject(at(pkg, "src"), body(b"second version!")))
        return value

    monkeypatch.setattr(objects_module, "checksum_of_object", then_replaced)
    with pytest.raises(Conflict, match="was replaced while its checksum was computed"):
        await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst"), checksum=SHA1))
    with pytest.raises(ObjectNotFound):
        await ctx.objects.head(alice, at(pkg, "dst"))
    monkeypatch.setattr(objects_module, "checksum_of_object", original)
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
    read: list[int] = []
    original = ctx.store.read

    def counting(*args: Any, **kwargs: Any) -> Any:
        read.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(ctx.store, "read", counting)
    monkeypatch.setattr(copy_checksum, "MAX_READ_FOR_CHECKSUM", 4999)
    with pytest.raises(CopyTooLarge, match="at most 4999 bytes"):
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
    monkeypatch.setattr(copy_checksum, "MAX_READ_FOR_CHECKSUM", 5000)
    await ctx.objects.copy(alice, CopyObject(at(pkg, "src"), at(pkg, "dst"), checksum=SHA1))
    assert read == [1]  # the count sees the reads the copy makes
