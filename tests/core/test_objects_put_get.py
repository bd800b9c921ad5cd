"""The typed object service: put with metadata and checksums, head, get with
ranges, delete — called directly with principals, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from core_support import World
from test_objects_support import at, body, md5, package, read_all, stored

from jointcloud.core.authz import Caveat, Operation, PathGrant
from jointcloud.core.commands import (
    ByteRange,
    ChecksumAlgorithm,
    DeleteObject,
    GetObject,
    ObjectMeta,
    PutObject,
)
from jointcloud.errors import (
    AccessDenied,
    BadArgument,
    BadDigest,
    InvalidRange,
    ObjectNotFound,
    PackageNotFound,
    PayloadMismatch,
)
from jointcloud.meta import catalog

CRC32 = ChecksumAlgorithm.CRC32
SHA256 = ChecksumAlgorithm.SHA256


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


META = ObjectMeta(
    content_type="image/jpeg",
    content_encoding="identity",
    cache_control="max-age=60",
    content_disposition='attachment; filename="a.jpg"',
    expires="Thu, 01 Dec 2094 16:00:00 GMT",
    user_metadata={"Camera": "Nikon", "lens": "50mm ƒ/1.8"},
    tags={"project": "holiday", "empty": ""},
)


@pytest.mark.parametrize("size", [0, 5, 300_000, 5 * 1024 * 1024 + 17], ids=str)
async def test_put_head_get_round_trip(world: World, size: int) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    data = os.urandom(size)
    put = PutObject(at(pkg, "photos/a.jpg"), body(data), meta=META, compute=frozenset({CRC32}))
    info = await ctx.objects.put(alice, put)
    assert (info.path, info.size, info.etag) == ("photos/a.jpg", size, md5(data))
    assert info.checksums == {CRC32: crc32_b64(data)}
    # User metadata names are lowercased; everything else is kept as given.
    assert info.meta.user_metadata == {"camera": "Nikon", "lens": "50mm ƒ/1.8"}
    assert info.meta.content_type == "image/jpeg" and info.meta.tags == META.tags
    for address in (at(pkg, "photos/a.jpg"), at(pkg, "photos/a.jpg", by_name=True)):
        head = await ctx.objects.head(alice, address)
        assert head == info
        got = await ctx.objects.get(alice, GetObject(address))
        assert got.info == info and not got.partial
        assert await read_all(got.body) == data


async def test_overwrite_replaces_metadata_and_keeps_identity(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    first = await ctx.objects.put(alice, PutObject(at(pkg, "k"), body(b"one"), meta=META))
    second = await ctx.objects.put(alice, PutObject(at(pkg, "k"), body(b"two")))
    assert second.object_id == first.object_id and second.create_time == first.create_time
    assert second.meta == ObjectMeta() and second.checksums == {}
    assert await ctx.objects.head(alice, at(pkg, "k")) == second


async def test_supplied_checksums_are_verified_and_stored(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    data = os.urandom(200_000)
    good = {CRC32: crc32_b64(data), SHA256: sha256_b64(data)}
    info = await ctx.objects.put(
        alice, PutObject(at(pkg, "ok"), body(data), checksums=good, content_md5=md5(data).upper())
    )
    assert info.checksums == good
    assert (await ctx.objects.head(alice, at(pkg, "ok"))).checksums == good


@pytest.mark.parametrize(
    "size", [1000, 100_000, 3 * 1024 * 1024], ids=["inline", "batched", "streamed"]
)
async def test_a_wrong_digest_stores_nothing(world: World, size: int) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    data = os.urandom(size)
    empty = await stored(ctx)
    await ctx.objects.put(alice, PutObject(at(pkg, "kept"), body(data)))
    before = await stored(ctx)
    assert before[0] == empty[0] + 1 and before[1] == empty[1] + 1
    # Block files are counted; a small object has none (it is inline).
    assert (before[3] > empty[3]) == (size > ctx.settings.inline_max_bytes)
    wrong = crc32_b64(data + b"x")
    with pytest.raises(BadDigest, match="CRC32"):
        await ctx.objects.put(alice, PutObject(at(pkg, "a"), body(data), checksums={CRC32: wrong}))
    with pytest.raises(BadDigest, match="MD5"):
        await ctx.objects.put(alice, PutObject(at(pkg, "a"), body(data), content_md5=md5(b"x")))
    other = hashlib.sha256(data + b"x").hexdigest()
    with pytest.raises(PayloadMismatch, match="declared SHA-256"):
        await ctx.objects.put(alice, PutObject(at(pkg, "a"), body(data), payload_sha256=other))
    assert await stored(ctx) == before
    # The declared digest of the very bytes (any case) is accepted, and not
    # stored as a checksum the client asked for.
    declared = hashlib.sha256(data).hexdigest().upper()
    info = await ctx.objects.put(
        alice, PutObject(at(pkg, "a"), body(data), payload_sha256=declared)
    )
    assert info.file_hash.sha256 == declared.lower() and info.checksums == {}
    await ctx.objects.delete(alice, DeleteObject(at(pkg, "a")))
    with pytest.raises(ObjectNotFound):
        await ctx.objects.head(alice, at(pkg, "a"))


async def test_checksums_in_a_trailer_are_verified_after_the_body(world: World) -> None:
    """S3's trailing checksums: the value arrives after the bytes; a wrong or
    malformed one stores nothing."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    data = os.urandom(300_000)
    read: list[bool] = []

    async def sent() -> AsyncIterator[bytes]:
        yield data
        read.append(True)

    def trailer() -> dict[ChecksumAlgorithm, str]:
        assert read, "the trailer is asked for once the body is read"
        return {CRC32: crc32_b64(data)}

    info = await ctx.objects.put(
        alice, PutObject(at(pkg, "t"), sent(), compute=frozenset({CRC32}), trailer=trailer)
    )
    assert info.checksums == {CRC32: crc32_b64(data)}
    before = await stored(ctx)
    for value, error in ((crc32_b64(b"other"), BadDigest), ("not base64!", BadArgument)):
        with pytest.raises(error, match="CRC32"):
            await ctx.objects.put(
                alice,
                PutObject(
                    at(pkg, "u"),
                    body(data),
                    compute=frozenset({CRC32}),
                    trailer=lambda v=value: {CRC32: v},  # type: ignore[misc]
                ),
            )
    assert await stored(ctx) == before


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (ObjectMeta(user_metadata={"a b": "x"}), "user metadata name 'a b'"),
        (ObjectMeta(user_metadata={"é": "x"}), "printable ASCII"),
        (ObjectMeta(user_metadata={"A": "1", "a": "2"}), "given twice"),
        (ObjectMeta(user_metadata={"k": "line\nbreak"}), "user metadata 'k' must not contain"),
        (ObjectMeta(user_metadata={"k": "v" * 2048}), "user metadata is 2049 bytes"),
        (ObjectMeta(user_metadata={"k": "é" * 1023}), "user metadata is 2047 bytes"),
        (ObjectMeta(tags={f"k{i}": "v" for i in range(11)}), "tags: 11 given; at most 10"),
        (ObjectMeta(tags={"": "v"}), "tag key '' is 0 characters"),
        (ObjectMeta(tags={"k" * 129: "v"}), "is 129 characters; 1 to 128"),
        (ObjectMeta(tags={"k": "v" * 257}), "value of 257 characters; at most 256"),
        (ObjectMeta(tags={"k": "a\x00"}), "tag 'k' value must not contain NUL"),
        (ObjectMeta(content_type="t" * 256), "content_type is 256 characters long; at most 255"),
        (ObjectMeta(cache_control="a\rb"), "cache_control must not contain"),
        (ObjectMeta(expires="x" * 65), "expires is 65 characters"),
    ],
)
async def test_metadata_limits_name_the_field(world: World, meta: ObjectMeta, message: str) -> None:
    pkg = await package(world)
    before = await stored(world.ctx)
    if "2047" in message:  # within the limit: 1 + 2 * 1023 bytes
        await world.ctx.objects.put(world.alice, PutObject(at(pkg, "m"), body(b"x"), meta=meta))
        return
    with pytest.raises(BadArgument, match=message):
        await world.ctx.objects.put(world.alice, PutObject(at(pkg, "m"), body(b"x"), meta=meta))
    assert await stored(world.ctx) == before


