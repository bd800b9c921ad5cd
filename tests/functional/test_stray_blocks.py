"""Blocks let go of while their space could not delete them are owed
(``meta.strays``) and deleted by GC once the space answers again: by GC
itself, by repair moving blocks off an Unavailable space, and by a failed
upload. Before, each was forgotten with its rows and stayed in the user's
storage until an ``fsck --repair``."""

from __future__ import annotations

import asyncio
import os

import pytest
from jcs_helpers import Api

from jointcloud.core.authz import Principal
from jointcloud.core.fsck import fsck
from jointcloud.errors import SpaceUnavailable
from jointcloud.jobs.registry import build_runner
from jointcloud.jobs.repair import RepairResult
from jointcloud.meta import accounts, strays
from jointcloud.meta.rows import now
from jointcloud.spaces.local import LocalSpace, LocalWriter

REP = {"type": "rep", "repCount": 2}


async def owed(api: Api) -> int:
    async with api.ctx.db.read() as conn:
        return await strays.count(conn)


async def set_state(api: Api, space_id: int, state: str) -> None:
    async with api.ctx.db.write() as conn:
        await accounts.update_space(conn, space_id, state=state)
    await api.ctx.pool.forget(space_id)


def under(space_id: int, api: Api) -> str:
    return str(api.spaces[space_id].resolve())


def failing_deletes_in(monkeypatch: pytest.MonkeyPatch, root: str) -> None:
    """Deletes of blocks under ``root`` fail, as on a cloud that errs."""
    real = LocalSpace.delete

    async def delete(self: LocalSpace, key: str) -> None:
        if str(self.root).startswith(root):
            raise SpaceUnavailable(f"injected delete failure (key {key!r})")
        await real(self, key)

    monkeypatch.setattr(LocalSpace, "delete", delete)


async def deleted_on_a_failing_space(api: Api, monkeypatch: pytest.MonkeyPatch) -> int:
    """A rep(2) object, a copy on each of two spaces, deleted; the second
    space (whose id this returns) fails deletes from now on."""
    [other] = await api.add_spaces(1)
    pkg = await api.package("rep", REP)
    obj = await api.upload_one(pkg, "a.bin", os.urandom(100_000))
    files = api.block_files()
    assert all(len(files[s]) == 1 for s in files), files
    failing_deletes_in(monkeypatch, under(other, api))
    await api.post("/v1/object/delete", {"objectIDs": [obj["objectID"]]})
    return other


