"""A ranged read of an object made of parts opens only the parts that hold
the range (a parallel downloader's 8 MiB reads of a 5 GiB object would
otherwise load every block row of it for each), and still returns exactly
the bytes asked for, across part boundaries, for every kind of range."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from core_support import World
from test_multipart_support import add_spaces, at, body, data, package

from jointcloud.core.commands import ByteRange, GetObject, PutObject
from jointcloud.core.models import ObjectContent, Package
from jointcloud.errors import InvalidRange

EC = {"type": "ec", "k": 2, "n": 3, "chunkSize": 4096}
# Parts of 3,000, 5,000 (inline or not, by the inline threshold) and 4,000 bytes.
SIZES = (3_000, 5_000, 4_000)


async def _multipart(world: World, pkg: Package, path: str) -> bytes:
    ctx, alice = world.ctx, world.alice
    parts = [data(size, seed) for seed, size in enumerate(SIZES, 1)]
    up = await ctx.multipart.create(alice, at(pkg, path))
    listed = []
    for n, raw in enumerate(parts, 1):
        part = await ctx.multipart.upload_part(alice, up.upload_id, at(pkg, path), n, body(raw))
        listed.append((n, part.etag, {}))
    await ctx.multipart.complete(alice, up.upload_id, at(pkg, path), listed)
    return b"".join(parts)


async def _read(world: World, pkg: Package, path: str, rng: ByteRange) -> bytes:
    got = await world.ctx.objects.get(world.alice, GetObject(at(pkg, path), range=rng))
    out = b"".join([piece async for piece in got.body])
    assert len(out) == got.length
    return out


@pytest.fixture
async def opened(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[list[ObjectContent]]:
    """Every ObjectContent the store is asked to read from."""
    seen: list[ObjectContent] = []
    real = world.ctx.store.read

    def read(
        content: ObjectContent, offset: int, length: int, *, read_ahead: int | None = None
    ) -> AsyncIterator[bytes]:
        seen.append(content)
        return real(content, offset, length, read_ahead=read_ahead)

    monkeypatch.setattr(world.ctx.store, "read", read)
    yield seen


# (range, the offsets of the parts it needs): parts start at 0, 3000, 8000.
CASES = [
    (ByteRange(0, 0), [0]),
    (ByteRange(2_999, 3_000), [0, 3_000]),  # the last byte of one, the first of the next
    (ByteRange(3_000, 7_999), [3_000]),  # exactly one part
    (ByteRange(7_999, None), [3_000, 8_000]),  # open-ended
    (ByteRange(100, 11_999), [0, 3_000, 8_000]),
    (ByteRange(11_999, 10**30), [8_000]),  # an end far past any object
    (ByteRange(suffix=4_000), [8_000]),  # exactly the last part
    (ByteRange(suffix=4_001), [3_000, 8_000]),
    (ByteRange(suffix=10**30), [0, 3_000, 8_000]),
]


@pytest.mark.parametrize("redundancy", [None, EC], ids=["default", "ec"])
@pytest.mark.parametrize(("rng", "needed"), CASES)
async def test_a_range_opens_only_its_parts(
    world: World,
    opened: list[ObjectContent],
    redundancy: object,
    rng: ByteRange,
    needed: list[int],
) -> None:
    if redundancy is not None:
        await add_spaces(world, 2)
    pkg = await package(world, "p", redundancy)
    whole = await _multipart(world, pkg, "o")
    offset = max(len(whole) - rng.suffix, 0) if rng.suffix is not None else rng.start or 0
    end = len(whole) if rng.suffix is not None or rng.end is None else rng.end + 1
    assert await _read(world, pkg, "o", rng) == whole[offset:end]
    assert [off for off, _ in opened[-1].parts] == needed
    assert opened[-1].info.size == len(whole)


async def test_random_ranges_read_what_they_name(world: World) -> None:
    pkg = await package(world, "p")
    whole = await _multipart(world, pkg, "o")
    rand = random.Random(7)
    for _ in range(60):
        first = rand.randrange(len(whole))
        last = rand.randrange(first, len(whole) + 50)
        assert await _read(world, pkg, "o", ByteRange(first, last)) == whole[first : last + 1]
        tail = rand.randrange(1, len(whole) + 50)
        assert await _read(world, pkg, "o", ByteRange(suffix=tail)) == whole[-tail:]


async def test_ranges_that_select_nothing_still_know_the_object(world: World) -> None:
    pkg = await package(world, "p")
    whole = await _multipart(world, pkg, "o")
    await world.ctx.objects.put(world.alice, PutObject(at(pkg, "empty"), body(b"")))
    for path, rng, size in (
        ("o", ByteRange(len(whole), None), len(whole)),
        ("o", ByteRange(suffix=0), len(whole)),
        ("empty", ByteRange(0, 5), 0),
        ("empty", ByteRange(suffix=5), 0),
    ):
        with pytest.raises(InvalidRange) as caught:
            await _read(world, pkg, path, rng)
        assert caught.value.size == size  # the object was found: "bytes */size"
