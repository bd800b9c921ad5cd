"""Ids are never handed out twice, and the data dir is the server's alone.

A deleted bucket, package, object, user space, upload or task keeps its id
for ever: the next one gets a new id and the old id answers DataNotFound
(TaskNotFound for a task); on SQLite through AUTOINCREMENT, on PostgreSQL
through sequences. The data dir is 0700, every file the server writes there
0600 and its directories 0700, whatever the umask; the first-start root key
is only shown on a terminal."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jcs_helpers import Api, get_task, text_data
from sqlalchemy import delete, func, select, text

from jointcloud.cli.serve import _announce_root_key
from jointcloud.config import ConfigError, Settings
from jointcloud.context import Context
from jointcloud.meta import tables as t
from support.trees import write_tree

# Every table whose integer id users or other rows refer to.
ID_TABLES = {
    "users",
    "api_keys",
    "user_spaces",
    "buckets",
    "packages",
    "objects",
    "layouts",
    "blocks",
    "transfer_tasks",
    "uploads",  # multipart uploads (migration 0007); their public ids are random
    "project_keys",  # macaroon API keys of projects (migration 0008)
    "stray_blocks",  # blocks owed a delete (migration 0015)
}


async def _ids(ctx: Context, column: Any, where: Any) -> set[int]:
    async with ctx.db.read() as conn:
        return set((await conn.execute(select(column).where(where))).scalars())


async def _max_id(ctx: Context, table: str) -> int:
    async with ctx.db.read() as conn:
        return int(
            (await conn.execute(select(func.max(t.metadata.tables[table].c.id)))).scalar() or 0
        )


async def test_deleted_ids_are_never_reused(api: Api, ctx: Context) -> None:
    """Each time the newest row goes (the id SQLite without AUTOINCREMENT
    would hand out again), and the next one gets a new id."""
    # Buckets.
    gone_bucket = await api.bucket("gone")
    await api.post("/v1/bucket/delete", {"bucketID": gone_bucket})
    bucket = await api.bucket("kept")
    assert bucket != gone_bucket
    await api.fail("POST", "/v1/bucket/delete", "DataNotFound", 404, json={"bucketID": gone_bucket})
    await api.fail(
        "GET",
        "/v1/package/listBucketPackages",
        "DataNotFound",
        404,
        params={"bucketID": gone_bucket},
    )

    # Packages.
    gone_pkg = await api.package("gone", bucket_id=bucket)
    await api.post("/v1/package/delete", {"packageID": gone_pkg})
    pkg = await api.package("kept", bucket_id=bucket)
    assert pkg != gone_pkg
    await api.fail("GET", "/v1/package/get", "DataNotFound", 404, params={"packageID": gone_pkg})

    # Objects, and the layouts and blocks behind them (freed by GC).
    gone_obj = (await api.upload_one(pkg, "f.txt", text_data(3000, seed=1)))["objectID"]
    gone_layouts = await _ids(
        ctx, t.object_parts.c.layout_id, t.object_parts.c.object_id == gone_obj
    )
    top_layout, top_block = await _max_id(ctx, "layouts"), await _max_id(ctx, "blocks")
    assert gone_layouts and max(gone_layouts) == top_layout
    await api.post("/v1/object/delete", {"objectIDs": [gone_obj]})
    await api.gc()
    assert await _max_id(ctx, "layouts") < top_layout  # the newest layout and blocks are gone
    assert await _max_id(ctx, "blocks") < top_block
    data = text_data(3000, seed=2)
    obj = (await api.upload_one(pkg, "f.txt", data))["objectID"]
    assert obj != gone_obj
    layouts = await _ids(ctx, t.object_parts.c.layout_id, t.object_parts.c.object_id == obj)
    assert min(layouts) > top_layout
    blocks = await _ids(ctx, t.blocks.c.id, t.blocks.c.layout_id.in_(layouts))
    assert blocks and min(blocks) > top_block
    await api.fail("GET", "/v1/object/download", "DataNotFound", 404, params={"objectID": gone_obj})
    assert await api.download(obj) == data

    # Multipart uploads (an upload is an object until it completes).
    r = await api.post("/v1/object/newMultipartUpload", {"packageID": pkg, "path": "m.bin"})
    gone_upload = r["object"]["objectID"]
    assert (await api.upload_part(gone_upload, 0, b"part")).status_code == 200
    await api.post("/v1/object/completeMultipartUpload", {"objectID": gone_upload, "indexes": [0]})
    await api.post("/v1/object/delete", {"objectIDs": [gone_upload]})
    r = await api.post("/v1/object/newMultipartUpload", {"packageID": pkg, "path": "m.bin"})
    assert r["object"]["objectID"] != gone_upload
    late = await api.upload_part(gone_upload, 1, b"late")
    assert late.status_code == 404 and late.json()["code"] == "DataNotFound", late.text

    # User spaces.
    (gone_space,) = await api.add_spaces(1)
    await api.post("/v1/userSpace/delete", {"userSpaceID": gone_space})
    src, dst = await api.add_spaces(2)
    assert gone_space not in (src, dst)
    await api.fail(
        "GET", "/v1/userSpace/get", "DataNotFound", 404, params={"userSpaceID": gone_space}
    )

    # Sync tasks: the API keeps them (they go with their user); remove the
    # newest row the way a cascade would.
    write_tree(api.spaces[src] / "data", {"a.txt": b"a"})
    body = {
        "srcUserSpaceID": src,
        "srcPath": "data",
        "dests": [{"userSpaceID": dst, "path": "out"}],
        "trigger": {"type": "once"},
    }
    gone_task = (await api.post("/v1/spaceSync/createTask", body))["task"]["taskID"]
    async with ctx.db.write() as conn:
        await conn.execute(delete(t.transfer_tasks).where(t.transfer_tasks.c.id == gone_task))
    task = (await api.post("/v1/spaceSync/createTask", body))["task"]["taskID"]
    assert task != gone_task
    await api.fail(
        "GET", "/v1/spaceSync/getTask", "TaskNotFound", 404, params={"taskID": gone_task}
    )
    assert (await get_task(api, task))["taskID"] == task


async def test_every_id_column_never_goes_back(ctx: Context) -> None:
    """The schema itself: AUTOINCREMENT on SQLite, a sequence on PostgreSQL,
    for every table with a generated id (a new one must be listed here)."""
    generated = {tb.name for tb in t.metadata.sorted_tables if tb.autoincrement_column is not None}
    assert generated == ID_TABLES
    for name in ID_TABLES:
        assert t.metadata.tables[name].dialect_options["sqlite"]["autoincrement"] is True, name
    async with ctx.db.read() as conn:
        if ctx.db.is_sqlite:
            rows = await conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type='table'")
            )
            ddl = {name: sql for name, sql in rows}
            for name in ID_TABLES:
                assert "AUTOINCREMENT" in ddl[name], ddl[name]
        else:
            for name in ID_TABLES:
                seq = await conn.scalar(
                    text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": name}
                )
                assert seq, f"{name}.id has no sequence"


# -- the data dir ------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.lstat().st_mode)}
    for p in root.rglob("*"):
        out[p.relative_to(root).as_posix()] = stat.S_IMODE(p.lstat().st_mode)
    return out


def _assert_private(data: Path) -> dict[str, int]:
    modes = _modes(data)
    for name, mode in modes.items():
        want = 0o700 if (data / name).is_dir() else 0o600
        assert mode == want, f"{name}: {oct(mode)}"
    return modes


async def _start(data: Path) -> str | None:
    ctx = await Context.open(Settings(data_dir=data))
    try:
        key = await ctx.bootstrap()
        async with ctx.db.write() as conn:  # a write: the -wal and -shm files exist now
            await conn.execute(text("SELECT 1"))
        return key
    finally:
        await ctx.close()


async def test_fresh_data_dir_is_private(tmp_path: Path, umask_022: None) -> None:
    data = tmp_path / "data"
    ctx = await Context.open(Settings(data_dir=data))
    try:
        key = await ctx.bootstrap()
        assert key is not None
        async with ctx.db.write() as conn:
            await conn.execute(text("SELECT 1"))
        modes = _assert_private(data)  # while running: -wal and -shm exist
    finally:
        await ctx.close()
    for name in ("meta.db", "meta.db-wal", "meta.db-shm", "master.key", "root.key", "spaces"):
        assert name in modes, sorted(modes)
    assert "spaces/local" in modes
    assert modes["."] == 0o700
    _assert_private(data)
    assert (data / "root.key").read_text().strip() == key


async def test_loose_data_dir_is_tightened_at_start(tmp_path: Path, umask_022: None) -> None:
    """A data dir an older version left 0755/0644 is tightened by the next start."""
    data = tmp_path / "data"
    assert await _start(data) is not None
    for p in [data, *data.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    assert await _start(data) is None
    _assert_private(data)


async def test_private_whatever_the_umask(tmp_path: Path) -> None:
    """Modes are set explicitly, not left to the umask: 0 grants nothing more."""
    for umask in (0o000, 0o077):
        old = os.umask(umask)
        try:
            data = tmp_path / f"data-{umask:o}"
            await _start(data)
        finally:
            os.umask(old)
        _assert_private(data)


# -- the first-start root key ---------------------------------------------------


def test_root_key_shown_only_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "root.key"
    _announce_root_key("secret-key-value", key_file)
    out = capsys.readouterr().out
    assert "secret-key-value" not in out and str(key_file) in out, out

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _announce_root_key("secret-key-value", key_file)
    out = capsys.readouterr().out
    assert "secret-key-value" in out and str(key_file) in out, out


# -- a data dir that cannot be used -------------------------------------------


async def test_a_short_master_key_is_named(tmp_path: Path) -> None:
    """Found by review (2026-12-07): a truncated master.key ended `jcs serve`
    and every `jcs admin` command in a traceback (ValueError)."""
    data = tmp_path / "data"
    await _start(data)
    key_file = data / "master.key"
    key_file.write_bytes(key_file.read_bytes()[:16])
    with pytest.raises(ConfigError) as caught:
        await Context.open(Settings(data_dir=data))
    assert str(key_file) in caught.value.message and "32 bytes" in caught.value.message


async def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    """Found by review (2026-12-07): `jcs serve --data-dir FILE` ended in a
    traceback (FileExistsError) instead of a line naming the data dir."""
    data = tmp_path / "data"
    data.write_text("not a directory")
    with pytest.raises(ConfigError) as caught:
        await Context.open(Settings(data_dir=data))
    assert str(data) in caught.value.message and "cannot be used" in caught.value.message