async def test_bad_checksum_values_are_refused_before_the_body(world: World) -> None:
    pkg = await package(world)

    async def never() -> object:  # the body is not read
        raise AssertionError("read")
        yield b""  # pragma: no cover

    for checksums, message in (
        ({CRC32: "not base64!"}, "checksum CRC32"),
        ({CRC32: base64.b64encode(b"12345").decode()}, "4-byte value"),
        ({SHA256: crc32_b64(b"")}, "32-byte value"),
    ):
        with pytest.raises(BadArgument, match=message):
            await world.ctx.objects.put(
                world.alice,
                PutObject(at(pkg, "c"), never(), checksums=checksums),  # type: ignore[arg-type]
            )
    with pytest.raises(BadArgument, match="content MD5"):
        await world.ctx.objects.put(
            world.alice,
            PutObject(at(pkg, "c"), never(), content_md5="xyz"),  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("rng", "offset", "length"),
    [
        (ByteRange(0, 0), 0, 1),
        (ByteRange(10, 19), 10, 10),
        (ByteRange(90, None), 90, 10),
        (ByteRange(95, 10**12), 95, 5),
        (ByteRange(suffix=7), 93, 7),
        (ByteRange(suffix=1000), 0, 100),
    ],
)
async def test_ranges(world: World, rng: ByteRange, offset: int, length: int) -> None:
    pkg = await package(world)
    data = os.urandom(100)
    await world.ctx.objects.put(world.alice, PutObject(at(pkg, "r"), body(data)))
    got = await world.ctx.objects.get(world.alice, GetObject(at(pkg, "r"), range=rng))
    assert (got.offset, got.length, got.partial) == (offset, length, True)
    assert await read_all(got.body) == data[offset : offset + length]


