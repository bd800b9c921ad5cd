"""Degraded reads, scrub and repair end to end over Local spaces: flipped
bytes and deleted block files are read around, queued, found by scrub and
rebuilt by repair; too few blocks fail with found/needed; blocks on an
Unavailable space are moved by the repair job's scan."""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from jcs_helpers import Api, expect_error

from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.core.fsck import fsck
from jointcloud.core.models import LayoutRecord
from jointcloud.core.repair import GONE, HEALTHY, NO_SPACES, OK, REPAIRED, UNRECOVERABLE
from jointcloud.jobs.registry import build_runner, job_board, scrub_services
from jointcloud.jobs.repair import RepairJob, RepairResult
from jointcloud.jobs.runner import JobRunner
from jointcloud.jobs.scrub import ScrubJob, ScrubResult
from jointcloud.meta import accounts, layouts, repairs
from jointcloud.meta import jobs as jobs_repo
from jointcloud.meta.rows import now

EC = {"type": "ec", "k": 4, "n": 6, "chunkSize": 4096}
REP = {"type": "rep", "repCount": 2}


@dataclass
class Stored:
    object_id: int
    data: bytes
    layout: LayoutRecord


async def user_id(api: Api) -> int:
    user = await api.ctx.accounts.authenticate(api.client.headers["Authorization"].split()[1])
    return user.user_id


async def put(api: Api, package_id: int, path: str, data: bytes) -> Stored:
    obj = await api.upload_one(package_id, path, data)
    content = await api.ctx.objects.open(Principal.user(await user_id(api)), obj["objectID"])
    [(_, rec)] = content.parts
    return Stored(obj["objectID"], data, rec)


async def reload(ctx: Context, layout_id: int) -> LayoutRecord:
    async with ctx.db.read() as conn:
        return (await layouts.load(conn, [layout_id]))[layout_id]


def block_path(api: Api, space_id: int, key: str) -> Path:
    return api.spaces[space_id] / "jcs" / key


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


async def queued(ctx: Context) -> set[int]:
    await ctx.repair.flush()
    async with ctx.db.read() as conn:
        return {i.layout_id for i in await repairs.due(conn, 1000, at=_far_future())}


def _far_future() -> datetime:
    """A time at which every queued item is due, back-off or not."""
    return now() + timedelta(days=1)


async def run(ctx: Context, name: str) -> object:
    return await build_runner(ctx).run_now(name)


async def repair_once(ctx: Context) -> RepairResult:
    result = await run(ctx, "repair")
    assert isinstance(result, RepairResult)
    return result


async def scrub_once(ctx: Context) -> ScrubResult:
    result = await run(ctx, "scrub")
    assert isinstance(result, ScrubResult)
    return result


async def assert_reads(api: Api, stored: Stored, seed: int, ranges: int = 12) -> None:
    assert await api.download(stored.object_id) == stored.data
    rng = random.Random(seed)
    size = len(stored.data)
    for _ in range(ranges):
        off = rng.randrange(size)
        length = rng.randint(1, 3 * 16384)
        got = await api.download(stored.object_id, offset=off, length=length)
        assert got == stored.data[off : off + length], (off, length)


async def assert_whole(ctx: Context, layout_id: int) -> None:
    health = await ctx.repair.inspect(layout_id)
    assert health.healthy, health
    assert [b.state for b in health.blocks] == [OK] * len(health.blocks)
    rec = await reload(ctx, layout_id)
    spaces = [b.user_space_id for b in rec.blocks]
    assert len(set(spaces)) == len(spaces), "two blocks of one layout in one space"


