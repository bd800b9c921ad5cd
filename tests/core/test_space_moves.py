"""A user space moved (its root path or storage changed) or deleted while a
writer places blocks on it. A move is allowed only while the space holds no
block, but a writer reads the space's record before it records its blocks:
a review reproduced uploads that wrote their blocks under the old root and
were answered, then could not be read once the server forgot its open
backends (a restart), and fsck reported their layouts lost. The writer's
intent now checks, in its own transaction, that each space is still where
its record says; the move waits for such intents and then counts their
blocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from core_support import World
from test_multipart_support import body
from test_races_of_reads_and_deletes import postgresql_only, until_blocked

from jointcloud.core import health
from jointcloud.core import userspaces as userspaces_module
from jointcloud.core.commands import GetObject, ObjectAddress, PackageRef
from jointcloud.core.fsck import fsck
from jointcloud.core.models import SpaceState, UserSpace
from jointcloud.core.userspaces import SpaceChanges
from jointcloud.errors import Conflict, InsufficientSpaces
from jointcloud.meta import layouts, spacestate
from jointcloud.meta.rows import now


async def bobs_space(world: World, tmp_path: Path) -> UserSpace:
    """Bob's only user space, so that every block of his lands on it."""
    where = tmp_path / "bobspace"
    return await world.ctx.spaces.create(
        world.bob, "only", {"type": "Local", "path": str(where)}, None, "first"
    )


def block_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def upload(world: World, key: str, raw: bytes) -> None:
    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        yield key, body(raw)

    ctx = world.ctx
    pkg = await ctx.packages.create(world.bob, world.bob_project.bucket_id, "pkg")
    await ctx.objects.upload(world.bob, pkg.package_id, files())


async def read_back(world: World, key: str) -> bytes:
    where = ObjectAddress(PackageRef.by_name("pkg", world.bob_project.bucket_id), key)
    got = await world.ctx.objects.get(world.bob, GetObject(where))
    return b"".join([c async for c in got.body])


async def readable_after_a_restart(world: World, key: str, raw: bytes) -> None:
    """As after a restart (nothing the process had open or cached), the
    object reads back whole and fsck finds nothing wrong."""
    await world.ctx.pool.close()
    assert await read_back(world, key) == raw
    assert (await fsck(world.ctx)).clean


