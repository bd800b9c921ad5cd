"""Small objects kept inline in the metadata database (docs/durability.md):
stored sealed, with no block in any space; read back whole and by range; left
in their form by every background job (scrub, repair, recode, drain, GC, fsck)
and carried intact by import, export, clone and move; overwrites between
inline and block-stored versions are atomic for readers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from jcs_helpers import MARKER, Api, expect_error, text_data
from sqlalchemy import func, select, update
from test_health_drain_recode import EC23, REP2, run, set_package
from test_import_export import package_contents, run_tasks
from test_repair_scrub import repair_once, scrub_once

from jointcloud.core.authz import Principal
from jointcloud.core.fsck import fsck
from jointcloud.core.gc import collect_garbage
from jointcloud.core.models import INLINE_KEY, ObjectContent
from jointcloud.core.repair import CORRUPT, HEALTHY, UNRECOVERABLE
from jointcloud.errors import BlockCorrupt
from jointcloud.jobs.drain import DrainJob
from jointcloud.jobs.recode import RecodeJob
from jointcloud.jobs.registry import drain_blocks, recode_services
from jointcloud.meta import tables as t
from support.trees import read_tree, write_tree

LIMIT = 4096


@pytest.fixture
def inline_max_bytes() -> int:
    return LIMIT  # the server's default: these tests are about inline objects


# --- helpers -------------------------------------------------------------------


async def principal(api: Api) -> Principal:
    user = await api.ctx.accounts.authenticate(api.client.headers["Authorization"].split()[1])
    return Principal.user(user.user_id)


async def layouts_of(api: Api, object_id: int) -> list[dict[str, Any]]:
    """The object's layouts, in part order: id, inline bytes and block rows."""
    async with api.ctx.db.read() as conn:
        rows = (
            await conn.execute(
                select(t.layouts.c.id, t.layouts.c.inline_data, t.layouts.c.policy)
                .join(t.object_parts, t.object_parts.c.layout_id == t.layouts.c.id)
                .where(t.object_parts.c.object_id == object_id)
                .order_by(t.object_parts.c.seq)
            )
        ).all()
        out = []
        for r in rows:
            q = select(func.count()).select_from(t.blocks).where(t.blocks.c.layout_id == r.id)
            blocks = (await conn.execute(q)).scalar_one()
            out.append({"id": r.id, "inline": r.inline_data, "blocks": blocks})
        return out


async def assert_inline(api: Api, object_id: int, plain: bytes) -> int:
    """The object is one inline layout, sealed (no plaintext), no block; its id."""
    [layout] = await layouts_of(api, object_id)
    assert layout["inline"] is not None and layout["blocks"] == 0, layout
    sealed = bytes(layout["inline"])
    assert len(sealed) > len(plain)  # an authentication tag at least
    assert MARKER not in sealed
    if len(plain) >= 16:
        assert plain[:16] not in sealed and plain[-16:] not in sealed
    return int(layout["id"])


async def layout_exists(api: Api, layout_id: int) -> bool:
    async with api.ctx.db.read() as conn:
        q = select(t.layouts.c.id).where(t.layouts.c.id == layout_id)
        return (await conn.execute(q)).first() is not None