async def test_gc_owes_a_block_it_cannot_delete_and_deletes_it_later(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await deleted_on_a_failing_space(api, monkeypatch)

    report = await api.gc()
    assert (report.layouts, report.blocks, report.owed) == (1, 1, 1)
    assert await owed(api) == 1
    assert sorted(len(f) for f in api.block_files().values()) == [0, 1]
    assert len(api.block_files()[other]) == 1  # still there, remembered

    report = await api.gc()  # the space still fails: still owed
    assert (report.strays, await owed(api)) == (0, 1)
    # fsck sees an orphan (once older than the GC delay), and says GC will delete it
    [left] = api.block_files()[other]
    os.utime(left, (1, 1))
    [orphan] = (await fsck(api.ctx)).findings
    assert (orphan.kind, orphan.detail) == ("orphan", "owed: GC deletes it")
    monkeypatch.undo()
    report = await api.gc()
    assert report.strays == 1
    assert await owed(api) == 0
    assert api.all_block_files() == []


async def test_repair_owes_the_old_block_of_an_unavailable_space(api: Api) -> None:
    await api.add_spaces(2)
    pkg = await api.package("rep", REP)
    data = os.urandom(300_000)
    obj = await api.upload_one(pkg, "r.bin", data)
    user = await api.ctx.accounts.authenticate(api.client.headers["Authorization"].split()[1])
    content = await api.ctx.objects.open(Principal.user(user.user_id), obj["objectID"])
    [(_, rec)] = content.parts
    down = rec.blocks[0].user_space_id
    [old_file] = api.block_files()[down]
    await set_state(api, down, "Unavailable")

    result = await build_runner(api.ctx).run_now("repair")
    assert isinstance(result, RepairResult)
    assert [o.status for o in result.outcomes] == ["repaired"]
    assert old_file.exists()  # an Unavailable space is not asked
    assert await owed(api) == 1
    assert (await api.gc()).strays == 0  # not while it is Unavailable
    assert old_file.exists()

    await set_state(api, down, "Normal")
    assert (await api.gc()).strays == 1
    assert not old_file.exists()
    assert await owed(api) == 0
    assert await api.download(obj["objectID"]) == data


async def test_a_failed_upload_owes_the_blocks_it_could_not_delete(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One copy committed (on ``first``), the other's commit failed: the committed one is
    deleted again, and when that fails too it is owed, not forgotten."""
    [first, _] = await api.add_spaces(2)
    pkg = await api.package("rep", REP)
    real_commit = LocalWriter.commit

    committed = asyncio.Event()

    async def commit(self: LocalWriter) -> None:
        if str(self._space.root).startswith(under(first, api)):
            await real_commit(self)
            committed.set()
            return
        async with asyncio.timeout(30):
            await committed.wait()  # fails once the other copy is in place
        raise SpaceUnavailable("injected commit failure")

    monkeypatch.setattr(LocalWriter, "commit", commit)
    failing_deletes_in(monkeypatch, under(first, api))
    r = await api.upload_raw(
        [
            ("info", None, b'{"packageID": %d, "affinity": %d}' % (pkg, first)),
            ("files", "x.bin", os.urandom(6 << 20)),  # streamed, not batched
        ]
    )
    assert r.status_code >= 400, r.text
    assert await api.objects(pkg) == []
    left = api.block_files()[first]
    assert len(left) == 1  # committed, and its delete failed
    # owed: that one, and the other copy, whose commit was cut short and
    # might still land after its delete (a cloud holding the request)
    assert await owed(api) == 2
    monkeypatch.undo()
    assert (await api.gc()).strays == 2
    assert api.all_block_files() == []


async def test_a_deleted_space_takes_its_debts_with_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await deleted_on_a_failing_space(api, monkeypatch)
    assert (await api.gc()).owed == 1
    await api.post("/v1/userSpace/delete", {"userSpaceID": other})
    assert await owed(api) == 0


async def test_a_deleted_space_deletes_the_blocks_it_owes_first(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drain commits a block's move before it deletes the old copy; a
    delete of the drained space in between forgot that debt, and the copy
    stayed in the user's storage for good (found by a review of the e2e
    drain test). Any debt the space can still pay goes before it does."""
    other = await deleted_on_a_failing_space(api, monkeypatch)
    assert (await api.gc()).owed == 1
    [left] = api.block_files()[other]
    monkeypatch.undo()  # the space answers again; GC has not been back
    await api.post("/v1/userSpace/delete", {"userSpaceID": other})
    assert await owed(api) == 0
    assert not left.exists()
    assert api.all_block_files() == []


async def test_a_deleted_space_whose_cloud_errs_slowly_is_not_asked_its_every_debt(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A space that owes many blocks and whose deletes fail (after a while,
    as a throttled cloud's): its delete, one request, sent them all, 16 at
    a time (1,000 of 4 s each: over four minutes). It stops at its first
    failure, as GC does."""
    [other] = await api.add_spaces(1)
    async with api.ctx.db.write() as conn:
        await strays.owe(conn, [(other, f"gone/{i:04}") for i in range(200)], now())
    root = under(other, api)
    asked: list[str] = []

    async def delete(self: LocalSpace, key: str) -> None:
        assert str(self.root).startswith(root)
        asked.append(key)
        await asyncio.sleep(0.05)
        raise SpaceUnavailable("throttled")

    monkeypatch.setattr(LocalSpace, "delete", delete)
    await api.post("/v1/userSpace/delete", {"userSpaceID": other})
    assert len(asked) == 1
    assert await owed(api) == 0


async def test_a_space_whose_deletes_hang_does_not_hold_gc(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GC deletes blocks inside its write transaction (on SQLite the one
    writer lock): a cloud that hangs held it, and every upload, for the
    client library's minute per block. A delete not answered in time is
    owed, the space is not asked again for a while, and the health job is
    asked to probe it."""
    from jointcloud.core import blockdeletes

    [other] = await api.add_spaces(1)
    pkg = await api.package("rep", REP)
    objs = [await api.upload_one(pkg, f"{i}.bin", os.urandom(50_000)) for i in range(4)]
    root = under(other, api)
    asked: list[str] = []
    real = LocalSpace.delete

    async def delete(self: LocalSpace, key: str) -> None:
        if str(self.root).startswith(root):
            asked.append(key)
            await asyncio.Event().wait()  # a cloud that never answers
        await real(self, key)

    monkeypatch.setattr(LocalSpace, "delete", delete)
    monkeypatch.setattr(blockdeletes, "DELETE_SECONDS", 0.2)
    await api.post("/v1/object/delete", {"objectIDs": [o["objectID"] for o in objs]})
    async with asyncio.timeout(20):
        report = await api.gc()
    assert (report.layouts, report.blocks, report.owed) == (4, 4, 4)
    assert len(asked) == 1  # then the space was left alone
    await api.ctx.health.close()
    assert api.ctx.health.wakes == 1


async def test_a_space_that_keeps_failing_holds_up_no_other_debts(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jointcloud.core import gc

    [first, second] = await api.add_spaces(2)
    pkg = await api.package("rep", {"type": "rep", "repCount": 3})
    monkeypatch.setattr(gc, "STRAY_BATCH", 1)
    failing_deletes_in(monkeypatch, under(first, api))
    obj = await api.upload_one(pkg, "a.bin", os.urandom(100_000))
    await api.post("/v1/object/delete", {"objectIDs": [obj["objectID"]]})
    # second fails too for this pass: both are owed, first's debt the older
    failing_deletes_in(monkeypatch, under(second, api))
    assert (await api.gc()).owed == 2
    monkeypatch.undo()
    monkeypatch.setattr(gc, "STRAY_BATCH", 1)
    failing_deletes_in(monkeypatch, under(first, api))  # first keeps failing
    assert (await api.gc()).strays == 1
    assert api.block_files()[second] == [] and len(api.block_files()[first]) == 1
    assert await owed(api) == 1