@pytest.mark.parametrize("size", [64 * 1024, 3 << 20], ids=["batched", "streamed"])
async def test_an_upload_that_read_a_space_before_its_move_writes_where_it_moved(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    read_spaces = ctx.store.user_spaces
    moves = 0

    async def read_then_moved(user_id: int) -> list[UserSpace]:
        nonlocal moves
        records = await read_spaces(user_id)
        if moves == 0:  # the owner moves it once, right after the writer read it
            moves += 1
            await ctx.spaces.update(
                world.bob, space.user_space_id, SpaceChanges(root_path="second")
            )
        return records

    monkeypatch.setattr(ctx.store, "user_spaces", read_then_moved)
    raw = bytes(range(256)) * (size // 256)
    await upload(world, "k", raw)
    assert moves == 1
    base = tmp_path / "bobspace"
    assert block_files(base / "second") and not block_files(base / "first")
    await readable_after_a_restart(world, "k", raw)


async def test_a_record_read_before_a_move_never_reopens_the_old_location(
    world: World, tmp_path: Path
) -> None:
    ctx = world.ctx
    before = await bobs_space(world, tmp_path)
    await ctx.pool.get(before)
    after = await ctx.spaces.update(
        world.bob, before.user_space_id, SpaceChanges(root_path="second")
    )
    # The stale record comes first after the move, the current one next.
    backend = await ctx.pool.get(before)
    assert await ctx.pool.get(after) is backend
    await backend.put("probe-key", b"x")
    base = tmp_path / "bobspace"
    assert [p.name for p in block_files(base / "second")] == ["probe-key"]
    assert not block_files(base / "first")
    assert ctx.pool.records[before.user_space_id].root_path == "second"


async def test_an_upload_whose_only_space_was_deleted_meanwhile_is_refused_cleanly(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    read_spaces = ctx.store.user_spaces

    async def read_then_deleted(user_id: int) -> list[UserSpace]:
        records = await read_spaces(user_id)
        if records:
            await ctx.spaces.delete(world.bob, space.user_space_id)
        return records

    monkeypatch.setattr(ctx.store, "user_spaces", read_then_deleted)
    with pytest.raises(InsufficientSpaces):
        await upload(world, "k", b"z" * (64 * 1024))
    assert not block_files(tmp_path / "bobspace")
    async with ctx.db.read() as conn:
        assert not await layouts.garbage(conn, before=now())


async def test_a_move_waits_for_an_intent_on_the_space_and_then_refuses(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the move's count of blocks ran beside the intent's
    uncommitted insert (READ COMMITTED) and saw none, so both committed."""
    postgresql_only(world)
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    create_pending = layouts.create_pending_many
    moving: list[asyncio.Task[UserSpace]] = []

    async def then_a_move(*args: Any, **kwargs: Any) -> list[int]:
        ids = await create_pending(*args, **kwargs)
        if not moving:  # the intent is in, not committed: the owner moves the space
            moving.append(
                asyncio.ensure_future(
                    ctx.spaces.update(
                        world.bob, space.user_space_id, SpaceChanges(root_path="second")
                    )
                )
            )
            await until_blocked(world, list(moving), 1)
        return ids

    monkeypatch.setattr(layouts, "create_pending_many", then_a_move)
    raw = b"y" * (64 * 1024)
    await upload(world, "k", raw)
    with pytest.raises(Conflict, match="holds blocks"):
        await moving[0]
    await readable_after_a_restart(world, "k", raw)


# --- found by the review of the fix ----------------------------------------


async def test_a_move_and_a_credential_update_of_one_space_at_once_both_succeed(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a move locked the space's row, then the lock of Local
    admissions; a credential update took them in the other order (it
    re-admitted the unchanged storage): a deadlock, answered 500. The move
    starts while the credential update holds the first of its locks."""
    postgresql_only(world)
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    moving: list[asyncio.Task[UserSpace]] = []

    def first_lock_starts_a_move(real: Any) -> Any:
        async def hooked(conn: Any, *args: Any, **kwargs: Any) -> None:
            await real(conn, *args, **kwargs)
            if not moving:  # the credential update holds it
                moving.append(
                    asyncio.ensure_future(
                        ctx.spaces.update(
                            world.bob,
                            space.user_space_id,
                            SpaceChanges(storage={"type": "Local", "path": str(tmp_path / "to")}),
                        )
                    )
                )
                await until_blocked(world, list(moving), 1)

        return hooked

    for name in ("lock_space", "lock_local_admissions"):
        monkeypatch.setattr(spacestate, name, first_lock_starts_a_move(getattr(spacestate, name)))
    await ctx.spaces.update(world.bob, space.user_space_id, SpaceChanges(credential=None))
    assert moving, "the credential update took neither lock"
    moved = await moving[0]
    assert moved.storage["path"] == str(tmp_path / "to")


async def test_an_update_built_on_the_space_as_it_was_before_a_move_is_refused(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credential update wrote back the storage it had read: between its
    read and its write the owner moved the (empty) space and an upload put
    its blocks at the new place; the update put the old storage back under
    them, answered 200, and the object was lost."""
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    read = ctx.spaces.get
    raw = b"x" * (256 * 1024)

    async def read_then_moved_and_written(principal: Any, space_id: int) -> UserSpace:
        record = await read(principal, space_id)
        monkeypatch.setattr(ctx.spaces, "get", read)  # once
        await ctx.spaces.update(
            world.bob,
            space_id,
            SpaceChanges(storage={"type": "Local", "path": str(tmp_path / "to")}),
        )
        await upload(world, "k", raw)
        return record

    monkeypatch.setattr(ctx.spaces, "get", read_then_moved_and_written)
    with pytest.raises(Conflict, match="changed by another request meanwhile"):
        await ctx.spaces.update(world.bob, space.user_space_id, SpaceChanges(credential=None))
    assert (await ctx.spaces.get(world.bob, space.user_space_id)).storage["path"] == str(
        tmp_path / "to"
    )
    await readable_after_a_restart(world, "k", raw)


async def test_of_two_moves_at_once_the_later_one_is_refused(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rootPath move made its directory under the storage it had read; a
    storage move committed meanwhile; both answered 200 and the space
    pointed at a directory nobody made, which could not be opened."""
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    prepare = ctx.pool.prepare

    async def prepared_then_storage_moved(storage: Any, root: str) -> None:
        await prepare(storage, root)
        monkeypatch.setattr(ctx.pool, "prepare", prepare)  # once
        await ctx.spaces.update(
            world.bob,
            space.user_space_id,
            SpaceChanges(storage={"type": "Local", "path": str(tmp_path / "to")}),
        )

    monkeypatch.setattr(ctx.pool, "prepare", prepared_then_storage_moved)
    with pytest.raises(Conflict, match="changed by another request meanwhile"):
        await ctx.spaces.update(world.bob, space.user_space_id, SpaceChanges(root_path="second"))
    after = await ctx.spaces.get(world.bob, space.user_space_id)
    assert (after.storage["path"], after.root_path) == (str(tmp_path / "to"), "first")
    await ctx.pool.close()
    await ctx.pool.get(after)  # its directory is there


async def test_a_test_of_a_space_never_undoes_a_drain_asked_meanwhile(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """userSpace/test of an Unavailable space set it Normal once its probe
    passed, whatever it had become: a drain asked while the probe ran
    (answered 200) was undone."""
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    async with ctx.db.write() as conn:
        await spacestate.swap_state(
            conn, space.user_space_id, (SpaceState.NORMAL,), SpaceState.UNAVAILABLE
        )
    real_probe = userspaces_module.probe

    async def drained_while_probed(backend: Any) -> float:
        await ctx.spaces.drain(world.bob, space.user_space_id)
        return await real_probe(backend)

    monkeypatch.setattr(userspaces_module, "probe", drained_while_probed)
    await ctx.spaces.test_existing(world.bob, space.user_space_id)
    after = await ctx.spaces.get(world.bob, space.user_space_id)
    assert after.state == SpaceState.DRAINING and after.latency_ms is not None


async def test_a_health_pass_that_read_a_space_before_its_move_reads_where_it_is(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every update that was not a move (a rename, a state, a test) made
    the pool forget where the space was; the health job's record, read
    before a move, then opened the old root again, and reads of an object
    written after the move failed until the pass ended."""
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    list_all = spacestate.list_all
    raw = b"h" * (256 * 1024)
    reads: list[bytes] = []

    async def read_then_moved(conn: Any, states: Any = None) -> list[UserSpace]:
        records = await list_all(conn, states)
        monkeypatch.setattr(spacestate, "list_all", list_all)  # once
        await ctx.spaces.update(world.bob, space.user_space_id, SpaceChanges(root_path="second"))
        await upload(world, "k", raw)
        await ctx.spaces.update(world.bob, space.user_space_id, SpaceChanges(name="renamed"))
        return records

    real_probe = health.probe

    async def probe_then_read(backend: Any) -> float:
        latency = await real_probe(backend)
        reads.append(await read_back(world, "k"))
        return latency

    monkeypatch.setattr(spacestate, "list_all", read_then_moved)
    monkeypatch.setattr(health, "probe", probe_then_read)
    report = await health.check_health(ctx.db, ctx.pool)
    assert len(reads) == len(report.results) and all(r == raw for r in reads)
    assert all(r.error is None for r in report.results)
    assert await read_back(world, "k") == raw


async def test_a_deleted_space_leaves_nothing_behind_in_the_pool(
    world: World, tmp_path: Path
) -> None:
    """Spaces made, used and deleted over and over (a soak's review of
    2026-12-07) keep no entry in the process's pool: before, the lock each
    one's first open made stayed, one per space ever used."""
    ctx = world.ctx
    pool = ctx.pool

    def entries() -> tuple[int, int, int, int]:
        return len(pool._open), len(pool._where), len(pool.records), len(pool._opening)

    before = entries()
    for i in range(5):
        space = await ctx.spaces.create(
            world.bob,
            f"gone{i}",
            {"type": "Local", "path": str(tmp_path / f"gone{i}")},
            None,
            "jcs",
        )
        await pool.get(space)
        await ctx.spaces.delete(world.bob, space.user_space_id)
    assert entries() == before


# --- found by the review of the prebuilt hold (8310bda) ----------------------


async def test_holding_no_spaces_holds_nothing(world: World) -> None:
    """The prebuilt statement for no spaces is an expanding IN, which the
    driver's SQLite was handed as text and refused (a syntax error); the
    statement built per call took an empty list."""
    async with world.ctx.db.write() as conn:
        await spacestate.hold_locations(conn, [])


async def test_a_hold_keeps_a_move_waiting_until_its_intent_commits(
    world: World, tmp_path: Path
) -> None:
    """PostgreSQL: the hold's FOR KEY SHARE, sent although the statement is
    prebuilt (in a write it runs through SQLAlchemy), is what a move's FOR
    UPDATE waits for between the hold and the intent's insert. Nothing else
    in this file failed with the lock removed: the intent's own foreign key
    locks the row only once its blocks are inserted."""
    postgresql_only(world)
    ctx = world.ctx
    space = await bobs_space(world, tmp_path)
    async with ctx.db.write() as conn:
        await spacestate.hold_locations(conn, [space])
        move = asyncio.ensure_future(
            ctx.spaces.update(world.bob, space.user_space_id, SpaceChanges(root_path="second"))
        )
        await until_blocked(world, [move], 1)
        assert not move.done()
    assert (await move).root_path == "second"
