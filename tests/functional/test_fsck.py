"""fsck in-process (SQLite and PostgreSQL): the metadata checked against the
block files of Local user spaces, and ``jcs admin fsck`` on a data dir."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from jcs_helpers import Api, create_s3_space, multipart, text_data

from jointcloud.api.jcs.app import create_app
from jointcloud.config import Settings
from jointcloud.context import Context
from jointcloud.core import fsck as fsck_module
from jointcloud.core.authz import Principal
from jointcloud.core.fsck import FsckReport, fsck
from jointcloud.errors import SpaceRefused
from jointcloud.meta import accounts, layouts, repairs
from jointcloud.redundancy.policy import RepPolicy
from jointcloud.spaces.local import LocalSpace
from support.s3server import S3Server, s3_server_fixture

JCS = Path(sys.executable).with_name("jcs")
s3_server = s3_server_fixture(scope="module", bucket="jcs-fsck")
EC = {"type": "ec", "k": 2, "n": 3, "chunkSize": 4096}
REP = {"type": "rep", "repCount": 2}


async def _admin_id(api: Api) -> int:
    return (
        await api.ctx.accounts.authenticate(api.client.headers["Authorization"].split()[1])
    ).user_id


async def _block_paths(api: Api, object_id: int) -> list[tuple[int, int, Path]]:
    """(layout id, block index, file) of every block of an object."""
    content = await api.ctx.objects.open(Principal.user(await _admin_id(api)), object_id)
    return [
        (rec.layout_id, b.index, api.spaces[b.user_space_id] / "jcs" / b.key)
        for _, rec in content.parts
        for b in rec.blocks
    ]


def _age(path: Path, seconds: float = 3600) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def _kinds(report: FsckReport) -> list[tuple[str, int | None, int | None]]:
    return sorted((f.kind, f.layout_id, f.block_index) for f in report.findings)


async def _store(api: Api) -> dict[str, int]:
    """Objects under none, rep(2) and ec(2,3) (multi-segment), plus a multipart
    upload with one part staged; returns object ids by path."""
    await api.add_spaces(2)
    ids: dict[str, int] = {}
    for name, policy in (("none", {"type": "none"}), ("rep", REP), ("ec", EC)):
        pkg = await api.package(name, policy)
        obj = await api.upload_one(pkg, f"{name}.bin", text_data(50_000, seed=len(ids)))
        ids[name] = int(obj["objectID"])
    pkg = await api.package("mp", REP)
    r = await api.client.post(
        "/v1/object/newMultipartUpload", json={"packageID": pkg, "path": "mp.bin"}
    )
    assert r.status_code == 200, r.text
    staged = int(r.json()["data"]["object"]["objectID"])
    assert (await api.upload_part(staged, 1, b"part one" * 1000)).status_code == 200
    return ids


async def test_clean_store_is_clean(api: Api) -> None:
    await _store(api)
    report = await fsck(api.ctx)
    assert report.findings == [] and report.clean, report.findings
    assert report.layouts_checked == 4  # three objects + one staged part
    assert report.objects_checked == 3  # the upload's placeholder is not an object yet
    assert report.blocks_checked == 1 + 2 + 3 + 2
    assert report.summary() == (
        "fsck: 8 blocks checked, 0 missing, 0 corrupt, 0 orphans, 0 under-replicated"
    )
    deep = await fsck(api.ctx, deep=True)
    assert deep.clean and deep.blocks_checked == 8


async def test_missing_block_is_missing_and_under_replicated(api: Api) -> None:
    ids = await _store(api)
    layout_id, index, path = (await _block_paths(api, ids["ec"]))[1]
    path.unlink()

    report = await fsck(api.ctx)
    assert _kinds(report) == [("missing", layout_id, index), ("under-replicated", layout_id, None)]
    missing = next(f for f in report.findings if f.kind == "missing")
    assert missing.key == path.relative_to(api.spaces[missing.space_id] / "jcs").as_posix()
    assert missing.space_name.startswith("space-") or missing.space_name == "local"
    under = next(f for f in report.findings if f.kind == "under-replicated")
    assert under.detail == "2 of 3 blocks intact, 2 needed to read"
    assert report.count("missing") == 1 and report.count("under-replicated") == 1
    assert not report.clean
    assert report.summary().endswith("1 missing, 0 corrupt, 0 orphans, 1 under-replicated")

    # without --repair nothing is queued; with it the layout is, once
    async with api.ctx.db.read() as conn:
        assert await repairs.count(conn) == 0
    fixed = await fsck(api.ctx, repair=True)
    assert fixed.enqueued == 1
    async with api.ctx.db.read() as conn:
        assert [i.layout_id for i in await repairs.due(conn, 10)] == [layout_id]
    assert (await fsck(api.ctx, repair=True)).enqueued == 0  # already queued


async def test_lost_layout(api: Api) -> None:
    ids = await _store(api)
    layout_id, _, path = (await _block_paths(api, ids["none"]))[0]
    path.unlink()
    report = await fsck(api.ctx, repair=True)
    assert _kinds(report) == [("lost", layout_id, None), ("missing", layout_id, 0)]
    assert report.summary().endswith(", 1 lost")
    assert report.enqueued == 0  # nothing left to rebuild from


async def test_flipped_byte_is_corrupt_with_deep(api: Api) -> None:
    ids = await _store(api)
    rep_layout, rep_index, rep_path = (await _block_paths(api, ids["rep"]))[0]
    ec_layout, ec_index, ec_path = (await _block_paths(api, ids["ec"]))[2]
    for path, at in ((rep_path, 100), (ec_path, 5000)):
        raw = bytearray(path.read_bytes())
        raw[at] ^= 0x01
        path.write_bytes(bytes(raw))

    shallow = await fsck(api.ctx)
    assert shallow.clean  # same size: only reading finds it

    deep = await fsck(api.ctx, deep=True)
    assert _kinds(deep) == sorted(
        [
            ("corrupt", rep_layout, rep_index),
            ("corrupt", ec_layout, ec_index),
            ("under-replicated", rep_layout, None),
            ("under-replicated", ec_layout, None),
        ]
    )
    assert all("integrity" in f.detail for f in deep.findings if f.kind == "corrupt")
    assert deep.summary().endswith("0 missing, 2 corrupt, 0 orphans, 2 under-replicated")


async def test_corrupt_blocks_bad_in_different_chunks_are_not_lost(api: Api) -> None:
    # ec(2,3), 7 segments: fragment 0 is bad in segment 0, fragment 1 in
    # segment 3, so every segment has 2 good fragments of the 2 it needs.
    # One block intact of the 2 needed, yet the object reads and repair
    # rebuilds it: fsck called it lost and queued nothing.
    ids = await _store(api)
    blocks = await _block_paths(api, ids["ec"])
    layout_id = blocks[0][0]
    async with api.ctx.db.read() as conn:
        chunk_len = (await layouts.load(conn, [layout_id]))[layout_id].chunk_len

    def flip(index: int, segment: int) -> None:
        path = blocks[index][2]
        raw = bytearray(path.read_bytes())
        raw[segment * chunk_len + 100] ^= 0x01
        path.write_bytes(bytes(raw))

    flip(0, 0)
    flip(1, 3)
    report = await fsck(api.ctx, deep=True, repair=True)
    assert _kinds(report) == [
        ("corrupt", layout_id, 0),
        ("corrupt", layout_id, 1),
        ("under-replicated", layout_id, None),
    ]
    await api.ctx.repair.flush()
    async with api.ctx.db.read() as conn:
        assert await repairs.count(conn) == 1  # queued (by fsck, or by its deep read)
    assert (await api.ctx.repair.repair(layout_id)).status == "repaired"
    assert (await fsck(api.ctx, deep=True)).clean

    # the same segment bad in two of three fragments: that one is lost
    blocks = await _block_paths(api, ids["ec"])
    flip(0, 5)
    flip(2, 5)
    report = await fsck(api.ctx, deep=True, repair=True)
    assert ("lost", layout_id, None) in _kinds(report)


async def test_truncated_block_is_corrupt_without_deep(api: Api) -> None:
    ids = await _store(api)
    layout_id, index, path = (await _block_paths(api, ids["rep"]))[1]
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size - 1)
    report = await fsck(api.ctx)
    assert _kinds(report) == [("corrupt", layout_id, index), ("under-replicated", layout_id, None)]
    assert "expected" in report.findings[0].detail


async def test_stray_file_is_an_orphan_and_repair_deletes_it(api: Api) -> None:
    await _store(api)
    sid, root = next(iter(api.spaces.items()))
    stray = root / "jcs" / "blocks" / "ab" / "abcdef.0"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"left behind")
    outside = root / "jcs" / "user-file.txt"  # not under blocks/: the user's, not ours
    outside.write_bytes(b"mine")
    _age(outside)

    # younger than the GC delay: could be an upload in flight, not judged
    report = await fsck(api.ctx, repair=True)
    assert report.clean and report.young_keys == 1 and report.orphans_deleted == 0
    assert stray.exists()

    _age(stray)
    report = await fsck(api.ctx)
    assert _kinds(report) == [("orphan", None, None)]
    assert report.findings[0].key == "blocks/ab/abcdef.0"
    assert report.findings[0].space_id == sid
    assert report.summary().endswith("0 corrupt, 1 orphans, 0 under-replicated")
    assert stray.exists()  # only reported

    report = await fsck(api.ctx, repair=True)
    assert report.orphans_deleted == 1 and not stray.exists()
    assert outside.exists()
    assert (await fsck(api.ctx)).clean


async def test_gc_delay_from_settings(api: Api) -> None:
    """A zero delay judges fresh keys too (``JCS_GC_DELAY_SECONDS=0``)."""
    await _store(api)
    root = next(iter(api.spaces.values()))
    stray = root / "jcs" / "blocks" / "cd" / "cdef.1"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"x")
    api.ctx.settings = dataclasses.replace(api.ctx.settings, gc_delay=timedelta(seconds=0))
    report = await fsck(api.ctx, repair=True)
    assert report.count("orphan") == 1 and report.orphans_deleted == 1
    assert not stray.exists()


async def test_pending_layout_blocks_are_not_orphans(api: Api) -> None:
    """An upload in flight (or crashed, awaiting GC) has a pending layout whose
    planned keys are recorded: its blocks are neither orphans nor checked."""
    await _store(api)
    sid, root = next(iter(api.spaces.items()))
    key = "blocks/ee/" + "ee" * 16 + ".0"
    async with api.ctx.db.write() as conn:
        await layouts.create_pending(conn, RepPolicy(1), b"k" * 40, [(0, sid, key)])
    block = root / "jcs" / key
    block.parent.mkdir(parents=True, exist_ok=True)
    block.write_bytes(b"half written")
    _age(block)

    report = await fsck(api.ctx, repair=True)
    assert report.clean, report.findings
    assert report.orphans_deleted == 0 and block.exists()
    assert report.layouts_checked == 4  # the pending layout is not checked


async def test_released_layout_blocks_are_not_orphans(api: Api) -> None:
    """Overwritten content waits for GC: referenced, so not an orphan; not in use,
    so not checked; after GC nothing is left over."""
    ids = await _store(api)
    old = await _block_paths(api, ids["rep"])
    pkg = (await api.ctx.objects.get(Principal.user(await _admin_id(api)), ids["rep"])).package_id
    await api.upload_one(pkg, "rep.bin", b"new content")
    for _, _, path in old:
        _age(path)
    report = await fsck(api.ctx, repair=True)
    assert report.clean and all(p.exists() for _, _, p in old)
    await api.gc()
    assert not any(p.exists() for _, _, p in old)
    assert (await fsck(api.ctx)).clean


async def test_overlapping_spaces_from_before_the_rule_delete_nothing(api: Api) -> None:
    """Two user spaces on one directory can no longer be created; rows written
    before that rule are refused when opened (naming the rule), and fsck
    --repair then deletes nothing from the shared directory."""
    await _store(api)
    root = next(iter(api.spaces.values()))
    r = await api.request(
        "POST",
        "/v1/userSpace/create",
        json={"name": "same-dir", "storage": {"type": "Local", "path": str(root)}},
    )
    assert r.status_code == 400 and "spaces never share directories" in r.json()["message"]
    admin = await _admin_id(api)
    async with api.ctx.db.write() as conn:  # as an older version let it be written
        newer = await accounts.create_space(
            conn, admin, "same-dir", {"type": "Local", "path": str(root)}, None, "jcs"
        )
    blocks = [p for p in (root / "jcs" / "blocks").rglob("*") if p.is_file()]
    assert blocks
    for p in blocks:
        _age(p)
    await api.ctx.pool.close()  # open spaces again, as a restarted server would
    report = await fsck(api.ctx, repair=True)
    assert report.orphans_deleted == 0
    assert all(p.exists() for p in blocks)
    # The older space keeps working; the newer row is refused, naming the rule.
    with pytest.raises(SpaceRefused, match="spaces never share directories"):
        await api.ctx.pool.get(newer)


async def test_an_alias_of_an_s3_space_is_scanned_with_it(api: Api, s3_server: S3Server) -> None:
    """A second space on the same bucket and rootPath, its endpoint written
    with a trailing '/': fsck scanned it apart, took the first space's
    blocks for its orphans, and --repair deleted a live block (found by
    review, 2026-12-06)."""
    space = await create_s3_space(api, s3_server)
    alias = {
        "name": f"{space['name']}-alias",
        "storage": {**s3_server.storage(), "endpoint": s3_server.endpoint + "/"},
        "credential": s3_server.credential(),
        "rootPath": space["name"],
    }
    await api.post("/v1/userSpace/create", alias)
    pkg = await api.package("s3", REP)
    content = text_data(50_000, seed=7)
    obj = await api.upload_one(pkg, "x.bin", content, affinity=int(space["userSpaceID"]))
    client = s3_server.client()
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{space['name']}/blocks/")
    before = sorted(o["Key"] for o in listed.get("Contents", []))
    assert before
    api.ctx.settings = dataclasses.replace(api.ctx.settings, gc_delay=timedelta(seconds=0))
    report = await fsck(api.ctx, repair=True)
    assert report.count("orphan") == 0 and report.orphans_deleted == 0, report.findings
    listed = client.list_objects_v2(Bucket=s3_server.bucket, Prefix=f"{space['name']}/blocks/")
    assert sorted(o["Key"] for o in listed.get("Contents", [])) == before
    assert await api.download(int(obj["objectID"])) == content


async def test_unreachable_space(api: Api) -> None:
    ids = await _store(api)
    blocks = await _block_paths(api, ids["ec"])
    layout_id, index, path = blocks[0]
    space_root = next(root for root in api.spaces.values() if path.is_relative_to(root))
    moved = space_root.with_name(space_root.name + "-away")
    space_root.rename(moved)
    space_root.write_bytes(b"not a directory any more")  # even root cannot write into it
    try:
        report = await fsck(api.ctx)
    finally:
        space_root.unlink()
        moved.rename(space_root)
    assert report.unreachable_spaces and not report.clean
    kinds = _kinds(report)
    assert ("unreachable", layout_id, index) in kinds
    assert ("under-replicated", layout_id, None) in kinds
    assert "unreachable" in report.summary()
    assert (await fsck(api.ctx)).clean


async def test_a_layout_on_a_space_that_does_not_answer_is_unreadable_not_lost(
    api: Api,
) -> None:
    """Its only block is not known to be gone: fsck says so, rather than
    "lost" (an operator running fsck while a cloud was down, or without the
    server's JCS_ALLOW_PRIVATE_ENDPOINTS, was told its objects were lost)."""
    ids = await _store(api)
    layout_id, index, path = (await _block_paths(api, ids["none"]))[0]
    space_root = next(root for root in api.spaces.values() if path.is_relative_to(root))
    moved = space_root.with_name(space_root.name + "-away")
    space_root.rename(moved)
    space_root.write_bytes(b"not a directory any more")
    try:
        report = await fsck(api.ctx)
    finally:
        space_root.unlink()
        moved.rename(space_root)
    kinds = _kinds(report)
    assert ("unreadable", layout_id, None) in kinds and ("unreachable", layout_id, index) in kinds
    assert not any(kind == "lost" for kind, _, _ in kinds)
    finding = next(f for f in report.findings if f.kind == "unreadable")
    assert (
        finding.detail == "0 of 1 blocks intact, 1 needed to read, 1 on spaces that did not answer"
    )
    assert "1 unreadable until their spaces answer" in report.summary()
    assert (await fsck(api.ctx)).clean


async def test_a_deciding_read_that_stalls_gives_up_and_says_unreadable(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ec(2,3) with fragments 0 and 1 truncated in different segments and
    fragment 2 intact by its size, on a space whose reads hang (a mount
    answering stat from its cache): the read that decides whether the
    layout is lost waits on it with no other block left to ask. It now
    gives up once no segment came for ``DECIDING_STALL_SECONDS`` and says
    unreadable, not lost; the old code waited for ever."""
    ids = await _store(api)
    blocks = await _block_paths(api, ids["ec"])
    layout_id = blocks[0][0]
    async with api.ctx.db.read() as conn:
        chunk_len = (await layouts.load(conn, [layout_id]))[layout_id].chunk_len
    by_index = {index: path for _, index, path in blocks}
    for index, segment in ((0, 3), (1, 5)):
        path = by_index[index]
        path.write_bytes(path.read_bytes()[: segment * chunk_len])
    hung_key = by_index[2].name
    asked = asyncio.Event()
    release = asyncio.Event()
    real_read = LocalSpace.read

    async def read(self: LocalSpace, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if key.endswith(hung_key):
            asked.set()
            await release.wait()
        return await real_read(self, key, offset, length)

    monkeypatch.setattr(LocalSpace, "read", read)
    monkeypatch.setattr(fsck_module, "DECIDING_STALL_SECONDS", 1.0)
    try:
        async with asyncio.timeout(30):
            report = await fsck(api.ctx)
    finally:
        release.set()
    assert asked.is_set()  # the hanging fragment was asked, and outwaited
    kinds = _kinds(report)
    assert ("corrupt", layout_id, 0) in kinds and ("corrupt", layout_id, 1) in kinds
    assert ("unreadable", layout_id, None) in kinds
    assert not any(kind == "lost" for kind, _, _ in kinds)
    finding = next(f for f in report.findings if f.kind == "unreadable")
    assert "sent nothing for 1 s" in finding.detail


# --- the command line ------------------------------------------------------


def _jcs(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JCS_")}
    env["COLUMNS"] = "200"
    env["JCS_LOCAL_ROOTS"] = tempfile.gettempdir()  # where these tests keep their spaces
    return subprocess.run(
        [str(JCS), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


async def _served_once(
    settings: Settings, body: Callable[[httpx.AsyncClient], Awaitable[None]]
) -> None:
    """A data dir made as ``jcs serve`` would, ``body`` run against its v1
    API in process with the first key (for the CLI's tests)."""
    context = await Context.open(settings)
    try:
        key = await context.bootstrap()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(context, background=False)),
            base_url="http://jcs.test",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            await body(client)
    finally:
        await context.close()


def test_cli_fsck_table_and_exit_status(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    async def setup(c: httpx.AsyncClient) -> None:
        r = await c.post("/v1/bucket/create", json={"name": "b"})
        bucket = r.json()["data"]["bucket"]["bucketID"]
        r = await c.post("/v1/package/create", json={"bucketID": bucket, "name": "p"})
        pkg = r.json()["data"]["package"]["packageID"]
        body, ctype = multipart(
            [
                ("info", None, f'{{"packageID": {pkg}}}'.encode()),
                # above the inline threshold: one block file
                ("files", "a.txt", b"hello fsck" * 1000),
            ]
        )
        r = await c.post("/v1/object/upload", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text

    settings = Settings(data_dir=data_dir, local_roots=(tmp_path,), endpoint_allow=("127.0.0.1",))
    asyncio.run(_served_once(settings, setup))
    [block] = [p for p in (data_dir / "spaces").rglob("*") if p.is_file()]

    help_text = _jcs("admin", "fsck", "--help").stdout
    assert "--deep" in help_text and "--repair" in help_text and "Exit status" in help_text

    clean = _jcs("admin", "fsck", "--data-dir", str(data_dir))
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.strip() == (
        "fsck: 1 blocks checked, 0 missing, 0 corrupt, 0 orphans, 0 under-replicated"
    )

    stray = block.parent / "0123.0"
    stray.write_bytes(b"stray")
    _age(stray)
    block.unlink()
    bad = _jcs("admin", "fsck", "--deep", "--data-dir", str(data_dir))
    assert bad.returncode == 1, bad.stderr
    lines = bad.stdout.splitlines()
    header = next(line for line in lines if "kind" in line)
    for column in ("kind", "space", "layout", "block", "key"):
        assert column in header
    rows = [line for line in lines if "blocks/" in line]
    assert any("missing" in r and "local" in r and block.name in r for r in rows), bad.stdout
    assert any("orphan" in r and "0123.0" in r for r in rows), bad.stdout
    assert any("lost" in line for line in lines), bad.stdout
    assert lines[-1] == (
        "fsck: 1 blocks checked, 1 missing, 0 corrupt, 1 orphans, 0 under-replicated, 1 lost"
    )

    fixed = _jcs("admin", "fsck", "--repair", "--data-dir", str(data_dir))
    assert fixed.returncode == 1  # what it found is still reported
    assert "deleted 1 orphans" in fixed.stdout and not stray.exists()

    nodir = _jcs("admin", "fsck", "--data-dir", str(tmp_path / "nothing"))
    assert nodir.returncode == 1 and "error:" in nodir.stderr


def test_cli_admin_opens_loopback_spaces_with_the_servers_flag(
    tmp_path: Path, s3_server: S3Server
) -> None:
    """An admin command is not the server process: a server started with
    --allow-private-endpoints has a loopback S3 space that ``jcs admin
    fsck`` refused to open (its block "unreachable"), with no way to say
    otherwise but the environment. ``jcs admin --allow-private-endpoints``
    opens it as the server does."""
    data_dir = tmp_path / "data"

    async def setup(c: httpx.AsyncClient) -> None:
        r = await c.post(
            "/v1/userSpace/create",
            json={
                "name": "s3-admin",
                "storage": s3_server.storage(),
                "credential": s3_server.credential(),
                "rootPath": f"admin-{tmp_path.name}",
            },
        )
        assert r.status_code == 200, r.text
        r = await c.post("/v1/bucket/create", json={"name": "b"})
        bucket = r.json()["data"]["bucket"]["bucketID"]
        r = await c.post(
            "/v1/package/create",
            json={"bucketID": bucket, "name": "p", "redundancy": REP},
        )
        pkg = r.json()["data"]["package"]["packageID"]
        body, ctype = multipart(
            [
                ("info", None, f'{{"packageID": {pkg}}}'.encode()),
                ("files", "a.txt", b"hello admin" * 1000),  # a block on each space
            ]
        )
        r = await c.post("/v1/object/upload", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text

    settings = Settings(data_dir=data_dir, local_roots=(tmp_path,), allow_private_endpoints=True)
    asyncio.run(_served_once(settings, setup))
    refused = _jcs("admin", "fsck", "--data-dir", str(data_dir))
    assert refused.returncode == 1, refused.stderr
    assert "unreachable" in refused.stdout and "--allow-private-endpoints" in refused.stdout
    opened = _jcs("admin", "--allow-private-endpoints", "fsck", "--data-dir", str(data_dir))
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert opened.stdout.strip() == (
        "fsck: 2 blocks checked, 0 missing, 0 corrupt, 0 orphans, 0 under-replicated"
    )
    assert "--allow-private-endpoints" in _jcs("admin", "--help").stdout