async def test_flipped_bytes_are_read_around_scrubbed_and_repaired(api: Api) -> None:
    await api.add_spaces(6)  # 7 spaces: ec(4,6) leaves one free
    rep_pkg = await api.package("rep", REP)
    ec_pkg = await api.package("ec", EC)
    rep = await put(api, rep_pkg, "r.bin", os.urandom(2 * 4 * 1024 * 1024 + 5000))
    ec = await put(api, ec_pkg, "e.bin", os.urandom(7 * 4 * 4096 + 1234))
    originals = {
        (s.layout.layout_id, b.index): block_path(api, b.user_space_id, b.key).read_bytes()
        for s in (rep, ec)
        for b in s.layout.blocks
    }
    # rep: chunk 1 of replica 0; ec: chunk 2 of data fragment 1 and chunk 0 of parity 4
    flipped = [
        (rep.layout, 0, rep.layout.chunk_len + 100),
        (ec.layout, 1, 2 * ec.layout.chunk_len + 200),
        (ec.layout, 4, 50),
    ]
    expected_bad = set()
    for rec, index, at in flipped:
        b = rec.blocks[index]
        flip(block_path(api, b.user_space_id, b.key), at)
        expected_bad.add((rec.layout_id, index, b.user_space_id, b.key))

    # degraded reads stay byte-identical and queue the layouts
    await assert_reads(api, rep, seed=1)
    await assert_reads(api, ec, seed=2)
    assert await queued(api.ctx) == {rep.layout.layout_id, ec.layout.layout_id}

    # scrub reports exactly the flipped blocks
    scrubbed = await scrub_once(api.ctx)
    got = {(b.layout_id, b.index, b.space_id, b.key) for b in scrubbed.bad}
    assert got == expected_bad
    assert {b.state for b in scrubbed.bad} == {"corrupt"}
    assert scrubbed.complete and not scrubbed.more
    assert "8 blocks of 2 layouts" in scrubbed.message
    assert "3 bad (0 missing, 3 corrupt)" in scrubbed.message

    # repair fixes them: the rebuilt blocks are byte-identical to the originals
    fixed = await repair_once(api.ctx)
    assert {o.layout_id: (o.status, o.repaired) for o in fixed.outcomes} == {
        rep.layout.layout_id: (REPAIRED, (0,)),
        ec.layout.layout_id: (REPAIRED, (1, 4)),
    }
    assert "repaired 3 blocks in 2 layouts" in fixed.message and not fixed.more
    for s in (rep, ec):
        await assert_whole(api.ctx, s.layout.layout_id)
        rec = await reload(api.ctx, s.layout.layout_id)
        for b in rec.blocks:
            path = block_path(api, b.user_space_id, b.key)
            assert path.read_bytes() == originals[(rec.layout_id, b.index)]
        await assert_reads(api, s, seed=3)
    # the flipped files are gone, and nothing else is left behind
    for _, _, space_id, key in expected_bad:
        assert not block_path(api, space_id, key).exists()
    assert len(api.all_block_files()) == 2 + 6
    async with api.ctx.db.read() as conn:
        assert await repairs.count(conn) == 0
        assert await layouts.garbage(conn, _far_future()) == []  # no repair intent left

    again = await repair_once(api.ctx)
    assert again.outcomes == () and again.message.startswith("nothing due")
    rescrub = await scrub_once(api.ctx)
    assert rescrub.bad == () and "0 bad" in rescrub.message


async def test_lost_fragment_is_rebuilt_alone_on_a_free_space(api: Api) -> None:
    [*_, free] = await api.add_spaces(6)
    pkg = await api.package("ec", EC)
    ec = await put(api, pkg, "e.bin", os.urandom(5 * 4 * 4096 + 77))
    assert free not in {b.user_space_id for b in ec.layout.blocks}
    lost = ec.layout.blocks[2]
    block_path(api, lost.user_space_id, lost.key).unlink()
    others = {
        b.index: block_path(api, b.user_space_id, b.key).stat()
        for b in ec.layout.blocks
        if b.index != 2
    }
    await assert_reads(api, ec, seed=4)
    assert await queued(api.ctx) == {ec.layout.layout_id}

    fixed = await repair_once(api.ctx)
    [outcome] = fixed.outcomes
    assert (outcome.status, outcome.repaired) == (REPAIRED, (2,))
    [move] = outcome.moves
    assert (move.old_space, move.new_space) == (lost.user_space_id, free)
    rec = await reload(api.ctx, ec.layout.layout_id)
    assert rec.blocks[2].user_space_id == free
    for b in rec.blocks:
        if b.index == 2:
            continue
        st = block_path(api, b.user_space_id, b.key).stat()
        assert (st.st_ino, st.st_mtime_ns) == (others[b.index].st_ino, others[b.index].st_mtime_ns)
    await assert_whole(api.ctx, ec.layout.layout_id)
    await assert_reads(api, ec, seed=5)


async def test_lost_fragment_is_rewritten_in_place_when_no_space_is_free(api: Api) -> None:
    await api.add_spaces(5)  # exactly the six spaces ec(4,6) needs
    pkg = await api.package("ec", EC)
    ec = await put(api, pkg, "e.bin", os.urandom(3 * 4 * 4096))
    lost = ec.layout.blocks[5]
    block_path(api, lost.user_space_id, lost.key).unlink()
    await api.ctx.repair.enqueue([ec.layout.layout_id], "test")
    [outcome] = (await repair_once(api.ctx)).outcomes
    assert (outcome.status, outcome.repaired) == (REPAIRED, (5,))
    rec = await reload(api.ctx, ec.layout.layout_id)
    new = rec.blocks[5]
    assert new.user_space_id == lost.user_space_id and new.key != lost.key
    assert block_path(api, new.user_space_id, new.key).is_file()
    await assert_whole(api.ctx, ec.layout.layout_id)
    await assert_reads(api, ec, seed=6)