async def corrupt_inline(api: Api, layout_id: int) -> None:
    async with api.ctx.db.write() as conn:
        q = select(t.layouts.c.inline_data).where(t.layouts.c.id == layout_id)
        sealed = bytearray((await conn.execute(q)).scalar_one())
        sealed[len(sealed) // 2] ^= 0x5A
        await conn.execute(
            update(t.layouts).where(t.layouts.c.id == layout_id).values(inline_data=bytes(sealed))
        )


async def read_all(api: Api, content: ObjectContent) -> bytes:
    return b"".join([c async for c in api.ctx.objects.read(content).body])


async def by_path(api: Api, package_id: int, path: str) -> bytes:
    r = await api.client.get(
        "/v1/object/downloadByPath", params={"packageID": package_id, "path": path}
    )
    assert r.status_code == 200, r.text
    return r.content


async def fsck_clean(api: Api, blocks: int) -> None:
    """fsck finds nothing; it checks ``blocks`` block files, and ``--deep``
    also authenticates the sealed bytes of each inline layout."""
    async with api.ctx.db.read() as conn:
        inline = (
            await conn.execute(
                select(func.count())
                .select_from(t.layouts)
                .where(t.layouts.c.inline_data.is_not(None), t.layouts.c.released_at.is_(None))
            )
        ).scalar_one()
    for deep in (False, True):
        report = await fsck(api.ctx, deep=deep)
        assert report.findings == [] and report.clean, report.findings
        assert report.blocks_checked == blocks + (inline if deep else 0)


# --- stored inline, read back ------------------------------------------------


async def test_small_objects_are_inline_and_read_back(api: Api) -> None:
    pkg = await api.package("small")
    bodies = {
        "limit.txt": text_data(LIMIT, 1),
        "one": b"Z",
        "empty": b"",
        "over.txt": text_data(LIMIT + 1, 2),
    }
    objs = {o["path"]: o for o in await api.upload(pkg, list(bodies.items()))}
    [over_file] = api.all_block_files()  # the one object above the limit
    for path in ("limit.txt", "one"):
        await assert_inline(api, objs[path]["objectID"], bodies[path])
    [empty] = await layouts_of(api, objs["empty"]["objectID"])
    assert empty["inline"] is not None and empty["blocks"] == 0
    [over] = await layouts_of(api, objs["over.txt"]["objectID"])
    assert over["inline"] is None and over["blocks"] == 1
    assert MARKER not in over_file.read_bytes()

    for path, body in bodies.items():
        oid = objs[path]["objectID"]
        assert await api.download(oid) == body
        assert await by_path(api, pkg, path) == body
    big, oid = bodies["limit.txt"], objs["limit.txt"]["objectID"]
    assert await api.download(oid, offset=1000, length=2000) == big[1000:3000]
    assert await api.download(oid, offset=4000) == big[4000:]
    assert await api.download(oid, offset=LIMIT - 1, length=10) == big[-1:]
    for header, want in (
        ("bytes=100-199", big[100:200]),
        ("bytes=-10", big[-10:]),
        ("bytes=4095-", big[4095:]),
        ("bytes=0-0", big[:1]),
    ):
        r = await api.client.get(
            "/v1/object/download", params={"objectID": oid}, headers={"Range": header}
        )
        assert r.status_code == 206 and r.content == want, (header, r.status_code)
        assert r.headers["content-range"].endswith(f"/{LIMIT}")
    r = await api.client.get(
        "/v1/object/download",
        params={"objectID": objs["one"]["objectID"]},
        headers={"Range": "bytes=0-0"},
    )
    assert r.status_code == 206 and r.content == b"Z"
    assert api.all_block_files() == [over_file]


# --- background jobs ---------------------------------------------------------


async def test_scrub_repair_and_a_corrupt_inline_object(api: Api) -> None:
    pkg = await api.package("s")
    small, big = text_data(3000, 3), text_data(20_000, 4)
    a, b = await api.upload(pkg, [("a.txt", small), ("b.txt", big)])
    lid = await assert_inline(api, a["objectID"], small)

    clean = await scrub_once(api.ctx)
    assert clean.bad == () and clean.complete, clean.message
    assert "0 bad" in clean.message
    await api.ctx.repair.enqueue([lid], "test")
    fixed = await repair_once(api.ctx)
    assert [(o.layout_id, o.status) for o in fixed.outcomes] == [(lid, HEALTHY)]
    assert await api.download(a["objectID"]) == small
    files = api.all_block_files()

    await corrupt_inline(api, lid)
    found = await scrub_once(api.ctx)
    assert [(x.layout_id, x.index, x.key, x.state) for x in found.bad] == [
        (lid, 0, INLINE_KEY, CORRUPT)
    ]
    assert "1 bad (0 missing, 1 corrupt)" in found.message
    # A read fails cleanly: an error, never other bytes.
    for params in ({}, {"offset": 10, "length": 100}):
        r = await api.client.get(
            "/v1/object/download", params={"objectID": a["objectID"], **params}
        )
        expect_error(r, "OperationFailed", 503)
    with pytest.raises(BlockCorrupt):
        await read_all(api, await api.ctx.objects.open(await principal(api), a["objectID"]))
    assert await api.download(b["objectID"]) == big

    # There is no other copy: repair cannot rebuild it, says so, writes nothing.
    result = await repair_once(api.ctx)
    [outcome] = result.outcomes
    assert outcome.layout_id == lid and not outcome.finished
    assert api.all_block_files() == files
    expect_error(
        await api.client.get("/v1/object/download", params={"objectID": a["objectID"]}),
        "OperationFailed",
        503,
    )
    # Not "too few user spaces" (no space would help): unrecoverable.
    assert outcome.status == UNRECOVERABLE, outcome.message


async def test_recode_keeps_inline_objects_and_reencodes_the_rest(api: Api) -> None:
    await api.add_spaces(2)  # three spaces
    pkg = await api.package("r", {"type": "none"})
    bodies = {"s.txt": text_data(LIMIT, 5), "t": b"t", "big.bin": text_data(300_000, 6)}
    objs = {o["path"]: o for o in await api.upload(pkg, list(bodies.items()))}
    inline = {p: (await layouts_of(api, objs[p]["objectID"]))[0] for p in ("s.txt", "t")}
    for policy, width in ((REP2, 2), (EC23, 3)):
        before = await layouts_of(api, objs["big.bin"]["objectID"])
        await set_package(api, pkg, policy)
        results = await run(api, RecodeJob(recode_services(api.ctx), 60))
        assert results[0].message.startswith("re-encoded 1 layout "), results
        [after] = await layouts_of(api, objs["big.bin"]["objectID"])
        assert after["id"] != before[0]["id"] and after["blocks"] == width
        for path, layout in inline.items():
            assert await layouts_of(api, objs[path]["objectID"]) == [layout]
        for path, body in bodies.items():
            assert await api.download(objs[path]["objectID"]) == body
        [idle] = await run(api, RecodeJob(recode_services(api.ctx), 60))
        assert idle.message.startswith("re-encoded 0 layouts"), idle.message
    assert (await api.gc()).layouts == 2  # the big object's two old layouts
    assert len(api.all_block_files()) == 3
    for path, body in bodies.items():
        assert await api.download(objs[path]["objectID"]) == body


async def test_drain_moves_no_inline_object(api: Api) -> None:
    [victim] = list(api.spaces)
    pkg = await api.package("d")
    small = {f"f{i}": text_data(100 * i + 1, i) for i in range(5)}
    objs = await api.upload(pkg, list(small.items()))
    assert api.all_block_files() == []

    # Draining the only space: nothing of the inline objects is in it.
    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    [result] = await run(api, DrainJob(drain_blocks(api.ctx), 60))
    assert result.message == "moved 0 blocks off 1 draining space, 0 left", result.message
    for o in objs:
        assert await api.download(o["objectID"]) == small[o["path"]]

    # With a block-stored object on it as well, only that one moves.
    await api.post("/v1/userSpace/update", {"userSpaceID": victim, "state": "Normal"})
    [other] = await api.add_spaces(1)
    big = await api.upload_one(pkg, "big", text_data(50_000, 9), affinity=victim)
    await api.post("/v1/userSpace/drain", {"userSpaceID": victim})
    results = await run(api, DrainJob(drain_blocks(api.ctx), 60))
    assert results[0].message == "moved 1 block off 1 draining space, 0 left", results
    assert api.block_files()[victim] == [] and len(api.block_files()[other]) == 1
    await api.post("/v1/userSpace/delete", {"userSpaceID": victim})
    api.spaces.pop(victim)
    assert await api.download(big["objectID"]) == text_data(50_000, 9)
    for o in objs:
        assert await api.download(o["objectID"]) == small[o["path"]]
        await assert_inline(api, o["objectID"], small[o["path"]])


async def test_gc_removes_only_released_inline_layouts(api: Api) -> None:
    pkg = await api.package("g")
    a, b = await api.upload(pkg, [("a", b"alpha" * 10), ("b", b"bravo" * 10)])
    la = await assert_inline(api, a["objectID"], b"alpha" * 10)
    lb = await assert_inline(api, b["objectID"], b"bravo" * 10)
    assert (await api.gc()).layouts == 0  # live: nothing to do
    assert await layout_exists(api, la) and await layout_exists(api, lb)

    await api.post("/v1/object/delete", {"objectIDs": [a["objectID"]]})
    early = await collect_garbage(api.ctx.db, api.ctx.store, timedelta(hours=1))
    assert early.layouts == 0 and await layout_exists(api, la)  # within its delay
    report = await api.gc()
    assert (report.layouts, report.blocks) == (1, 0)
    assert not await layout_exists(api, la) and await layout_exists(api, lb)
    assert await api.download(b["objectID"]) == b"bravo" * 10


async def test_fsck_is_clean_with_inline_objects(api: Api) -> None:
    await api.add_spaces(1)
    pkg = await api.package("f", REP2)
    objs = await api.upload(
        pkg, [("a", b"a" * 100), ("b", b""), ("c", text_data(LIMIT, 1)), ("d", b"d" * 9000)]
    )
    await fsck_clean(api, blocks=2)  # d's two replicas; nothing for a, b, c
    await api.upload_one(pkg, "a", b"new a")  # overwritten: released inline layout
    await api.post("/v1/object/delete", {"objectIDs": [objs[2]["objectID"]]})
    await fsck_clean(api, blocks=2)
    await api.gc()
    await fsck_clean(api, blocks=2)


async def test_import_export_carry_inline_objects(api: Api) -> None:
    src, dst = await api.add_spaces(2)
    files = {
        "small/limit.txt": text_data(LIMIT, 1),
        "small/one": b"1",
        "small/empty": b"",
        "big.bin": text_data(70_000, 2),
    }
    write_tree(api.spaces[src] / "in", files)
    bucket = await api.bucket("ie")
    for mode, extra in (("inline", {}), ("task", {"async": True})):
        data = await api.post(
            "/v1/userSpace/createPackage",
            {"userSpaceID": src, "path": "in", "bucketID": bucket, "name": mode, **extra},
        )
        await run_tasks(api.ctx)
        pid = int(data["package"]["packageID"])
        assert await package_contents(api, pid) == files
        listed = {o["path"]: o["objectID"] for o in await api.objects(pid)}
        for path in ("small/limit.txt", "small/one"):
            await assert_inline(api, listed[path], files[path])

        await api.post(
            "/v1/userSpace/downloadPackage",
            {"packageID": pid, "userSpaceID": dst, "rootPath": f"out-{mode}", **extra},
        )
        await run_tasks(api.ctx)
        assert read_tree(api.spaces[dst] / f"out-{mode}") == files

    # ...and back in: what was exported imports to the same bytes.
    data = await api.post(
        "/v1/userSpace/createPackage",
        {"userSpaceID": dst, "path": "out-task", "bucketID": bucket, "name": "back"},
    )
    assert await package_contents(api, int(data["package"]["packageID"])) == files


# --- overwrite, copy, move ---------------------------------------------------


async def test_overwrites_are_atomic_for_readers(api: Api) -> None:
    pkg = await api.package("o")
    me = await principal(api)
    v1, v2, v3 = text_data(3000, 1), text_data(300_000, 2), text_data(LIMIT, 3)
    o1 = await api.upload_one(pkg, "obj", v1)
    await assert_inline(api, o1["objectID"], v1)
    before = await api.ctx.objects.open(me, package_id=pkg, path="obj")

    o2 = await api.upload_one(pkg, "obj", v2)  # inline -> blocks
    assert before.info.size == len(v1) and await read_all(api, before) == v1
    assert await by_path(api, pkg, "obj") == v2
    assert await api.download(o2["objectID"]) == v2
    [layout] = await layouts_of(api, o2["objectID"])
    assert layout["inline"] is None and layout["blocks"] == 1

    opened = await api.ctx.objects.open(me, package_id=pkg, path="obj")
    midway = api.ctx.objects.read(opened)
    first = await anext(midway.body)  # a reader in the middle of the old version
    o3 = await api.upload_one(pkg, "obj", v3)  # blocks -> inline
    rest = b"".join([c async for c in midway.body])
    assert opened.info.size == len(v2) and first + rest == v2
    assert await read_all(api, opened) == v2
    assert await by_path(api, pkg, "obj") == v3
    await assert_inline(api, o3["objectID"], v3)

    report = await api.gc()
    assert report.layouts == 2 and report.blocks == 1
    assert api.all_block_files() == []
    await fsck_clean(api, blocks=0)
    assert await by_path(api, pkg, "obj") == v3


async def test_clone_and_move_of_an_inline_object(api: Api) -> None:
    p1, p2 = await api.package("p1"), await api.package("p2")
    body = text_data(2000, 7)
    a = await api.upload_one(p1, "a.txt", body)
    lid = await assert_inline(api, a["objectID"], body)

    got = await api.post(
        "/v1/object/clone",
        {"clonings": [{"objectID": a["objectID"], "newPackageID": p2, "newPath": "copy.txt"}]},
    )
    [copy] = got["objects"]
    assert copy["path"] == "copy.txt" and copy["packageID"] == p2
    assert copy["size"] == str(len(body)) and copy["fileHash"] == a["fileHash"]
    assert await api.download(copy["objectID"]) == body
    assert await by_path(api, p2, "copy.txt") == body
    assert [x["id"] for x in await layouts_of(api, copy["objectID"])] == [lid]

    moved = await api.post(
        "/v1/object/move",
        {"movings": [{"objectID": a["objectID"], "packageID": p2, "path": "moved/a.txt"}]},
    )
    assert moved == {"successes": [a["objectID"]], "failures": []}
    assert await by_path(api, p2, "moved/a.txt") == body
    assert await api.download(a["objectID"]) == body
    assert await api.objects(p1) == []

    # The copy outlives its source, and the shared inline layout with it.
    await api.post("/v1/object/delete", {"objectIDs": [a["objectID"]]})
    await api.gc()
    assert await layout_exists(api, lid)
    assert await api.download(copy["objectID"]) == body
    await api.post("/v1/object/delete", {"objectIDs": [copy["objectID"]]})
    assert (await api.gc()).layouts == 1 and not await layout_exists(api, lid)
    assert api.all_block_files() == []
