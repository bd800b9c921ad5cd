"""Space health (Normal ↔ Unavailable), drain of a space, and redundancy change
(re-encoding in the background), through the v1 API and the jobs themselves."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jcs_helpers import Api, expect_error, full_hash
from sqlalchemy import func, select

from jointcloud.core.models import UserSpace
from jointcloud.core.placement import choose_spaces
from jointcloud.errors import InsufficientSpaces
from jointcloud.jobs.base import Job, JobResult
from jointcloud.jobs.drain import DrainJob
from jointcloud.jobs.health import HealthJob
from jointcloud.jobs.recode import RecodeJob
from jointcloud.jobs.registry import (
    build_runner,
    drain_blocks,
    job_board,
    probe_spaces,
    recode_services,
)
from jointcloud.jobs.runner import JobRunner
from jointcloud.meta import tables as t
from jointcloud.redundancy.policy import NonePolicy, RepPolicy

NONE = {"type": "none"}
REP2 = {"type": "rep", "repCount": 2}
REP3 = {"type": "rep", "repCount": 3}
EC23 = {"type": "ec", "k": 2, "n": 3, "chunkSize": 65536}


async def run(api: Api, job: Job, *, until_done: bool = True) -> list[JobResult]:
    """Passes of ``job`` through the runner (leases and all), like
    ``jcs admin <job> --once [--until-done]``."""
    runner = JobRunner(job_board(api.ctx), [job])
    results = [await runner.run_now(job.name)]
    while until_done and results[-1].more:
        results.append(await runner.run_now(job.name))
    return results


async def state_of(api: Api, space_id: int) -> str:
    return str((await api.get("/v1/userSpace/get", userSpaceID=space_id))["userSpace"]["state"])


async def db_blocks(api: Api) -> list[tuple[int, int, int, str]]:
    """(layout, index, space, key) of every block row, with the layout's state."""
    async with api.ctx.db.read() as conn:
        rows = await conn.execute(
            select(t.blocks.c.layout_id, t.blocks.c.idx, t.blocks.c.user_space_id, t.blocks.c.key)
        )
        return [(r.layout_id, r.idx, r.user_space_id, r.key) for r in rows]


async def assert_disk_matches_db(api: Api) -> None:
    """Every block file is a block row and the reverse: nothing leaked, nothing lost."""
    on_disk = {str(p) for p in api.all_block_files()}
    in_db = {str(api.spaces[sid] / "jcs" / key) for _, _, sid, key in await db_blocks(api)}
    assert on_disk == in_db


async def layouts_of(api: Api, object_id: int) -> list[int]:
    async with api.ctx.db.read() as conn:
        rows = await conn.execute(
            select(t.object_parts.c.layout_id)
            .where(t.object_parts.c.object_id == object_id)
            .order_by(t.object_parts.c.seq)
        )
        return [int(r.layout_id) for r in rows]


async def spaces_of(api: Api, object_id: int) -> list[list[int]]:
    """Per layout of the object: the spaces of its blocks, by block index."""
    blocks = await db_blocks(api)
    return [
        [sid for lid, _, sid, _ in sorted(b for b in blocks if b[0] == layout)]
        for layout in await layouts_of(api, object_id)
    ]


async def pending_layouts(api: Api) -> int:
    async with api.ctx.db.read() as conn:
        q = select(func.count()).select_from(t.layouts).where(t.layouts.c.state == "pending")
        return int((await conn.execute(q)).scalar_one())