async def test_too_many_lost_blocks_fail_reads_and_repair(api: Api) -> None:
    await api.add_spaces(6)
    pkg = await api.package("ec", EC)
    ec = await put(api, pkg, "e.bin", os.urandom(2 * 4 * 4096 + 9))
    for b in ec.layout.blocks[:3]:
        block_path(api, b.user_space_id, b.key).unlink()
    before = sorted(api.all_block_files())

    r = await api.client.get("/v1/object/download", params={"objectID": ec.object_id})
    message = expect_error(r, "OperationFailed", 503)
    assert "found 3 of 4 blocks needed" in message
    assert await queued(api.ctx) == {ec.layout.layout_id}

    result = await repair_once(api.ctx)
    [outcome] = result.outcomes
    assert outcome.status == UNRECOVERABLE and not outcome.finished
    assert "cannot repair" in outcome.message
    assert "found 3 of 4 blocks needed" in outcome.message
    assert "1 cannot repair (retried later)" in result.message
    assert result.failed == 1  # jcs admin repair exits 1
    assert sorted(api.all_block_files()) == before  # nothing written
    async with api.ctx.db.read() as conn:
        [item] = await repairs.due(conn, 10, at=_far_future())
        assert item.attempts == 1  # stays queued, retried after a back-off
        assert await repairs.due(conn, 10) == []
    assert (await repair_once(api.ctx)).outcomes == ()


async def test_an_empty_object_whose_blocks_are_all_gone_is_rebuilt(api: Api) -> None:
    # Its blocks hold no byte, so it reads whole with none of them: repair
    # called it unrecoverable ("found 0 of 2 blocks needed") and retried it
    # for ever, and fsck reported it lost, with its reads answering 200.
    pkg = await api.package("ec", EC)
    await api.add_spaces(5)
    empty = await put(api, pkg, "empty", b"")
    for b in empty.layout.blocks:
        block_path(api, b.user_space_id, b.key).unlink()
    assert await api.download(empty.object_id) == b""

    checked = await fsck(api.ctx)
    assert checked.count("lost") == 0 and checked.count("under-replicated") == 1
    assert (await scrub_once(api.ctx)).bad  # found missing, and queued
    [outcome] = (await repair_once(api.ctx)).outcomes
    assert (outcome.status, outcome.repaired) == (REPAIRED, tuple(range(6)))
    await assert_whole(api.ctx, empty.layout.layout_id)
    assert (await fsck(api.ctx, deep=True)).clean
    assert await api.download(empty.object_id) == b""


async def test_unavailable_space_is_moved_by_the_scan(api: Api) -> None:
    await api.add_spaces(6)
    rep_pkg = await api.package("rep", REP)
    ec_pkg = await api.package("ec", EC)
    rep = await put(api, rep_pkg, "r.bin", os.urandom(300_000))
    ec = await put(api, ec_pkg, "e.bin", os.urandom(4 * 4 * 4096 + 1))
    shared = {b.user_space_id for b in rep.layout.blocks} & {
        b.user_space_id for b in ec.layout.blocks
    }
    down = min(shared)
    untouched = {p: p.stat().st_mtime_ns for p in api.block_files()[down]}
    async with api.ctx.db.write() as conn:
        await accounts.update_space(conn, down, state="Unavailable")
    await api.ctx.pool.forget(down)

    health = await api.ctx.repair.inspect(ec.layout.layout_id)
    assert [b.state for b in health.blocks if b.space_id == down] == ["unreachable"]

    result = await repair_once(api.ctx)
    assert result.queued_by_scan == 2
    assert {o.layout_id: o.status for o in result.outcomes} == {
        rep.layout.layout_id: REPAIRED,
        ec.layout.layout_id: REPAIRED,
    }
    async with api.ctx.db.read() as conn:
        assert await accounts.count_blocks_in_space(conn, down) == 0
    for s in (rep, ec):
        rec = await reload(api.ctx, s.layout.layout_id)
        assert down not in {b.user_space_id for b in rec.blocks}
        await assert_whole(api.ctx, s.layout.layout_id)
        await assert_reads(api, s, seed=7)
    # the Unavailable space was not touched
    assert {p: p.stat().st_mtime_ns for p in api.block_files()[down]} == untouched
    # a new scan finds nothing to do
    job = RepairJob(api.ctx.repair, 30.0)
    assert (await job.run_once(lambda *a: None)).queued_by_scan == 0