async def test_unsatisfiable_and_malformed_ranges(world: World) -> None:
    pkg = await package(world)
    await world.ctx.objects.put(world.alice, PutObject(at(pkg, "r"), body(b"x" * 100)))
    await world.ctx.objects.put(world.alice, PutObject(at(pkg, "empty"), body(b"")))
    get = world.ctx.objects.get
    for path, rng in (
        ("r", ByteRange(100, None)),
        ("r", ByteRange(suffix=0)),
        ("empty", ByteRange(0, None)),
        ("empty", ByteRange(suffix=5)),
    ):
        with pytest.raises(InvalidRange) as caught:
            await get(world.alice, GetObject(at(pkg, path), range=rng))
        assert caught.value.size == (0 if path == "empty" else 100)  # for "bytes */size"
    with pytest.raises(BadArgument, match="invalid byte range 5-4"):
        await get(world.alice, GetObject(at(pkg, "r"), range=ByteRange(5, 4)))


async def test_delete_is_idempotent(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    await ctx.objects.put(alice, PutObject(at(pkg, "d"), body(b"data")))
    before = await stored(ctx)
    assert await ctx.objects.delete(alice, DeleteObject(at(pkg, "d"))) is True
    assert await ctx.objects.delete(alice, DeleteObject(at(pkg, "d"))) is False
    with pytest.raises(ObjectNotFound, match="no object at path 'd' in package"):
        await ctx.objects.head(alice, at(pkg, "d"))
    objects, layouts, _, _ = await stored(ctx)
    assert objects == before[0] - 1  # the layout is released for GC, not leaked
    assert layouts == before[1]


async def test_every_method_authorizes_its_operation(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    await ctx.objects.put(alice, PutObject(at(pkg, "2024/a"), body(b"a")))
    read_only = alice.restricted(
        Caveat(disallow=frozenset({Operation.WRITE, Operation.DELETE, Operation.LIST}))
    )
    assert (await ctx.objects.head(read_only, at(pkg, "2024/a"))).size == 1
    with pytest.raises(AccessDenied, match="forbids write"):
        await ctx.objects.put(read_only, PutObject(at(pkg, "2024/b"), body(b"b")))
    with pytest.raises(AccessDenied, match="forbids delete"):
        await ctx.objects.delete(read_only, DeleteObject(at(pkg, "2024/a")))
    elsewhere = alice.restricted(Caveat(paths=(PathGrant(pkg.name, "2023/"),)))
    with pytest.raises(AccessDenied, match="does not reach"):
        await ctx.objects.get(elsewhere, GetObject(at(pkg, "2024/a")))
    with pytest.raises(AccessDenied):
        await ctx.objects.put(elsewhere, PutObject(at(pkg, "2024/b"), body(b"b")))
    # Other users' packages do not exist for you.
    with pytest.raises(PackageNotFound):
        await ctx.objects.head(world.bob, at(pkg, "2024/a"))


async def test_a_read_never_mixes_two_versions(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An object is opened in one statement (row, parts, layouts and blocks
    of one version); an overwrite that commits after that, while the bytes
    are still to be read, does not change what this read serves: the old
    size, etag and bytes, whole (old layouts stay until GC's delay)."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world)
    old, new = os.urandom(100), os.urandom(300_000)
    await ctx.objects.put(alice, PutObject(at(pkg, "k"), body(old)))
    real = catalog.open_by_path
    calls = 0

    async def overwritten_meanwhile(conn: Any, package_id: int, path: str) -> Any:
        nonlocal calls
        calls += 1
        found = await real(conn, package_id, path)
        await ctx.objects.put(alice, PutObject(at(pkg, "k"), body(new)))
        return found

    monkeypatch.setattr(catalog, "open_by_path", overwritten_meanwhile)
    got = await ctx.objects.get(alice, GetObject(at(pkg, "k")))
    data = await read_all(got.body)
    assert (got.info.size, got.info.etag) == (len(data), md5(data))
    assert data == old and calls == 1
    monkeypatch.undo()
    again = await ctx.objects.get(alice, GetObject(at(pkg, "k")))
    assert await read_all(again.body) == new