def data(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


# --- health ------------------------------------------------------------------


def _space(sid: int, state: str, latency: float | None = None) -> UserSpace:
    return UserSpace(
        user_space_id=sid,
        user_id=1,
        name=f"s{sid}",
        storage={"type": "Local", "path": f"/x/{sid}"},
        sealed_credential=None,
        root_path="jcs",
        state=state,
        create_time=datetime.now(UTC),
        latency_ms=latency,
    )


def test_placement_only_picks_normal_spaces() -> None:
    spaces = [
        _space(1, "Unavailable", 1.0),
        _space(2, "Draining", 2.0),
        _space(3, "Normal", 9.0),
        _space(4, "Normal", 3.0),
    ]
    assert [s.user_space_id for s in choose_spaces(spaces, RepPolicy(2), None)] == [4, 3]
    # Affinity to a space that is not Normal is not honoured, nor an error.
    assert [s.user_space_id for s in choose_spaces(spaces, NonePolicy(), 2)] == [4]
    with pytest.raises(InsufficientSpaces, match="needs 3 usable user spaces, but only 2 of"):
        choose_spaces(spaces, RepPolicy(3), None)


async def test_health_marks_unusable_space_unavailable_and_back(api: Api) -> None:
    [extra] = await api.add_spaces(1)
    pkg = await api.package("p", REP2)
    before = await api.upload_one(pkg, "a.bin", b"a" * 5000)  # the backend is open and cached
    job = HealthJob(probe_spaces(api.ctx), 30)

    [result] = await run(api, job)
    assert result.message == "probed 2 user spaces: 2 ok" and result.done == 2
    listed = (await api.get("/v1/userSpace/list"))["userSpaces"]
    assert {s["state"] for s in listed} == {"Normal"}
    assert all(isinstance(s["latencyMs"], float) and s["latencyMs"] > 0 for s in listed)

    # Its disk goes away (renamed here; an unmount leaves an empty mount
    # point): the probe fails and does not make the directory again, where
    # blocks would have landed on the file system beneath.
    path = api.spaces[extra]
    away = path.with_name(path.name + ".unmounted")
    path.rename(away)
    [result] = await run(api, job)
    assert not path.exists()
    assert "1 failing" in result.message
    assert f"(id {extra}) Normal -> Unavailable (user space test failed at step" in result.message
    assert await state_of(api, extra) == "Unavailable"
    assert api.ctx.pool.records[extra].state == "Unavailable"  # this process knows at once

    # Placement skips it: rep(2) needs two usable spaces and one is left.
    r = await api.upload_raw(
        [("info", None, b'{"packageID": %d}' % pkg), ("files", "b.txt", b"hello")]
    )
    msg = expect_error(r, "OperationFailed", 503)
    assert "needs 2 usable user spaces, but only 1 of your 2 are available" in msg
    # A none upload still works, on the healthy space.
    one = await api.upload_one(pkg, "n.txt", b"solo", redundancy=NONE)
    assert await spaces_of(api, one["objectID"]) != [[extra]]
    # The rep(2) object still reads from its surviving copy.
    assert await api.download(before["objectID"]) == b"a" * 5000

    away.rename(path)  # the disk is back
    [result] = await run(api, job)
    assert "Unavailable -> Normal" in result.message
    assert await state_of(api, extra) == "Normal"
    obj = await api.upload_one(pkg, "b.txt", b"hello")
    assert await api.download(obj["objectID"]) == b"hello"
    assert sorted(sid for [sids] in [await spaces_of(api, obj["objectID"])] for sid in sids) == (
        sorted(api.spaces)
    )


async def test_health_never_touches_draining(api: Api) -> None:
    [extra] = await api.add_spaces(1)
    await api.post("/v1/userSpace/drain", {"userSpaceID": extra})
    path = api.spaces[extra]
    shutil.rmtree(path, ignore_errors=True)
    path.write_bytes(b"gone")
    [result] = await run(api, HealthJob(probe_spaces(api.ctx), 30))
    assert "1 failing" in result.message and "->" not in result.message
    assert await state_of(api, extra) == "Draining"
    path.unlink()
    path.mkdir()
    await run(api, HealthJob(probe_spaces(api.ctx), 30))
    assert await state_of(api, extra) == "Draining"


async def test_health_probe_times_out(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import jointcloud.core.health as health

    async def stuck(space: Any) -> float:
        await asyncio.Event().wait()  # never answers
        return 0.0

    monkeypatch.setattr(health, "probe", stuck)
    [result] = await run(api, HealthJob(probe_spaces(api.ctx), 30, probe_timeout=0.05))
    assert "Normal -> Unavailable" in result.message
    [sid] = list(api.spaces)
    assert await state_of(api, sid) == "Unavailable"


# --- drain -------------------------------------------------------------------


async def test_drain_moves_every_block_then_delete_succeeds(api: Api) -> None:
    spaces = await api.add_spaces(3)  # four in all
    victim = spaces[0]
    pkg = await api.package("d")
    contents = {
        "none.bin": (data(300_000, 1), NONE),
        "rep.bin": (data(300_000, 2), REP2),
        "ec.bin": (data(300_000, 3), EC23),
        "empty": (b"", EC23),
    }
    objs = {
        path: await api.upload_one(pkg, path, body, redundancy=policy, affinity=victim)
        for path, (body, policy) in contents.items()
    }
    for o in objs.values():
        assert all(victim in sids for sids in await spaces_of(api, o["objectID"]))
    assert len(api.block_files()[victim]) == 4

    got = await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    assert got["userSpace"]["state"] == "Draining"
    assert await state_of(api, victim) == "Draining"
    msg = await api.fail(
        "POST", "/v1/userSpace/delete", "OperationFailed", 409, json={"userSpaceID": victim}
    )
    assert "still holds 4 blocks" in msg
    # New data avoids it, even when asked for.
    late = await api.upload_one(pkg, "late.bin", b"late", redundancy=EC23, affinity=victim)
    assert victim not in (await spaces_of(api, late["objectID"]))[0]

    results = await run(api, DrainJob(drain_blocks(api.ctx), 60))
    assert results[0].message == "moved 4 blocks off 1 draining space, 0 left", results
    assert results[-1].more is False
    assert api.block_files()[victim] == []
    assert await pending_layouts(api) == 0
    for path, o in objs.items():
        for sids in await spaces_of(api, o["objectID"]):
            assert victim not in sids and len(set(sids)) == len(sids)
        assert await api.download(o["objectID"]) == contents[path][0]
    await assert_disk_matches_db(api)

    [again] = await run(api, DrainJob(drain_blocks(api.ctx), 60))
    assert again.message == "moved 0 blocks off 1 draining space, 0 left"

    await api.post("/v1/userSpace/delete", {"userSpaceID": victim})
    shutil.rmtree(api.spaces.pop(victim))
    for path, o in objs.items():
        assert await api.download(o["objectID"]) == contents[path][0]
    [idle] = await run(api, DrainJob(drain_blocks(api.ctx), 60))
    assert idle.message == "no user space is draining"


async def test_drain_does_not_move_a_corrupt_block_repair_rebuilds_it(api: Api) -> None:
    # A flipped byte and a truncated block on the draining space: drain
    # copied both as they were, said "moved", and deleted the originals.
    spaces = await api.add_spaces(3)
    victim = spaces[0]
    pkg = await api.package("d")
    contents = {"rep.bin": (data(300_000, 1), REP2), "ec.bin": (data(300_000, 2), EC23)}
    objs = {
        path: await api.upload_one(pkg, path, body, redundancy=policy, affinity=victim)
        for path, (body, policy) in contents.items()
    }
    flipped, cut = api.block_files()[victim]
    raw = bytearray(flipped.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    flipped.write_bytes(bytes(raw))
    cut.write_bytes(cut.read_bytes()[:-100])

    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    [result] = await run(api, DrainJob(drain_blocks(api.ctx), 60), until_done=False)
    assert result.message.startswith("moved 0 blocks off 1 draining space, 2 left; 2 failed")
    assert "(2 layouts queued for repair)" in result.message
    assert "integrity check" in result.message and "truncated" in result.message
    assert await pending_layouts(api) == 0
    assert len(api.block_files()[victim]) == 2

    await build_runner(api.ctx).run_now("repair")
    assert api.block_files()[victim] == []
    for path, o in objs.items():
        assert await api.download(o["objectID"]) == contents[path][0]
        for sids in await spaces_of(api, o["objectID"]):
            assert victim not in sids and len(set(sids)) == len(sids)
    await assert_disk_matches_db(api)


async def test_drain_without_room_reports_and_waits(api: Api) -> None:
    [other] = await api.add_spaces(1)
    pkg = await api.package("r", REP2)
    o = await api.upload_one(pkg, "x", b"xyz" * 1000)
    await api.post("/v1/userSpace/drain", {"userSpaceID": other})
    [result] = await run(api, DrainJob(drain_blocks(api.ctx), 60))
    assert result.more is False
    assert "moved 0 blocks" in result.message and "1 left" in result.message
    assert "no Normal user space of its owner is free for it" in result.message
    assert await pending_layouts(api) == 0

    # Undrain: the space is Normal again and the object keeps both copies.
    got = await api.post("/v1/userSpace/update", {"userSpaceID": other, "state": "Normal"})
    assert got["userSpace"]["state"] == "Normal"
    assert await api.download(o["objectID"]) == b"xyz" * 1000

    # With a new space there is room: the drain finishes.
    await api.post("/v1/userSpace/drain", {"userSpaceID": other})
    [third] = await api.add_spaces(1)
    await run(api, DrainJob(drain_blocks(api.ctx), 60))
    assert sorted((await spaces_of(api, o["objectID"]))[0]) == sorted(
        s for s in api.spaces if s != other
    )
    assert await api.download(o["objectID"]) == b"xyz" * 1000
    assert third in api.spaces


async def test_blocks_that_cannot_move_do_not_hold_up_the_rest(api: Api) -> None:
    # A pass looks at a batch of blocks from the lowest layout on. Blocks
    # that cannot move (an ec(2,4) layout on all four spaces has nowhere to
    # go) filled every batch, and the rep(2) copy after them never moved.
    spaces = await api.add_spaces(3)  # four in all
    victim = spaces[0]
    pkg = await api.package("d")
    EC24 = {"type": "ec", "k": 2, "n": 4, "chunkSize": 4096}
    stuck = [
        await api.upload_one(pkg, f"ec{i}", data(20_000, i), redundancy=EC24) for i in range(2)
    ]
    body = data(20_000, 9)
    movable = await api.upload_one(pkg, "rep", body, redundancy=REP2, affinity=victim)
    assert victim in (await spaces_of(api, movable["objectID"]))[0]
    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})

    job = DrainJob(drain_blocks(api.ctx), 60, batch=2)
    for _ in range(3):  # what the runner does after each interval
        await run(api, job)
    assert victim not in (await spaces_of(api, movable["objectID"]))[0]
    assert await api.download(movable["objectID"]) == body
    for o in stuck:  # still there, still whole
        assert victim in (await spaces_of(api, o["objectID"]))[0]
    passes = await run(api, job)  # a sweep ends: the rest waits for the interval
    assert passes[-1].more is False
    assert "2 left" in passes[-1].message and "no Normal user space" in passes[-1].message
    await assert_disk_matches_db(api)


async def test_drain_api_errors(api: Api, tmp_path: Path) -> None:
    [sid] = await api.add_spaces(1)
    await api.fail("POST", "/v1/userSpace/drain", "BadArgument", 400, json={})
    await api.fail("POST", "/v1/userSpace/drain", "BadArgument", 400, json={"userSpaceID": "one"})
    await api.fail("POST", "/v1/userSpace/drain", "DataNotFound", 404, json={"userSpaceID": 987654})
    msg = await api.fail(
        "POST",
        "/v1/userSpace/update",
        "BadArgument",
        400,
        json={"userSpaceID": sid, "state": "Unavailable"},
    )
    assert "state must be 'Normal' or 'Draining'" in msg
    assert await state_of(api, sid) == "Normal"


async def test_drain_of_another_users_space_is_not_found(api: Api, bob: Any) -> None:
    [bobs] = list(bob.api.spaces)
    await api.fail("POST", "/v1/userSpace/drain", "DataNotFound", 404, json={"userSpaceID": bobs})
    got = await bob.api.post("/v1/userSpace/drain", {"userSpaceID": bobs})
    assert got["userSpace"]["state"] == "Draining"


# --- redundancy change ---------------------------------------------------------


async def set_package(api: Api, package_id: int, policy: dict[str, Any] | None) -> Any:
    got = await api.post("/v1/package/update", {"packageID": package_id, "redundancy": policy})
    return got["package"]


@pytest.mark.parametrize(
    ("old", "new", "width"),
    [(NONE, EC23, 3), (REP2, EC23, 3), (EC23, REP3, 3)],
    ids=["none-ec23", "rep2-ec23", "ec23-rep3"],
)
async def test_policy_change_reencodes(
    api: Api, old: dict[str, Any], new: dict[str, Any], width: int
) -> None:
    await api.add_spaces(3)  # four spaces
    pkg = await api.package("p", old)
    bodies = {f"f{i}.bin": data(50_000 * i + 17, i) for i in range(4)}
    bodies["empty"] = b""
    objs = {o["path"]: o for o in await api.upload(pkg, list(bodies.items()))}
    # A multipart object: two parts, two layouts.
    mp = await api.post("/v1/object/newMultipartUpload", {"packageID": pkg, "path": "mp.bin"})
    mp_id = mp["object"]["objectID"]
    parts = [data(70_000, 9), data(30_000, 10)]
    for i, part in enumerate(parts):
        assert (await api.upload_part(mp_id, i, part)).status_code == 200
    await api.post("/v1/object/completeMultipartUpload", {"objectID": mp_id, "indexes": [0, 1]})
    bodies["mp.bin"] = b"".join(parts)
    objs["mp.bin"] = {"objectID": mp_id}
    old_layouts = {p: await layouts_of(api, o["objectID"]) for p, o in objs.items()}

    got = await set_package(api, pkg, new)
    assert got["redundancy"] == new
    results = await run(api, RecodeJob(recode_services(api.ctx), 60))
    assert results[0].message.startswith("re-encoded 7 layouts"), results
    assert results[-1].more is False

    listed = {o["path"]: o for o in await api.objects(pkg)}
    for path, body in bodies.items():
        oid = objs[path]["objectID"]
        assert listed[path]["redundancy"] == new
        assert listed[path]["fileHash"] == (
            full_hash(body) if path != "mp.bin" else listed[path]["fileHash"]
        )
        new_layouts = await layouts_of(api, oid)
        assert len(new_layouts) == len(old_layouts[path])
        assert not set(new_layouts) & set(old_layouts[path])
        for sids in await spaces_of(api, oid):
            assert len(sids) == width == len(set(sids))
        assert await api.download(oid) == body
        if body:
            assert await api.download(oid, offset=5, length=40_000) == body[5:40_005]

    # Old blocks wait for GC (in-flight readers); then nothing is left over.
    report = await api.gc()
    assert report.layouts == 7
    await assert_disk_matches_db(api)
    per_space = Counter(sid for sid, files in api.block_files().items() for _ in files)
    assert sum(per_space.values()) == 7 * width
    assert len(per_space) >= width
    for path, body in bodies.items():
        assert await api.download(objs[path]["objectID"]) == body

    [idle] = await run(api, RecodeJob(recode_services(api.ctx), 60))
    assert idle.message.startswith("re-encoded 0 layouts")


async def test_reads_never_fail_while_recode_runs(api: Api) -> None:
    await api.add_spaces(3)
    pkg = await api.package("live", REP2)
    bodies = {f"o{i}": os.urandom(600_000 + i) for i in range(6)}
    objs = await api.upload(pkg, list(bodies.items()))
    await set_package(api, pkg, EC23)

    stop = asyncio.Event()
    reads = Counter[str]()
    progressed = asyncio.Condition()  # notified after every read

    async def reader(o: dict[str, Any]) -> None:
        while not stop.is_set():
            got = await api.download(o["objectID"], offset=1000, length=300_000)
            assert got == bodies[o["path"]][1000:301_000]
            reads[o["path"]] += 1
            async with progressed:
                progressed.notify_all()

    async def every_object_read_after(counts: Counter[str]) -> None:
        """Until each object was read once more than ``counts`` says."""
        async with progressed:
            await asyncio.wait_for(
                progressed.wait_for(lambda: all(reads[p] > counts[p] for p in bodies)), 60
            )

    readers = [asyncio.create_task(reader(o)) for o in objs for _ in range(2)]
    try:
        await every_object_read_after(Counter())  # the readers are at it
        before = reads.copy()
        results = await run(api, RecodeJob(recode_services(api.ctx), 60))
        assert sum(int(r.message.split()[1]) for r in results) == 6, results
        assert reads.total() > before.total()  # reads went on while it re-encoded
        await every_object_read_after(reads.copy())  # and go on from the new layouts
    finally:
        stop.set()
        await asyncio.gather(*readers)  # raises if any read failed
    for o in objs:
        assert (await layouts_of(api, o["objectID"])) and all(
            len(s) == 3 for s in await spaces_of(api, o["objectID"])
        )
    await api.gc()
    for o in objs:
        assert await api.download(o["objectID"]) == bodies[o["path"]]
    await assert_disk_matches_db(api)


async def test_clones_overrides_and_bucket_policy(api: Api) -> None:
    await api.add_spaces(3)
    bucket = await api.bucket("bk", REP2)
    inherit = await api.package("inherit", bucket_id=bucket)  # follows the bucket
    own = await api.package("own", NONE, bucket_id=bucket)  # its own policy
    a = await api.upload_one(inherit, "a", data(20_000, 1))
    b = await api.upload_one(own, "b", data(20_000, 2))
    clone = (
        await api.post("/v1/package/clone", {"packageID": own, "bucketID": bucket, "name": "copy"})
    )["package"]
    [cb] = await api.objects(clone["packageID"])
    shared = await layouts_of(api, b["objectID"])
    assert await layouts_of(api, cb["objectID"]) == shared

    # Bucket change: only the inheriting package follows.
    got = await api.post("/v1/bucket/update", {"bucketID": bucket, "redundancy": EC23})
    assert got["bucket"]["redundancy"] == EC23
    await run(api, RecodeJob(recode_services(api.ctx), 60))
    assert (await api.objects(inherit))[0]["redundancy"] == EC23
    assert (await api.objects(own))[0]["redundancy"] == NONE
    assert await layouts_of(api, b["objectID"]) == shared

    # Package change: the clone (its own package, same policy as before) keeps
    # the shared layout; the source is re-encoded.
    await set_package(api, own, REP3)
    [result] = await run(api, RecodeJob(recode_services(api.ctx), 60))
    assert result.message.startswith("re-encoded 1 layout (20000 bytes) of 1 object")
    assert await layouts_of(api, cb["objectID"]) == shared
    assert await layouts_of(api, b["objectID"]) != shared
    await api.gc()  # the shared layout is still referenced by the clone: kept
    assert await api.download(cb["objectID"]) == data(20_000, 2)
    assert await api.download(b["objectID"]) == data(20_000, 2)

    # An upload that overrides the policy after the change keeps its own.
    over = await api.upload_one(own, "over", b"override", redundancy=REP2)
    [result] = await run(api, RecodeJob(recode_services(api.ctx), 60))
    assert result.message.startswith("re-encoded 0 layouts")
    assert (await api.objects(own))[1]["redundancy"] == REP2
    assert len((await spaces_of(api, over["objectID"]))[0]) == 2

    # null: inherit the bucket's again; setting a policy applies to everything
    # in the package at that moment, overrides included.
    got = await set_package(api, own, None)
    assert "redundancy" not in got
    await run(api, RecodeJob(recode_services(api.ctx), 60))
    assert {o["redundancy"]["type"] for o in await api.objects(own)} == {"ec"}
    assert await api.download(over["objectID"]) == b"override"
    assert await api.download(a["objectID"]) == data(20_000, 1)
    await api.gc()
    await assert_disk_matches_db(api)


async def test_recode_without_enough_spaces_reports_and_keeps_data(api: Api) -> None:
    await api.add_spaces(1)  # two spaces
    pkg = await api.package("small", NONE)
    o = await api.upload_one(pkg, "x", b"x" * 1000)
    before = await layouts_of(api, o["objectID"])
    await set_package(api, pkg, EC23)
    [result] = await run(api, RecodeJob(recode_services(api.ctx), 60))
    assert result.more is False
    assert "1 failed" in result.message and "needs 3 usable user spaces" in result.message
    assert await layouts_of(api, o["objectID"]) == before
    assert (await api.objects(pkg))[0]["redundancy"] == NONE
    assert await pending_layouts(api) == 0
    assert await api.download(o["objectID"]) == b"x" * 1000

    # A space more, and the next pass finishes it.
    await api.add_spaces(1)
    [result] = await run(api, RecodeJob(recode_services(api.ctx), 60))
    assert result.message.startswith("re-encoded 1 layout")
    assert (await api.objects(pkg))[0]["redundancy"] == EC23


async def test_update_api_errors(api: Api) -> None:
    bucket = await api.bucket("e")
    pkg = await api.package("p", bucket_id=bucket)
    msg = await api.fail("POST", "/v1/package/update", "BadArgument", 400, json={"packageID": pkg})
    assert "redundancy" in msg
    msg = await api.fail(
        "POST",
        "/v1/package/update",
        "BadArgument",
        400,
        json={"packageID": pkg, "redundancy": {"type": "ec", "k": 3, "n": 2}},
    )
    assert "k < n" in msg
    await api.fail(
        "POST",
        "/v1/package/update",
        "DataNotFound",
        404,
        json={"packageID": 99999, "redundancy": REP2},
    )
    await api.fail(
        "POST",
        "/v1/bucket/update",
        "DataNotFound",
        404,
        json={"bucketID": 99999, "redundancy": None},
    )
    await api.fail("POST", "/v1/bucket/update", "BadArgument", 400, json={"bucketID": bucket})
    got = await api.post("/v1/bucket/update", {"bucketID": bucket, "redundancy": None})
    assert "redundancy" not in got["bucket"]
    got = (await api.get("/v1/package/get", packageID=pkg))["package"]
    assert "redundancy" not in got