async def test_too_few_spaces_is_reported_and_retried(api: Api) -> None:
    await api.add_spaces(1)  # two spaces, both used by rep(2)
    pkg = await api.package("rep", REP)
    rep = await put(api, pkg, "r.bin", os.urandom(5000))
    down = rep.layout.blocks[1].user_space_id
    async with api.ctx.db.write() as conn:
        await accounts.update_space(conn, down, state="Unavailable")
    await api.ctx.pool.forget(down)
    [outcome] = (await repair_once(api.ctx)).outcomes
    assert outcome.status == NO_SPACES and not outcome.finished
    assert "needs 2 user spaces" in outcome.message
    assert await api.download(rep.object_id) == rep.data
    # a new space arrives: the retry (after its back-off) moves the block there
    [new] = await api.add_spaces(1)
    async with api.ctx.db.read() as conn:
        [item] = await repairs.due(conn, 10, at=_far_future())
        assert item.attempts == 1
    outcome = await api.ctx.repair.repair(rep.layout.layout_id)
    assert outcome.status == REPAIRED
    assert outcome.moves[0].new_space == new


async def test_failed_rebuild_leaves_nothing(api: Api) -> None:
    [*_, free] = await api.add_spaces(3)
    pkg = await api.package("rep", REP)
    rep = await put(api, pkg, "r.bin", os.urandom(40_000))
    assert free not in {b.user_space_id for b in rep.layout.blocks}
    # every space a new block could go to fails its writes (a file where the
    # blocks directory should be)
    holders = {b.user_space_id for b in rep.layout.blocks}
    for sid, path in api.spaces.items():
        if sid not in holders:
            shutil.rmtree(path / "jcs" / "blocks", ignore_errors=True)
            (path / "jcs").mkdir(parents=True, exist_ok=True)
            (path / "jcs" / "blocks").write_bytes(b"not a directory")
    lost = rep.layout.blocks[0]
    block_path(api, lost.user_space_id, lost.key).unlink()
    before = sorted(api.all_block_files())
    outcome = await api.ctx.repair.repair(rep.layout.layout_id)
    assert outcome.status == "failed" and not outcome.finished, outcome
    assert "failed" in outcome.message
    assert sorted(api.all_block_files()) == before
    async with api.ctx.db.read() as conn:
        assert await layouts.garbage(conn, _far_future()) == []  # intent rows dropped
    assert await reload(api.ctx, rep.layout.layout_id) == rep.layout


async def test_repair_of_healthy_and_deleted_layouts(api: Api) -> None:
    pkg = await api.package("none")
    s = await put(api, pkg, "a.txt", b"hello")
    assert (await api.ctx.repair.repair(s.layout.layout_id)).status == HEALTHY
    await api.post("/v1/object/delete", {"objectIDs": [s.object_id]})
    assert (await api.ctx.repair.repair(s.layout.layout_id)).status == GONE
    await api.gc()
    assert (await api.ctx.repair.repair(s.layout.layout_id)).status == GONE
    assert (await api.ctx.repair.inspect(s.layout.layout_id)).exists is False


async def test_scrub_resumes_from_its_cursor(api: Api) -> None:
    await api.add_spaces(1)
    pkg = await api.package("rep", REP)
    objs = [await put(api, pkg, f"o{i}", os.urandom(1000 + i)) for i in range(5)]
    bad = objs[3].layout.blocks[1]
    block_path(api, bad.user_space_id, bad.key).unlink()
    job = ScrubJob(scrub_services(api.ctx), 3600.0, 50.0, max_layouts=2)
    runner = JobRunner(job_board(api.ctx), [job])
    passes = []
    while True:
        result = await runner.run_now("scrub")
        assert isinstance(result, ScrubResult)
        passes.append(result)
        async with api.ctx.db.read() as conn:
            cursor = await jobs_repo.get_cursor(conn, "scrub")
        if not result.more:
            assert cursor is None  # the sweep ended: the next one starts over
            break
        assert cursor is not None
    assert [p.done for p in passes] == [2, 2, 1]
    assert [len(p.bad) for p in passes] == [0, 1, 0]
    assert passes[1].bad[0].state == "missing"
    assert "sweep complete: 10 blocks of 5 layouts, 1 bad" in passes[-1].message
    assert await queued(api.ctx) == {objs[3].layout.layout_id}


async def test_degraded_reads_are_coalesced(api: Api) -> None:
    await api.add_spaces(1)
    pkg = await api.package("rep", REP)
    s = await put(api, pkg, "r.bin", os.urandom(10_000))
    b = s.layout.blocks[0]
    block_path(api, b.user_space_id, b.key).unlink()
    for _ in range(5):
        assert await api.download(s.object_id) == s.data
    assert await queued(api.ctx) == {s.layout.layout_id}
    async with api.ctx.db.read() as conn:
        [item] = await repairs.due(conn, 10)
    assert item.reason.startswith("read skipped block")
