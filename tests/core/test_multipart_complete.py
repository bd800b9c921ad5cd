"""Completing an upload: the client's part list is checked (known parts,
ascending order, matching ETags, every part but the last at least the
minimum size), conditions on the destination hold atomically, and nothing
fails half-way (a refused completion leaves the upload as it was)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from core_support import World
from test_multipart_support import (
    SMALL_PARTS,
    at,
    block_files,
    body,
    data,
    multipart_etag,
    object_at,
    package,
    read_back,
)

from jointcloud.config import Settings
from jointcloud.core.commands import Conditions
from jointcloud.core.models import Package
from jointcloud.core.multipart import DEFAULT_MIN_PART_SIZE, Part
from jointcloud.errors import (
    BadArgument,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    PreconditionFailed,
    UploadNotFound,
)


async def _upload(
    world: World, pkg: Package, path: str, parts: dict[int, bytes]
) -> tuple[str, dict[int, Part]]:
    ctx, alice = world.ctx, world.alice
    up = await ctx.multipart.create(alice, at(pkg, path))
    done = {}
    for n, raw in parts.items():
        done[n] = await ctx.multipart.upload_part(alice, up.upload_id, at(pkg, path), n, body(raw))
    return up.upload_id, done


async def test_every_check_of_the_part_list(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    raw = {
        1: data(SMALL_PARTS, 1),
        2: data(SMALL_PARTS - 1, 2),
        3: data(SMALL_PARTS + 5, 3),
        4: b"end",
    }
    pkg = await package(world, "p")
    upload_id, parts = await _upload(world, pkg, "f", raw)
    where = at(pkg, "f")

    def listed(*numbers: int) -> list[tuple[int, str | None, dict[object, str]]]:
        return [(n, parts[n].etag, {}) for n in numbers]

    cases: list[tuple[list, type[Exception], str]] = [
        ([], BadArgument, "at least one part"),
        ([*listed(1), (5, "x", {})], InvalidPart, "part 5 was not uploaded"),
        ([*listed(1), (6, "x", {}), (7, "y", {})], InvalidPart, "parts 6, 7 were not uploaded"),
        (listed(3, 1), InvalidPartOrder, "3"),
        (listed(1, 1), InvalidPartOrder, "ascending"),
        ([(1, parts[1].etag, {}), (3, parts[1].etag, {})], InvalidPart, "part 3: ETag"),
        ([(1, None, {})], InvalidPart, "part 1: no ETag given"),
        (listed(2, 3), EntityTooSmall, f"part 2 is {SMALL_PARTS - 1} bytes"),
        (listed(1, 2, 4), EntityTooSmall, "part 2 is"),
        ([(0, "x", {})], BadArgument, "between 1 and 10000"),
    ]
    for part_list, error, message in cases:
        with pytest.raises(error, match=message):
            await ctx.multipart.complete(alice, upload_id, where, part_list)
    assert await object_at(ctx, pkg, "f") is None

    # None of that changed the upload: every part is still there to use. The
    # last part may be as small as it likes; parts may be skipped.
    done = await ctx.multipart.complete(alice, upload_id, where, listed(1, 3, 4))
    assert await read_back(ctx, done) == raw[1] + raw[3] + raw[4]
    assert done.etag == multipart_etag(raw[1], raw[3], raw[4])
    assert done.size == len(raw[1]) + len(raw[3]) + 3
    # The unlisted part went with the upload; the upload is finished. The
    # same completion again (a retry) answers the same object; any other
    # finds no upload.
    again = await ctx.multipart.complete(alice, upload_id, where, listed(1, 3, 4))
    assert (again.object_id, again.etag) == (done.object_id, done.etag)
    with pytest.raises(UploadNotFound):
        await ctx.multipart.complete(alice, upload_id, where, listed(1, 3))


async def test_the_minimum_part_size_is_a_setting(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert DEFAULT_MIN_PART_SIZE == 5 * 1024 * 1024
    assert Settings(data_dir=Path("x")).multipart_min_part_size == DEFAULT_MIN_PART_SIZE
    monkeypatch.setenv("JCS_MULTIPART_MIN_PART_SIZE", "12345")
    assert Settings.load().multipart_min_part_size == 12345
    ctx, alice = world.ctx, world.alice
    # This context was built with the default: 5 MiB parts.
    pkg = await ctx.packages.create(alice, world.project.bucket_id, "big")
    assert ctx.multipart.min_part_size == DEFAULT_MIN_PART_SIZE
    where = at(pkg, "f")
    up = await ctx.multipart.create(alice, where)
    five = data(DEFAULT_MIN_PART_SIZE, 1)
    p1 = await ctx.multipart.upload_part(alice, up.upload_id, where, 1, body(five[:-1]))
    p2 = await ctx.multipart.upload_part(alice, up.upload_id, where, 2, body(b"x"))
    with pytest.raises(EntityTooSmall, match=f"part 1 is {DEFAULT_MIN_PART_SIZE - 1} bytes"):
        await ctx.multipart.complete(
            alice, up.upload_id, where, [(1, p1.etag, {}), (2, p2.etag, {})]
        )
    p1 = await ctx.multipart.upload_part(alice, up.upload_id, where, 1, body(five))
    done = await ctx.multipart.complete(
        alice, up.upload_id, where, [(1, p1.etag, {}), (2, p2.etag, {})]
    )
    assert done.size == DEFAULT_MIN_PART_SIZE + 1


async def test_conditions_on_the_destination(world: World) -> None:
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    upload_id, parts = await _upload(world, pkg, "f", {1: b"first"})
    where = at(pkg, "f")
    first = await ctx.multipart.complete(
        alice, upload_id, where, [(1, parts[1].etag, {})], Conditions(if_none_match=("*",))
    )
    assert await read_back(ctx, first) == b"first"

    upload_id, parts = await _upload(world, pkg, "f", {1: b"second"})
    listed = [(1, parts[1].etag, {})]
    for refused in (
        Conditions(if_none_match=("*",)),
        Conditions(if_match=('"0123"',)),
        Conditions(if_none_match=(f'"{first.etag}"',)),
    ):
        with pytest.raises(PreconditionFailed):
            await ctx.multipart.complete(alice, upload_id, where, listed, refused)
    current = await object_at(ctx, pkg, "f")
    assert current is not None and await read_back(ctx, current) == b"first"
    # Still in flight after the refusals; completes when the condition holds.
    done = await ctx.multipart.complete(
        alice, upload_id, where, listed, Conditions(if_match=(f'"{first.etag}"',))
    )
    assert done.object_id == first.object_id and await read_back(ctx, done) == b"second"
    # A condition on creation is checked against the object there now.
    with pytest.raises(PreconditionFailed):
        await ctx.multipart.create(alice, where, conditions=Conditions(if_none_match=("*",)))


async def test_create_only_if_absent_is_atomic(world: World) -> None:
    """Several uploads of one new path complete at once with If-None-Match
    ``*``: exactly one of them makes the object; the others change nothing."""
    ctx, alice = world.ctx, world.alice
    pkg = await package(world, "p")
    racers = []
    for i in range(4):
        upload_id, parts = await _upload(world, pkg, "race", {1: f"racer {i}".encode()})
        racers.append((upload_id, parts[1].etag))
    where = at(pkg, "race")
    results = await asyncio.gather(
        *(
            ctx.multipart.complete(
                alice, uid, where, [(1, etag, {})], Conditions(if_none_match=("*",))
            )
            for uid, etag in racers
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert all(isinstance(r, PreconditionFailed) for r in results if r is not winners[0])
    current = await object_at(ctx, pkg, "race")
    assert current is not None and current.etag == winners[0].etag
    assert len(block_files(ctx)) == 4  # the losers' parts wait in their uploads
