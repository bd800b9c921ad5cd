"""At most ``max_uploads_per_user`` uploads of one user in progress at once
(``UploadSlots``): PUTs, parts and v1 uploads whose clients are still
sending hold a slot each; one more is refused at once with ``ServerBusy``
(S3's ``503 SlowDown``) before a byte of it is read, and another user is
not affected. Before, one user's stalled uploads were bounded only by the
process's connection limit (the review of one heavy tenant: 3.8 MiB of
memory, a temporary file per block and a connection each)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from core_support import World
from test_multipart_support import SMALL_PARTS, at, package

from jointcloud.core.commands import ObjectAddress, PackageRef, PutObject
from jointcloud.errors import ServerBusy

LIMIT = 3


class Client:
    """A body that sends one piece, then waits until it is let go."""

    def __init__(self) -> None:
        self.sent = asyncio.Event()
        self.go_on = asyncio.Event()
        self.read = 0  # pieces taken from it

    async def body(self) -> AsyncIterator[bytes]:
        self.read += 1
        yield b"a" * SMALL_PARTS
        self.sent.set()
        await self.go_on.wait()
        self.read += 1
        yield b"b" * 10


async def test_one_user_holds_at_most_its_slots_and_another_is_not_held(
    world: World,
) -> None:
    ctx = world.ctx
    ctx.objects.slots.per_user = LIMIT
    assert ctx.multipart.slots is ctx.objects.slots  # one count for PUTs and parts
    pkg = await package(world, "heavy")
    up = await ctx.multipart.create(world.alice, at(pkg, "big"))

    # Three stalled uploads of alice: a PUT, a part, a v1 upload.
    clients = [Client() for _ in range(LIMIT)]
    running = [
        asyncio.ensure_future(
            ctx.objects.put(world.alice, PutObject(at(pkg, "p"), clients[0].body()))
        ),
        asyncio.ensure_future(
            ctx.multipart.upload_part(
                world.alice, up.upload_id, at(pkg, "big"), 1, clients[1].body()
            )
        ),
    ]

    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        yield "v1", clients[2].body()

    running.append(asyncio.ensure_future(ctx.objects.upload(world.alice, pkg.package_id, files())))
    for c in clients:
        await c.sent.wait()
    assert ctx.objects.slots.held(world.alice.user_id) == LIMIT

    # One more of alice's, of each kind, is refused before its body is read.
    extra = Client()
    with pytest.raises(ServerBusy, match="uploads in progress"):
        await ctx.objects.put(world.alice, PutObject(at(pkg, "q"), extra.body()))
    with pytest.raises(ServerBusy):
        await ctx.multipart.upload_part(world.alice, up.upload_id, at(pkg, "big"), 2, extra.body())

    async def more() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        yield "v2", extra.body()

    with pytest.raises(ServerBusy):
        await ctx.objects.upload(world.alice, pkg.package_id, more())
    assert extra.read == 0

    # Bob's upload goes through meanwhile.
    bob_pkg = await ctx.packages.create(world.bob, world.bob_project.bucket_id, "mine")
    bob = Client()
    bob.go_on.set()
    where = ObjectAddress(PackageRef.by_name(bob_pkg.name, bob_pkg.bucket_id), "k")
    info = await ctx.objects.put(world.bob, PutObject(where, bob.body()))
    assert info.size == SMALL_PARTS + 10

    # Once one of alice's ends, she may start another; all end with no slot held.
    clients[0].go_on.set()
    await running[0]
    again = Client()
    again.go_on.set()
    await ctx.objects.put(world.alice, PutObject(at(pkg, "q"), again.body()))
    for c in clients[1:]:
        c.go_on.set()
    await asyncio.gather(*running[1:])
    assert ctx.objects.slots.held(world.alice.user_id) == 0


async def test_a_refused_or_failed_upload_gives_its_slot_back(world: World) -> None:
    ctx = world.ctx
    ctx.objects.slots.per_user = 1
    pkg = await package(world, "fails")

    async def broken() -> AsyncIterator[bytes]:
        yield b"x"
        raise ConnectionResetError("the client went away")

    for _ in range(3):
        with pytest.raises(ConnectionResetError):
            await ctx.objects.put(world.alice, PutObject(at(pkg, "k"), broken()))
        assert ctx.objects.slots.held(world.alice.user_id) == 0
