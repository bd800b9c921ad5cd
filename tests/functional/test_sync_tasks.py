"""Sync tasks between user spaces (spec §5, docs/sync.md) through the v1 API:
full and diff runs, filters, deleteSource, cancel, triggers and isolation
between users, on Local directories and an S3 server on loopback. Tasks run
through ``ctx.tasks.run_due()`` (what the ``sync`` job does), not a timer."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jcs_helpers import Api, Other, assert_time, expect_error, get_task, s3_space
from sqlalchemy import update
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_none

from jointcloud.context import Context
from jointcloud.core.models import TaskState
from jointcloud.core.transfer import engine as transfer
from jointcloud.core.transfer import runner as taskrunner
from jointcloud.errors import MetadataUnavailable
from jointcloud.meta import tables as t
from jointcloud.meta import transfers as transfer_rows
from jointcloud.meta.rows import now
from jointcloud.spaces.local import LocalSpace
from support.s3server import S3Server, s3_server_fixture
from support.trees import read_tree, s3_put_tree, s3_read_tree, write_tree

s3_server = s3_server_fixture(scope="module", bucket="jcs-sync-tasks")

ONCE = {"type": "once"}
HOURLY = {"type": "interval", "seconds": 3600}


# -- helpers -------------------------------------------------------------------


def identity(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime ns) of every file: a rewritten file (temp + rename) changes."""
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


async def create(
    api: Api,
    src: int,
    src_path: str,
    dests: list[tuple[int, str]],
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "srcUserSpaceID": src,
        "srcPath": src_path,
        "dests": [{"userSpaceID": d, "path": p} for d, p in dests],
        "mode": "full",
        "trigger": ONCE,
        **extra,
    }
    task = (await api.post("/v1/spaceSync/createTask", body))["task"]
    assert isinstance(task["taskID"], int)
    return dict(task)


async def set_task_row(ctx: Context, task_id: int, **values: Any) -> None:
    """Set columns of a task's row, as a server (or an older release) left it."""
    async with ctx.db.write() as conn:
        await conn.execute(
            update(t.transfer_tasks).where(t.transfer_tasks.c.id == task_id).values(**values)
        )


async def make_due(ctx: Context, task_id: int) -> None:
    """Bring a recurring task's next run forward to now (instead of waiting)."""
    await set_task_row(ctx, task_id, next_run_at=datetime.now(UTC) - timedelta(seconds=1))


def progress(task: dict[str, Any]) -> dict[str, int]:
    return dict(task["progress"])


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same attempts as the runner's, without the back-off waits."""

    def retrying() -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(transfer.ATTEMPTS),
            wait=wait_none(),
            retry=retry_if_exception(transfer.transient),
            reraise=True,
        )

    monkeypatch.setattr(transfer, "retrying", retrying)


# -- full runs -----------------------------------------------------------------

TREE = {
    "a.txt": b"alpha",
    "b.txt": b"bravo bravo",
    "sub/c.txt": b"charlie",
    "sub/deeper/d.bin": os.urandom(300_000),
    "unicode/données 🎉.txt": "é".encode() * 100,
    "empty": b"",
}


async def test_full_sync_local_to_two_local_dests(api: Api, ctx: Context) -> None:
    src, d1, d2 = await api.add_spaces(3)
    write_tree(api.spaces[src] / "data", TREE)
    task = await create(api, src, "data", [(d1, "copy"), (d2, "x/y")])
    assert task["type"] == "sync" and task["state"] == "pending"
    assert task["srcUserSpaceID"] == src and task["srcPath"] == "data"
    assert task["dests"] == [
        {"userSpaceID": d1, "path": "copy"},
        {"userSpaceID": d2, "path": "x/y"},
    ]
    assert task["mode"] == "full" and task["trigger"] == ONCE
    assert task["deleteSource"] is False
    assert task["runs"] == 0 and task["lastRunTime"] is None
    assert_time(task["createTime"])

    await ctx.tasks.run_due()
    assert read_tree(api.spaces[d1] / "copy") == TREE
    assert read_tree(api.spaces[d2] / "x" / "y") == TREE
    assert read_tree(api.spaces[src] / "data") == TREE  # nothing deleted at the source

    done = await get_task(api, task["taskID"])
    total = sum(len(v) for v in TREE.values())
    assert done["state"] == "succeeded", done
    assert progress(done) == {
        "filesTotal": 2 * len(TREE),
        "filesDone": 2 * len(TREE),
        "bytesTotal": 2 * total,
        "bytesDone": 2 * total,
        "filesFailed": 0,
        "filesSkipped": 0,
    }
    assert done["lastError"] is None and done["failures"] == []
    assert done["runs"] == 1 and done["nextRunTime"] is None
    assert assert_time(done["lastFinishTime"]) >= assert_time(done["lastRunTime"])

    # A once task does not run again.
    assert await ctx.tasks.run_due() == (0, 0)


async def test_whole_space_sync_leaves_the_block_area_out(api: Api, ctx: Context) -> None:
    home = next(iter(api.spaces))  # the admin's first space holds the blocks
    pid = await api.package("p")
    await api.upload_one(pid, "obj.bin", os.urandom(10_000))
    assert api.block_files()[home]
    write_tree(api.spaces[home], {"mine/file.txt": b"user data", "top.txt": b"top"})
    (dst,) = await api.add_spaces(1)
    task = await create(api, home, "", [(dst, "mirror")])
    await ctx.tasks.run_due()
    assert (await get_task(api, task["taskID"]))["state"] == "succeeded"
    assert read_tree(api.spaces[dst] / "mirror") == {
        "mine/file.txt": b"user data",
        "top.txt": b"top",
    }


async def test_full_sync_local_to_s3_and_local(api: Api, ctx: Context, s3_server: S3Server) -> None:
    src, local = await api.add_spaces(2)
    s3 = await s3_space(api, s3_server)
    files = {**TREE, "big.bin": os.urandom(5 * 1024 * 1024 + 11)}  # > one 4 MiB chunk
    write_tree(api.spaces[src] / "up", files)
    prefix = f"sync-{secrets.token_hex(4)}/dst"
    task = await create(api, src, "up", [(s3, prefix), (local, "also")])
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded", done
    assert progress(done)["filesDone"] == 2 * len(files)
    assert s3_read_tree(s3_server, prefix) == files
    assert read_tree(api.spaces[local] / "also") == files


async def test_sync_s3_to_local_diff(api: Api, ctx: Context, s3_server: S3Server) -> None:
    s3 = await s3_space(api, s3_server)
    (dst,) = await api.add_spaces(1)
    prefix = f"sync-{secrets.token_hex(4)}"
    files = {"one.txt": b"1", "dir/two.txt": b"22", "dir/sub/three.bin": os.urandom(70_000)}
    s3_put_tree(s3_server, f"{prefix}/src", files)
    s3_put_tree(s3_server, f"{prefix}/other", {"no.txt": b"not selected"})
    task = await create(api, s3, f"{prefix}/src", [(dst, "down")], mode="diff", trigger=HOURLY)
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded", done
    assert read_tree(api.spaces[dst] / "down") == files
    before = identity(api.spaces[dst] / "down")

    s3_put_tree(s3_server, f"{prefix}/src", {"dir/two.txt": b"twenty-two", "four.txt": b"4"})
    await make_due(ctx, task["taskID"])
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded", done
    assert progress(done)["filesDone"] == 2
    assert progress(done)["filesSkipped"] == 2
    after = read_tree(api.spaces[dst] / "down")
    assert after == {**files, "dir/two.txt": b"twenty-two", "four.txt": b"4"}
    now_ids = identity(api.spaces[dst] / "down")
    for rel in ("one.txt", "dir/sub/three.bin"):
        assert now_ids[rel] == before[rel], rel


async def test_an_s3_file_rewritten_in_the_second_of_its_copy_is_synced_next_run(
    api: Api, ctx: Context, s3_server: S3Server
) -> None:
    """S3 keeps modification times in whole seconds: a rewrite at the same
    size in the second the diff run copied the file left size and time as
    recorded, and every later run skipped it, the stale copy kept for good
    (found by review, 2026-12-07). The next run now compares its bytes."""
    s3 = await s3_space(api, s3_server)
    (dst,) = await api.add_spaces(1)
    client = s3_server.client()
    for _ in range(3):
        prefix = f"sync-{secrets.token_hex(4)}"
        key = f"{prefix}/src/f.txt"
        # The put, the run and the rewrite in one second: start at its beginning.
        await asyncio.sleep(1 - time.time() % 1)
        s3_put_tree(s3_server, f"{prefix}/src", {"f.txt": b"AAAA"})
        first = client.head_object(Bucket=s3_server.bucket, Key=key)["LastModified"]
        task = await create(api, s3, f"{prefix}/src", [(dst, prefix)], mode="diff", trigger=HOURLY)
        await ctx.tasks.run_due()
        assert read_tree(api.spaces[dst] / prefix) == {"f.txt": b"AAAA"}
        s3_put_tree(s3_server, f"{prefix}/src", {"f.txt": b"BBBB"})
        if client.head_object(Bucket=s3_server.bucket, Key=key)["LastModified"] == first:
            break
        await api.post("/v1/spaceSync/cancelTask", {"taskID": task["taskID"]})
    else:
        pytest.skip("could not rewrite the key within the second of its copy")
    for _ in range(2):
        await make_due(ctx, task["taskID"])
        await ctx.tasks.run_due()
        done = await get_task(api, task["taskID"])
        assert done["state"] == "succeeded", done
        assert read_tree(api.spaces[dst] / prefix) == {"f.txt": b"BBBB"}


async def test_keys_with_white_space_at_an_end_fail_instead_of_merging(
    api: Api, ctx: Context, s3_server: S3Server
) -> None:
    """The cloud client library trims white space (Unicode's, U+3000 too)
    from both ends of every path: ``report `` was written over ``report``
    and deleteSource then deleted both sources, the task 'succeeded'
    (found by review, 2026-12-06). Such a file now fails alone."""
    (src,) = await api.add_spaces(1)
    s3 = await s3_space(api, s3_server)
    files = {
        "report": b"first",
        "report ": b"second",
        "note\u3000": b"third",
        "dir /inner": b"inner white space is kept",
    }
    write_tree(api.spaces[src] / "ws", files)
    prefix = f"sync-{secrets.token_hex(4)}"
    task = await create(api, src, "ws", [(s3, prefix)], deleteSource=True)
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "failed", done
    failed = {f["path"]: f["error"] for f in done["failures"]}
    assert set(failed) == {"report ", "note\u3000"}, failed
    assert "trims" in failed["report "]
    assert s3_read_tree(s3_server, prefix) == {
        "report": b"first",
        "dir /inner": b"inner white space is kept",
    }
    assert read_tree(api.spaces[src] / "ws") == {"report ": b"second", "note\u3000": b"third"}


async def test_an_s3_key_with_trailing_white_space_is_not_read_as_another(
    api: Api, ctx: Context, s3_server: S3Server
) -> None:
    """An S3 source holding ``k`` and ``k ``: ``k `` was copied with the
    bytes of ``k`` (found by review, 2026-12-06)."""
    s3 = await s3_space(api, s3_server)
    (dst,) = await api.add_spaces(1)
    prefix = f"sync-{secrets.token_hex(4)}"
    s3_put_tree(s3_server, prefix, {"k": b"plain", "k ": b"other"})  # one size
    task = await create(api, s3, prefix, [(dst, "down")])
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "failed", done
    assert [f["path"] for f in done["failures"]] == ["k "]
    assert read_tree(api.spaces[dst] / "down") == {"k": b"plain"}


async def _s3_space_on(
    api: Api, server: S3Server, bucket: str, root: str, endpoint: str | None = None
) -> int:
    """An S3 user space on ``bucket`` of ``server``, its endpoint written as given."""
    storage = {**server.storage(), "bucket": bucket, "endpoint": endpoint or server.endpoint}
    body = {
        "name": f"s3-{secrets.token_hex(4)}",
        "storage": storage,
        "credential": server.credential(),
        "rootPath": root,
    }
    return int((await api.post("/v1/userSpace/create", body))["userSpace"]["userSpaceID"])


async def test_an_endpoint_written_otherwise_is_the_same_storage(
    api: Api, s3_server: S3Server
) -> None:
    """Two S3 spaces on one bucket, one endpoint written with a trailing
    '/': the same storage, so a sync from one onto an
    overlapping path of the other is refused (it overwrote its own source,
    and deleteSource deleted the only copy; found by review, 2026-12-06)."""
    bucket = s3_server.bucket
    first = await _s3_space_on(api, s3_server, bucket, f"a-{secrets.token_hex(4)}")
    alias_endpoint = s3_server.endpoint + "/"
    alias = await _s3_space_on(api, s3_server, bucket, f"b-{secrets.token_hex(4)}", alias_endpoint)
    body = {
        "srcUserSpaceID": first,
        "srcPath": "data",
        "dests": [{"userSpaceID": alias, "path": "data/copy"}],
        "trigger": ONCE,
    }
    r = await api.request("POST", "/v1/spaceSync/createTask", json=body)
    assert "in the same storage" in expect_error(r, "BadArgument", 400)
    body["dests"] = [{"userSpaceID": alias, "path": ""}]
    body["srcPath"] = "data/sub"
    r = await api.request("POST", "/v1/spaceSync/createTask", json=body)
    assert "write over its own source" in expect_error(r, "BadArgument", 400)


async def test_a_sync_keeps_out_of_every_block_area_on_its_storage(
    api: Api, ctx: Context, s3_server: S3Server
) -> None:
    """Another space's block area on the same bucket (another rootPath) is
    no sync source, and a sync of the whole bucket with deleteSource leaves
    it alone (it deleted the other space's blocks; found by review)."""
    bucket = f"areas-{secrets.token_hex(4)}"
    s3_server.create_bucket(bucket)
    owner = await _s3_space_on(api, s3_server, bucket, "owner-blocks")
    other = await _s3_space_on(api, s3_server, bucket, "other-blocks")
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="owner-blocks/blocks/ab/abcd.0", Body=b"a block")
    client.put_object(Bucket=bucket, Key="user/file.txt", Body=b"user data")
    (dst,) = await api.add_spaces(1)
    body = {
        "srcUserSpaceID": other,
        "srcPath": "owner-blocks",
        "dests": [{"userSpaceID": dst, "path": "stolen"}],
        "trigger": ONCE,
        "deleteSource": True,
    }
    r = await api.request("POST", "/v1/spaceSync/createTask", json=body)
    message = expect_error(r, "BadArgument", 400)
    assert f"block area 'owner-blocks' of user space {owner}" in message
    task = await create(api, other, "", [(dst, "all")], deleteSource=True)
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded", done
    assert read_tree(api.spaces[dst] / "all") == {"user/file.txt": b"user data"}
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["owner-blocks/blocks/ab/abcd.0"]


# -- diff runs -----------------------------------------------------------------


async def test_diff_rerun_copies_only_new_and_changed(api: Api, ctx: Context) -> None:
    src, dst = await api.add_spaces(2)
    root = api.spaces[src] / "src"
    files = {
        "same.txt": b"unchanged",
        "grows.txt": b"short",
        "rewritten.txt": b"AAAA",
        "touched.txt": b"same bytes",
        "dir/same.bin": os.urandom(50_000),
    }
    write_tree(root, files)
    task = await create(api, src, "src", [(dst, "dst")], mode="diff", trigger=HOURLY)
    assert task["mode"] == "diff" and task["compare"] == "sizeMtime"
    await ctx.tasks.run_due()
    first = await get_task(api, task["taskID"])
    assert first["state"] == "succeeded", first
    assert progress(first)["filesDone"] == len(files)
    assert progress(first)["filesSkipped"] == 0
    out = api.spaces[dst] / "dst"
    assert read_tree(out) == files
    before = identity(out)

    (root / "grows.txt").write_bytes(b"much longer now")  # size changed
    st = (root / "rewritten.txt").stat()
    (root / "rewritten.txt").write_bytes(b"BBBB")  # same size, later mtime
    os.utime(root / "rewritten.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    st = (root / "touched.txt").stat()
    os.utime(root / "touched.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))
    (root / "new" / "file.txt").parent.mkdir()
    (root / "new" / "file.txt").write_bytes(b"brand new")

    await make_due(ctx, task["taskID"])
    await ctx.tasks.run_due()
    second = await get_task(api, task["taskID"])
    assert second["state"] == "succeeded", second
    assert second["runs"] == 2
    assert progress(second)["filesTotal"] == len(files) + 1
    assert progress(second)["filesDone"] == 4
    assert progress(second)["filesSkipped"] == 2
    assert progress(second)["bytesDone"] == len(b"much longer now") + 4 + 10 + 9

    assert read_tree(out) == read_tree(root)
    after = identity(out)
    assert after["same.txt"] == before["same.txt"]
    assert after["dir/same.bin"] == before["dir/same.bin"]
    for rel in ("grows.txt", "rewritten.txt", "touched.txt"):
        assert after[rel] != before[rel], rel

    # A third run with nothing changed copies nothing.
    await make_due(ctx, task["taskID"])
    await ctx.tasks.run_due()
    third = await get_task(api, task["taskID"])
    assert progress(third)["filesDone"] == 0
    assert progress(third)["filesSkipped"] == len(files) + 1
    assert identity(out) == after


async def test_diff_new_task_trusts_newer_destination_copies(api: Api, ctx: Context) -> None:
    """With no record, a destination file of the same size that is not older
    than the source is unchanged; an older one or another size is copied."""
    src, dst = await api.add_spaces(2)
    root, out = api.spaces[src] / "s", api.spaces[dst] / "d"
    write_tree(root, {"fresh.txt": b"12345", "stale.txt": b"12345", "resized.txt": b"12345"})
    write_tree(out, {"fresh.txt": b"xxxxx", "stale.txt": b"yyyyy", "resized.txt": b"123"})
    old = time.time() - 3600
    os.utime(out / "stale.txt", (old, old))
    before = identity(out)
    task = await create(api, src, "s", [(dst, "d")], mode="diff")
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded", done
    assert progress(done)["filesSkipped"] == 1
    assert progress(done)["filesDone"] == 2
    assert read_tree(out) == {"fresh.txt": b"xxxxx", "stale.txt": b"12345", "resized.txt": b"12345"}
    assert identity(out)["fresh.txt"] == before["fresh.txt"]


async def test_hash_compare_detects_same_size_same_mtime_change(api: Api, ctx: Context) -> None:
    src, dst = await api.add_spaces(2)
    root = api.spaces[src] / "h"
    files = {"a.txt": b"first", "b.txt": b"other", "c/d.txt": b"third"}
    write_tree(root, files)
    hour_ago = time.time() - 3600  # not modified within a clock tick of the run
    for rel in files:
        os.utime(root / rel, (hour_ago, hour_ago))
    by_hash = await create(
        api, src, "h", [(dst, "hash")], mode="diff", compare="hash", trigger=HOURLY
    )
    by_time = await create(api, src, "h", [(dst, "time")], mode="diff", trigger=HOURLY)
    assert by_hash["compare"] == "hash"
    await ctx.tasks.run_due()
    assert read_tree(api.spaces[dst] / "hash") == files
    assert read_tree(api.spaces[dst] / "time") == files
    before = identity(api.spaces[dst] / "hash")

    st = (root / "a.txt").stat()
    (root / "a.txt").write_bytes(b"FIRST")  # same size ...
    os.utime(root / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and same mtime

    for task in (by_hash, by_time):
        await make_due(ctx, task["taskID"])
    await ctx.tasks.run_due()
    hashed = await get_task(api, by_hash["taskID"])
    assert hashed["state"] == "succeeded", hashed
    assert progress(hashed)["filesDone"] == 1
    assert progress(hashed)["filesSkipped"] == 2
    assert read_tree(api.spaces[dst] / "hash") == {**files, "a.txt": b"FIRST"}
    after = identity(api.spaces[dst] / "hash")
    assert after["b.txt"] == before["b.txt"] and after["c/d.txt"] == before["c/d.txt"]
    # size + mtime cannot see this change (the documented trade-off).
    timed = await get_task(api, by_time["taskID"])
    assert progress(timed)["filesSkipped"] == 3
    assert read_tree(api.spaces[dst] / "time") == files


async def test_full_mode_copies_everything_again(api: Api, ctx: Context) -> None:
    src, dst = await api.add_spaces(2)
    files = {"a": b"1", "b/c": b"22", "b/d": b"333"}
    write_tree(api.spaces[src] / "f", files)
    task = await create(api, src, "f", [(dst, "f")], trigger=HOURLY)
    await ctx.tasks.run_due()
    before = identity(api.spaces[dst] / "f")
    await make_due(ctx, task["taskID"])
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded" and done["runs"] == 2
    assert progress(done)["filesDone"] == 3
    assert progress(done)["filesSkipped"] == 0
    after = identity(api.spaces[dst] / "f")
    assert read_tree(api.spaces[dst] / "f") == files
    assert all(after[k][0] != before[k][0] for k in files), (before, after)


# -- filters -------------------------------------------------------------------

FILTER_TREE = {
    "a.TXT": b"x" * 10,
    "b.txt": b"x" * 100,
    "c.log": b"x" * 1000,
    "d": b"x" * 50,
    "dir/e.txt": b"x" * 20,
    "dir/sub/f.bin": b"x" * 5,
    "dirty/h.txt": b"x" * 15,
    "other/g.txt": b"x" * 30,
    "x.tar.gz": b"x" * 40,
}

FILTER_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"minSize": 20, "maxSize": 100}, {"b.txt", "d", "dir/e.txt", "other/g.txt", "x.tar.gz"}),
    ({"includeExt": ["txt"]}, {"a.TXT", "b.txt", "dir/e.txt", "dirty/h.txt", "other/g.txt"}),
    (
        {"includeExt": [".TXT", "Bin"]},
        {"a.TXT", "b.txt", "dir/e.txt", "dirty/h.txt", "other/g.txt", "dir/sub/f.bin"},
    ),
    ({"excludeExt": [".LOG", "gz"]}, set(FILTER_TREE) - {"c.log", "x.tar.gz"}),
    ({"includePaths": ["dir"]}, {"dir/e.txt", "dir/sub/f.bin"}),
    ({"includePaths": ["/dir/sub/"]}, {"dir/sub/f.bin"}),
    ({"includePaths": ["other/*", "d"]}, {"other/g.txt", "d"}),
    ({"excludePaths": ["dir/sub", "*.txt"]}, {"a.TXT", "c.log", "d", "x.tar.gz"}),
    ({"excludePaths": ["dir"]}, set(FILTER_TREE) - {"dir/e.txt", "dir/sub/f.bin"}),
    (
        {"includeExt": ["txt"], "minSize": 20, "excludePaths": ["other"]},
        {"b.txt", "dir/e.txt"},
    ),
]


async def test_filters_select_exactly_what_they_say(api: Api, ctx: Context) -> None:
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "tree", FILTER_TREE)
    tasks = []
    for i, (flt, _) in enumerate(FILTER_CASES):
        tasks.append(await create(api, src, "tree", [(dst, f"case{i}")], filter=flt))
    await ctx.tasks.run_due()
    for i, (flt, expected) in enumerate(FILTER_CASES):
        got = set(read_tree(api.spaces[dst] / f"case{i}"))
        assert got == expected, (flt, sorted(got), sorted(expected))
        done = await get_task(api, tasks[i]["taskID"])
        assert done["state"] == "succeeded", done
        assert progress(done)["filesTotal"] == len(expected), (flt, done)
        assert progress(done)["bytesDone"] == sum(len(FILTER_TREE[k]) for k in expected)
        assert set(done["filter"]) == set(flt)
    # Filters select; they never touch the source.
    assert read_tree(api.spaces[src] / "tree") == FILTER_TREE


# -- deleteSource --------------------------------------------------------------


async def test_delete_source_after_copy_keeps_failed_and_unselected(
    api: Api, ctx: Context, fast_retries: None
) -> None:
    src, dst = await api.add_spaces(2)
    root, out = api.spaces[src] / "outbox", api.spaces[dst] / "inbox"
    files = {
        "a.txt": b"alpha",
        "b.txt": os.urandom(200_000),
        "sub/c.txt": b"charlie",
        "skip.log": b"filtered out",
        "blocked/d.txt": b"cannot land",
    }
    write_tree(root, files)
    write_tree(out, {"blocked": b"a regular file where a directory is needed"})
    task = await create(
        api, src, "outbox", [(dst, "inbox")], deleteSource=True, filter={"excludeExt": ["log"]}
    )
    assert task["deleteSource"] is True
    await ctx.tasks.run_due()

    done = await get_task(api, task["taskID"])
    assert done["state"] == "failed", done
    assert "blocked/d.txt" in done["lastError"], done["lastError"]
    assert [f["path"] for f in done["failures"]] == ["blocked/d.txt"], done["failures"]
    assert done["failures"][0]["error"]
    assert progress(done)["filesFailed"] == 1
    assert progress(done)["filesDone"] == 3
    assert progress(done)["filesTotal"] == 4

    # Copied files reached the destination and only then left the source.
    assert read_tree(out) == {
        "a.txt": files["a.txt"],
        "b.txt": files["b.txt"],
        "sub/c.txt": files["sub/c.txt"],
        "blocked": b"a regular file where a directory is needed",
    }
    assert read_tree(root) == {
        "skip.log": files["skip.log"],
        "blocked/d.txt": files["blocked/d.txt"],
    }


async def test_delete_source_with_two_dests(api: Api, ctx: Context) -> None:
    src, d1, d2 = await api.add_spaces(3)
    files = {"m/1.bin": os.urandom(10_000), "m/2.bin": os.urandom(20_000)}
    write_tree(api.spaces[src] / "mv", files)
    task = await create(api, src, "mv", [(d1, "a"), (d2, "b")], deleteSource=True)
    await ctx.tasks.run_due()
    assert (await get_task(api, task["taskID"]))["state"] == "succeeded"
    assert read_tree(api.spaces[d1] / "a") == files
    assert read_tree(api.spaces[d2] / "b") == files
    assert read_tree(api.spaces[src] / "mv") == {}

    # diff: the first destination already has a file of the same size, newer,
    # with other bytes (size + mtime would call it unchanged). The source may
    # go only once every destination holds a copy verified by SHA-256.
    write_tree(api.spaces[src] / "s", {"f.txt": b"correct"})
    write_tree(api.spaces[d1] / "d", {"f.txt": b"WRONG!!"})
    task = await create(api, src, "s", [(d1, "d"), (d2, "d")], mode="diff", deleteSource=True)
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] in ("succeeded", "failed"), done
    assert read_tree(api.spaces[d2] / "d") == {"f.txt": b"correct"}
    source_left = read_tree(api.spaces[src] / "s")
    d1_holds = read_tree(api.spaces[d1] / "d")
    # Either the source is kept, or every destination really holds its bytes.
    assert source_left == {"f.txt": b"correct"} or d1_holds == {"f.txt": b"correct"}, (
        source_left,
        d1_holds,
    )


async def test_sync_to_storage_root_never_writes_into_block_area(api: Api, ctx: Context) -> None:
    """A source directory that happens to hold "jcs/..." files, synced to the
    root of a space whose block area is "jcs": the blocks stay untouched."""
    src, dst = await api.add_spaces(2)
    pid = await api.package("victim")
    content = os.urandom(50_000)
    victim = await api.upload_one(pid, "v.bin", content, affinity=dst)
    (block,) = api.block_files()[dst]
    block_bytes = block.read_bytes()
    block_rel = block.relative_to(api.spaces[dst]).as_posix()
    write_tree(
        api.spaces[src] / "backup",
        {block_rel: b"junk", "jcs/notes.txt": b"junk", "ok.txt": b"ok"},
    )
    await create(api, src, "backup", [(dst, "")])
    await ctx.tasks.run_due()
    assert (api.spaces[dst] / "ok.txt").read_bytes() == b"ok"
    assert block.read_bytes() == block_bytes
    assert not (api.spaces[dst] / "jcs" / "notes.txt").exists()
    assert await api.download(victim["objectID"]) == content


# -- cancel --------------------------------------------------------------------


@dataclass
class Hangs:
    half_written: asyncio.Event  # a streamed file is half written, its read hangs
    batch_held: threading.Event  # a batch of small files hangs at its fourth read
    release: threading.Event  # lets the batch go on (to see that it was cancelled)


@pytest.fixture
def hanging_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hangs]:
    """Streamed reads of local files deliver half of their first chunk, then
    hang until cancelled (the reader asked for more: the first half is
    written); the whole-file reads of a worker-thread batch of small files
    hang from the fourth one on, until released."""
    hangs = Hangs(asyncio.Event(), threading.Event(), threading.Event())
    read_stream, read_blocking = LocalSpace.read_stream, LocalSpace.read_blocking
    small_reads = 0

    async def hanging_stream(
        self: LocalSpace, key: str, *args: Any, **kw: Any
    ) -> AsyncIterator[bytes]:
        async for chunk in read_stream(self, key, *args, **kw):
            yield chunk[: len(chunk) // 2]
            hangs.half_written.set()
            await asyncio.Event().wait()

    def hanging_read_blocking(self: LocalSpace, key: str) -> bytes:
        nonlocal small_reads
        small_reads += 1
        if small_reads > 3:
            hangs.batch_held.set()
            hangs.release.wait(30)
        return read_blocking(self, key)

    monkeypatch.setattr(LocalSpace, "read_stream", hanging_stream)
    monkeypatch.setattr(LocalSpace, "read_blocking", hanging_read_blocking)
    try:
        yield hangs
    finally:
        hangs.release.set()


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".jcs-tmp-*") if p.is_file()]


async def test_cancel_mid_run_leaves_no_partial_files(
    api: Api, ctx: Context, hanging_reads: Hangs
) -> None:
    ctx.tasks.parallel = 2
    src, dst = await api.add_spaces(2)
    # Two files large enough to be streamed (written to a temp file as they
    # come), listed first, then many small ones.
    files = {f"big/b{i}.bin": os.urandom(4_500_000 + i) for i in range(2)}
    files.update({f"small/d{i % 3}/f{i:03}.bin": os.urandom(20_000 + i) for i in range(30)})
    write_tree(api.spaces[src] / "many", files)
    out = api.spaces[dst] / "many"
    task = await create(api, src, "many", [(dst, "many")])
    runner = asyncio.create_task(ctx.tasks.run_due())
    try:
        # Cancel while a file is half written and a batch of small ones is
        # in flight.
        await asyncio.wait_for(hanging_reads.half_written.wait(), timeout=15)
        assert await asyncio.to_thread(hanging_reads.batch_held.wait, 15)
        assert temp_files(out)
        assert await api.post("/v1/spaceSync/cancelTask", {"taskID": task["taskID"]}) is None
        cancelled_at = time.monotonic()
        await asyncio.wait_for(asyncio.shield(runner), timeout=5)
        assert time.monotonic() - cancelled_at < 3
    finally:
        if not runner.done():
            runner.cancel()
        hanging_reads.release.set()  # the batch's thread sees the cancel and ends

    done = await get_task(api, task["taskID"])
    assert done["state"] == "cancelled", done
    assert done["nextRunTime"] is None
    assert temp_files(out) == []
    copied = read_tree(out)
    assert len(copied) < len(files), len(copied)
    for rel, content in copied.items():
        assert content == files[rel], rel  # every file there is complete
    assert progress(done)["filesDone"] <= len(copied)

    # Cancelled is final: nothing runs later, and a second cancel is a no-op.
    assert await api.post("/v1/spaceSync/cancelTask", {"taskID": task["taskID"]}) is None
    assert await ctx.tasks.run_due() == (0, 0)
    assert read_tree(out) == copied
    assert (await get_task(api, task["taskID"]))["state"] == "cancelled"


async def test_cancel_recurring_and_unknown_tasks(api: Api, ctx: Context) -> None:
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "r", {"f": b"1"})
    task = await create(api, src, "r", [(dst, "r")], trigger=HOURLY)
    await ctx.tasks.run_due()
    assert (await get_task(api, task["taskID"]))["nextRunTime"] is not None
    await api.post("/v1/spaceSync/cancelTask", {"taskID": task["taskID"]})
    done = await get_task(api, task["taskID"])
    assert done["state"] == "cancelled" and done["nextRunTime"] is None
    await make_due(ctx, task["taskID"])
    assert await ctx.tasks.run_due() == (0, 0)

    # A once task that already finished keeps its outcome.
    once = await create(api, src, "r", [(dst, "once")])
    await ctx.tasks.run_due()
    assert await api.post("/v1/spaceSync/cancelTask", {"taskID": once["taskID"]}) is None
    assert (await get_task(api, once["taskID"]))["state"] == "succeeded"

    r = await api.request("POST", "/v1/spaceSync/cancelTask", json={"taskID": 987654})
    assert "987654" in expect_error(r, "TaskNotFound", 404)
    r = await api.request("GET", "/v1/spaceSync/getTask", params={"taskID": 987654})
    assert "987654" in expect_error(r, "TaskNotFound", 404)


# -- triggers ------------------------------------------------------------------


async def test_interval_trigger_schedules_next_run(api: Api, ctx: Context) -> None:
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "i", {"f.txt": b"interval"})
    task = await create(api, src, "i", [(dst, "i")], trigger={"type": "interval", "seconds": 3600})
    assert task["trigger"] == {"type": "interval", "seconds": 3600}
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded" and done["runs"] == 1
    started = assert_time(done["lastRunTime"])
    assert assert_time(done["nextRunTime"]) - started == timedelta(seconds=3600)
    # Not due yet: nothing runs now.
    assert await ctx.tasks.run_due() == (0, 0)
    assert (await get_task(api, task["taskID"]))["runs"] == 1


def _window(start: datetime, end: datetime, timezone: str) -> dict[str, Any]:
    hhmm = "%H:%M"
    return {
        "type": "window",
        "start": start.strftime(hhmm),
        "end": end.strftime(hhmm),
        "timezone": timezone,
    }


async def test_window_trigger(api: Api, ctx: Context) -> None:
    """A window in Asia/Kolkata (+05:30, no DST): created outside it, the task
    waits for the window's start; inside it, it runs once and next runs at
    tomorrow's start."""
    tz = ZoneInfo("Asia/Kolkata")
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "w", {"f.txt": b"window"})

    local_now = datetime.now(tz)
    start = (local_now + timedelta(hours=2)).replace(second=0, microsecond=0)
    later = _window(start, start + timedelta(hours=1), "Asia/Kolkata")
    waiting = await create(api, src, "w", [(dst, "later")], trigger=later)
    assert waiting["trigger"] == later
    assert assert_time(waiting["nextRunTime"]) == start
    assert await ctx.tasks.run_due() == (0, 0)
    got = await get_task(api, waiting["taskID"])
    assert got["state"] == "pending" and got["runs"] == 0
    assert not (api.spaces[dst] / "later").exists()

    start = (local_now - timedelta(hours=1)).replace(second=0, microsecond=0)
    end = (local_now + timedelta(hours=1)).replace(second=0, microsecond=0)
    task = await create(api, src, "w", [(dst, "now")], trigger=_window(start, end, "Asia/Kolkata"))
    assert await ctx.tasks.run_due() == (1, 0)
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded", done
    assert read_tree(api.spaces[dst] / "now") == {"f.txt": b"window"}
    # One run per window: the next is tomorrow's start, not later today.
    assert assert_time(done["nextRunTime"]) == start + timedelta(days=1)
    assert await ctx.tasks.run_due() == (0, 0)
    assert (await get_task(api, waiting["taskID"]))["runs"] == 0


def _gmt_zone_at_hour(hour: int) -> tuple[str, ZoneInfo]:
    """A fixed-offset zone (no DST) where the local hour now is ``hour``."""
    offset = (hour - datetime.now(UTC).hour) % 24
    if offset > 12:
        offset -= 24
    name = "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # Etc/GMT-5 is UTC+5
    return name, ZoneInfo(name)


def _at_23(ts: datetime) -> datetime:
    return ts.replace(hour=23, minute=0, second=0, microsecond=0)


async def test_window_across_midnight(api: Api, ctx: Context) -> None:
    """23:00-01:00 crosses midnight: at 23:xx local it runs and the next run is
    tomorrow's 23:00; a task created at noon local waits for tonight's 23:00."""
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "n", {"f.txt": b"night"})
    name, tz = _gmt_zone_at_hour(23)
    night = {"type": "window", "start": "23:00", "end": "01:00", "timezone": name}
    task = await create(api, src, "n", [(dst, "n")], trigger=night)
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded", done
    assert read_tree(api.spaces[dst] / "n") == {"f.txt": b"night"}
    ran = assert_time(done["lastRunTime"]).astimezone(tz)
    window_start = _at_23(ran) - timedelta(days=0 if ran.hour == 23 else 1)
    assert assert_time(done["nextRunTime"]) == window_start + timedelta(days=1)

    name, tz = _gmt_zone_at_hour(12)
    noon = {**night, "timezone": name}
    waiting = await create(api, src, "n", [(dst, "later")], trigger=noon)
    created = assert_time(waiting["createTime"]).astimezone(tz)
    assert assert_time(waiting["nextRunTime"]) == _at_23(created)
    assert await ctx.tasks.run_due() == (0, 0)
    assert (await get_task(api, waiting["taskID"]))["state"] == "pending"
    assert not (api.spaces[dst] / "later").exists()


# -- users ---------------------------------------------------------------------


async def test_tasks_are_private_to_their_user(api: Api, ctx: Context, bob: Other) -> None:
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "mine", {"f": b"admin"})
    mine = await create(api, src, "mine", [(dst, "x")])
    (bob_space,) = bob.api.spaces
    write_tree(bob.api.spaces[bob_space] / "his", {"g": b"bob"})
    (bob_dst,) = await bob.api.add_spaces(1)
    his = await create(bob.api, bob_space, "his", [(bob_dst, "y")])

    listed = (await api.get("/v1/spaceSync/listTasks"))["tasks"]
    assert [t["taskID"] for t in listed] == [mine["taskID"]]
    listed = (await bob.api.get("/v1/spaceSync/listTasks"))["tasks"]
    assert [t["taskID"] for t in listed] == [his["taskID"]]
    assert listed[0]["srcPath"] == "his"

    for who, other in ((bob.api, mine), (api, his)):
        r = await who.request("GET", "/v1/spaceSync/getTask", params={"taskID": other["taskID"]})
        expect_error(r, "TaskNotFound", 404)
        r = await who.request("POST", "/v1/spaceSync/cancelTask", json={"taskID": other["taskID"]})
        expect_error(r, "TaskNotFound", 404)

    # Nor can Bob sync from or into the admin's spaces.
    r = await bob.api.request(
        "POST",
        "/v1/spaceSync/createTask",
        json={"srcUserSpaceID": src, "srcPath": "mine", "dests": [{"userSpaceID": bob_space}]},
    )
    assert str(src) in expect_error(r, "DataNotFound", 404)
    r = await bob.api.request(
        "POST",
        "/v1/spaceSync/createTask",
        json={"srcUserSpaceID": bob_space, "srcPath": "his", "dests": [{"userSpaceID": dst}]},
    )
    assert str(dst) in expect_error(r, "DataNotFound", 404)

    await ctx.tasks.run_due()
    assert (await get_task(api, mine["taskID"]))["state"] == "succeeded"
    assert (await get_task(bob.api, his["taskID"]))["state"] == "succeeded"
    assert read_tree(api.spaces[dst] / "x") == {"f": b"admin"}
    assert read_tree(bob.api.spaces[bob_dst] / "y") == {"g": b"bob"}


DEEP_TOKEN = base64.urlsafe_b64encode(b"[" * 1100).decode()


async def test_the_task_list_comes_in_pages(api: Api, bob: Other) -> None:
    """Finished tasks are kept 7 days, so a user's list can be long: it is
    paged as object listings are (``maxTasks``, at most and by default
    1,000; ``nextContinuationToken`` while more remain), by id, and a
    page never shows another user's task."""
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "t", {"f": b"x"})
    made = [(await create(api, src, "t", [(dst, f"d{n}")]))["taskID"] for n in range(5)]
    (bob_space,) = bob.api.spaces
    write_tree(bob.api.spaces[bob_space] / "b", {"g": b"y"})
    (bob_dst,) = await bob.api.add_spaces(1)
    await create(bob.api, bob_space, "b", [(bob_dst, "z")])

    whole = await api.get("/v1/spaceSync/listTasks")
    assert [t["taskID"] for t in whole["tasks"]] == made and "nextContinuationToken" not in whole
    seen: list[int] = []
    token: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"maxTasks": 2}
        if token is not None:
            params["continuationToken"] = token
        page = await api.get("/v1/spaceSync/listTasks", **params)
        pages += 1
        assert len(page["tasks"]) <= 2
        seen += [t["taskID"] for t in page["tasks"]]
        token = page.get("nextContinuationToken")
        if token is None:
            break
    assert seen == made and pages == 3
    # Exactly a page's worth left: the last full page says no more.
    last = await api.get("/v1/spaceSync/listTasks", maxTasks=5)
    assert len(last["tasks"]) == 5 and "nextContinuationToken" not in last

    for params, field in (
        ({"maxTasks": 0}, "maxTasks"),
        ({"maxTasks": 1001}, "maxTasks"),
        ({"maxTasks": "two"}, "maxTasks"),
        ({"maxTasks": -1}, "maxTasks"),
        ({"maxTasks": "9" * 30}, "maxTasks"),
        ({"continuationToken": "A" * 20_000}, "continuationToken"),
        ({"continuationToken": "eyJ0IjogIjEifQ"}, "continuationToken"),  # {"t": "1"}
        ({"continuationToken": "not-a-token"}, "continuationToken"),
        ({"continuationToken": "eyJ0IjogLTF9"}, "continuationToken"),  # {"t": -1}
        # JSON nested deeper than the decoder goes (a 500, found by review)
        ({"continuationToken": DEEP_TOKEN}, "continuationToken"),
    ):
        r = await api.request("GET", "/v1/spaceSync/listTasks", params=params)
        assert field in expect_error(r, "BadArgument", 400), params


async def test_a_task_read_before_another_process_ran_it_is_not_claimed_again(
    api: Api, ctx: Context
) -> None:
    """Two processes read the due tasks; one claims and finishes a run
    before the other claims: the other's claim (the lease it saw, none, is
    none again) must not start one more run of a task not due any more."""
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "twice", {"f.txt": b"once only"})
    task = await create(api, src, "twice", [(dst, "twice")], trigger=HOURLY)
    ts = now()
    async with ctx.db.read() as conn:
        [seen] = await transfer_rows.due(conn, ts, 10)
    await ctx.tasks.run_due()  # the other process's run, start to end
    assert await ctx.tasks._claim(seen, ts) is None
    assert (await get_task(api, task["taskID"]))["runs"] == 1


async def test_a_source_inside_its_destination_is_refused(api: Api) -> None:
    """A review lost a file this way: with d/z/a and d/z/z/a of one size, a
    sync of d/z into d wrote z/a over d/z/a (the source file a, not read
    yet), then read that as the source of a: the first file's bytes were
    gone everywhere."""
    (space,) = await api.add_spaces(1)
    write_tree(api.spaces[space] / "d" / "z", {"a": b"XXXX-precious", "z/a": b"YYYY-other!!!"})
    cases = [
        ("d/z", [(space, "d")], "srcPath 'd/z' is inside dests[0].path 'd'"),
        ("d", [(space, "d/z")], "dests[0].path 'd/z' is inside srcPath 'd'"),
        ("d", [(space, "")], "srcPath 'd' is inside dests[0].path ''"),  # the root holds all
        ("d/z", [(space, "e"), (space, "e/f")], "dests[1].path 'e/f' overlaps dests[0].path"),
    ]
    for src_path, dests, message in cases:
        body = {
            "srcUserSpaceID": space,
            "srcPath": src_path,
            "dests": [{"userSpaceID": s, "path": p} for s, p in dests],
        }
        r = await api.client.post("/v1/spaceSync/createTask", json=body)
        assert message in expect_error(r, "BadArgument", 400), (src_path, dests)
    assert read_tree(api.spaces[space] / "d") == {
        "z/a": b"XXXX-precious",
        "z/z/a": b"YYYY-other!!!",
    }
    # Side by side in one space is fine.
    await create(api, space, "d/z", [(space, "d/y")])


def held_copies(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event]:
    """Copies one file at a time, each waiting for the second event; the
    first is set when a copy has started."""
    ctx.tasks.parallel = 1
    monkeypatch.setattr(transfer.TransferRun, "_batchable", lambda self, unit: False)
    started, gate = asyncio.Event(), asyncio.Event()
    copy_once = transfer.TransferRun._copy_once

    async def paced(self: Any, item: Any, sink: Any, verify: Any) -> None:
        started.set()
        await gate.wait()
        await copy_once(self, item, sink, verify)

    monkeypatch.setattr(transfer.TransferRun, "_copy_once", paced)
    return started, gate


async def test_a_space_a_run_uses_cannot_be_deleted_or_moved_until_the_run_ends(
    api: Api, ctx: Context, bob: Other, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review deleted a running sync's destination space (it held no
    blocks), another user made a space of his own at its directory, and
    the run went on writing into it, over his files."""
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "data", {"1.txt": b"admin-1", "2.txt": b"admin-2"})
    started, gate = held_copies(ctx, monkeypatch)
    task = await create(api, src, "data", [(dst, "copy")])
    running = asyncio.create_task(ctx.tasks.run_due())
    await asyncio.wait_for(started.wait(), 30)
    for used in (src, dst):
        r = await api.client.post("/v1/userSpace/delete", json={"userSpaceID": used})
        message = expect_error(r, "OperationFailed", 409)
        assert f"used by transfer task {task['taskID']}" in message
        moved = {"type": "Local", "path": str(api.tmp_path / f"elsewhere{used}")}
        r = await api.client.post(
            "/v1/userSpace/update", json={"userSpaceID": used, "storage": moved}
        )
        assert "its storage cannot change" in expect_error(r, "OperationFailed", 409)
        assert not (api.tmp_path / f"elsewhere{used}").exists()  # refused: nothing made
    # What does not move its files stays allowed.
    await api.post("/v1/userSpace/update", {"userSpaceID": dst, "name": "renamed"})
    gate.set()
    await asyncio.wait_for(running, 30)
    assert (await get_task(api, task["taskID"]))["state"] == "succeeded"
    assert read_tree(api.spaces[dst] / "copy") == {"1.txt": b"admin-1", "2.txt": b"admin-2"}
    await api.post("/v1/userSpace/delete", {"userSpaceID": dst})  # the run is over


async def test_a_task_cancelled_while_paused_is_forgotten_and_frees_its_spaces(
    api: Api, ctx: Context
) -> None:
    """A window task whose run paused outside its window kept that run open
    when cancelled: GC never forgot it, and (now) its spaces could not be
    deleted."""
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "w", {"a": b"a"})
    ts = datetime.now(UTC)
    closed = _window(ts + timedelta(hours=3), ts + timedelta(hours=4), "UTC")
    task = await create(api, src, "w", [(dst, "w")], trigger=closed)
    async with ctx.db.write() as conn:  # due now, though its window is closed: it pauses
        await conn.execute(
            update(t.transfer_tasks)
            .where(t.transfer_tasks.c.id == task["taskID"])
            .values(next_run_at=ts - timedelta(seconds=1))
        )
    await ctx.tasks.run_due()
    r = await api.client.post("/v1/userSpace/delete", json={"userSpaceID": dst})
    assert "whose run has not ended" in expect_error(r, "OperationFailed", 409)
    await api.post("/v1/spaceSync/cancelTask", {"taskID": task["taskID"]})
    await api.post("/v1/userSpace/delete", {"userSpaceID": dst})
    async with ctx.db.write() as conn:
        assert await transfer_rows.delete_finished(conn, now() + timedelta(days=1)) == 1


async def test_a_file_name_that_is_not_utf8_is_a_failure_of_that_file_alone(
    api: Api, ctx: Context
) -> None:
    """A Latin-1 name (old archives, Samba shares) failed the whole run with
    an encoding error and no failure listed, its batch's records lost."""
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "data", {"ok.txt": b"fine"})
    (api.spaces[src] / "data" / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name")
    task = await create(api, src, "data", [(dst, "copy")], mode="diff", trigger=HOURLY)
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "failed" and "Unicode" not in (done["lastError"] or "")
    assert done["progress"]["filesDone"] == 1 and done["progress"]["filesFailed"] == 1
    [failure] = done["failures"]
    assert failure["path"] == "caf\\xe9.txt" and "not valid UTF-8" in failure["error"]
    assert read_tree(api.spaces[dst] / "copy") == {"ok.txt": b"fine"}


async def test_a_run_outlives_a_failed_save_of_its_progress_and_can_still_be_cancelled(
    api: Api, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keeper of a run (progress, lease, cancel) ended at its first
    failed save, and the run went on with no lease and deaf to a cancel."""
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "data", {f"{i}.txt": b"x" for i in range(3)})
    monkeypatch.setattr(taskrunner, "SAVE_EVERY", 0.01)
    saves = 0
    saved_after_failure = asyncio.Event()
    renew = transfer_rows.renew

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal saves
        saves += 1
        if saves == 1:
            raise MetadataUnavailable("the metadata database did not answer within 30 s")
        saved_after_failure.set()
        return await renew(*args, **kwargs)

    monkeypatch.setattr(transfer_rows, "renew", flaky)
    copying, gate = held_copies(ctx, monkeypatch)
    task = await create(api, src, "data", [(dst, "copy")])
    running = asyncio.create_task(ctx.tasks.run_due())
    await asyncio.wait_for(copying.wait(), 30)
    await asyncio.wait_for(saved_after_failure.wait(), 30)  # the keeper went on
    await api.post("/v1/spaceSync/cancelTask", {"taskID": task["taskID"]})
    await asyncio.wait_for(running, 30)
    done = await get_task(api, task["taskID"])
    assert done["state"] == "cancelled" and done["progress"]["filesDone"] == 0
    gate.set()


async def test_a_resumed_run_copies_again_a_file_changed_since_its_unrecorded_copy(
    api: Api, ctx: Context
) -> None:
    """The state a kill -9 leaves: the run copied db.bin, its record did not
    reach the database; while the server was down the file was edited (same
    size). The resumed run took the old copy for done and recorded the new
    source: no later diff run looked at it again."""
    src, dst = await api.add_spaces(2)
    source = api.spaces[src] / "data" / "db.bin"
    copy = api.spaces[dst] / "copy" / "db.bin"
    write_tree(api.spaces[src] / "data", {"db.bin": b"version-1"})
    task = await create(api, src, "data", [(dst, "copy")], mode="diff", trigger=HOURLY)
    ts = time.time()
    async with ctx.db.write() as conn:  # run 1 open, its lease gone, started a minute ago
        await conn.execute(
            update(t.transfer_tasks)
            .where(t.transfer_tasks.c.id == task["taskID"])
            .values(
                run_no=1,
                run_open=True,
                state="running",
                last_run_at=datetime.fromtimestamp(ts - 60, UTC),
                lease_owner=None,
                lease_until=None,
                next_run_at=None,
            )
        )
    write_tree(api.spaces[dst] / "copy", {"db.bin": b"version-1"})
    os.utime(copy, (ts - 30, ts - 30))  # copied 30 s ago, then the crash
    source.write_bytes(b"version-2")
    os.utime(source, (ts - 10, ts - 10))  # edited 10 s ago, while the server was down
    await ctx.tasks.run_due()  # the resumed run
    assert copy.read_bytes() == b"version-2"
    assert (await get_task(api, task["taskID"]))["state"] == "succeeded"


async def cancelled_behind_its_runner(
    api: Api, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], asyncio.Task[tuple[int, int]], asyncio.Event, int]:
    """A sync of two files whose runner is held in its first copy and does
    not look for a cancel, cancelled through another process (in the
    database): the task, its runner, the gate that lets its copies go on,
    and the destination space."""
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "data", {"1.txt": b"one", "2.txt": b"two"})
    monkeypatch.setattr(taskrunner, "SAVE_EVERY", 3600.0)  # it does not look meanwhile
    started, gate = held_copies(ctx, monkeypatch)
    task = await create(api, src, "data", [(dst, "copy")])
    running = asyncio.create_task(ctx.tasks.run_due())
    await asyncio.wait_for(started.wait(), 30)
    async with ctx.db.write() as conn:
        row = await transfer_rows.get(conn, task["taskID"])
        assert row is not None and await transfer_rows.cancel(conn, row.task_id, row.user_id)
    return task, running, gate, dst


async def test_a_task_cancelled_by_another_process_holds_its_spaces_until_its_run_stops(
    api: Api, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel cleared the run's open mark while the runner (which looks
    for a cancel every second) was still copying: the space could be
    deleted and taken, and the copies went into it. And a runner stopped
    (a shutdown) after a cancel marked the run open again, for ever."""
    task, running, _gate, dst = await cancelled_behind_its_runner(api, ctx, monkeypatch)
    r = await api.client.post("/v1/userSpace/delete", json={"userSpaceID": dst})
    assert "whose run has not ended" in expect_error(r, "OperationFailed", 409)
    running.cancel()  # this server stops before its runner saw the cancel
    with pytest.raises(asyncio.CancelledError):
        await running
    assert (await get_task(api, task["taskID"]))["state"] == "cancelled"
    await api.post("/v1/userSpace/delete", {"userSpaceID": dst})  # the run has ended
    async with ctx.db.write() as conn:
        assert await transfer_rows.delete_finished(conn, now() + timedelta(days=1)) == 1


async def test_a_cancelled_run_shows_its_finish_time_only_once_its_counts_are_final(
    api: Api, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel set the finish time itself while the runner went on
    copying until it saw the cancel: a caller that waited for the finish
    time read counters a second old (a CI run of the e2e cancel test saw
    4,288 files counted and 9,723 copied)."""
    task, running, gate, dst = await cancelled_behind_its_runner(api, ctx, monkeypatch)
    seen = await get_task(api, task["taskID"])
    assert seen["state"] == "cancelled" and seen["lastFinishTime"] is None, seen

    gate.set()  # the runner copies on, then ends its run
    await asyncio.wait_for(running, 30)
    done = await get_task(api, task["taskID"])
    assert done["state"] == "cancelled" and done["lastFinishTime"] is not None, done
    assert assert_time(done["lastFinishTime"]) >= assert_time(done["lastRunTime"])
    copied = read_tree(api.spaces[dst] / "copy")
    assert progress(done)["filesDone"] == len(copied) == 2, (done, copied)


async def test_a_cancelled_run_whose_runner_died_is_kept_from_its_lease_end(
    api: Api, ctx: Context
) -> None:
    """A cancelled run whose runner was killed before it stopped ended at
    the latest with the runner's lease: the API shows that as its finish,
    and GC counts from it (it counted from the last finish time, an
    earlier run's or none, its creation: a task created a week ago was
    forgotten the moment its lease ran out)."""
    src, dst = await api.add_spaces(2)
    task = await create(api, src, "data", [(dst, "copy")])
    lease_end = now() - timedelta(seconds=5)
    await set_task_row(
        ctx,
        task["taskID"],
        state="cancelled",
        run_open=True,
        created_at=lease_end - timedelta(days=8),
        last_run_at=lease_end - timedelta(days=8),
        lease_owner="a-dead-server",
        lease_until=lease_end,
        last_finish_at=None,
    )
    shown = await get_task(api, task["taskID"])
    assert abs(assert_time(shown["lastFinishTime"]) - lease_end) < timedelta(seconds=1)
    async with ctx.db.write() as conn:
        assert await transfer_rows.delete_finished(conn, now() - timedelta(days=7)) == 0
        assert await transfer_rows.delete_finished(conn, now() + timedelta(days=1)) == 1


async def test_a_run_resumed_by_a_server_whose_clock_is_behind_ends_after_it_began(
    api: Api, ctx: Context
) -> None:
    """A run's start is the clock of the server that began it, its end that
    of the one that stopped it (it resumed the run): an end before the
    start read as an earlier run's, and ``--watch`` waited for ever."""
    src, dst = await api.add_spaces(2)
    task = await create(api, src, "data", [(dst, "copy")])
    began = now() + timedelta(minutes=5)  # the first server's clock is ahead
    await set_task_row(
        ctx,
        task["taskID"],
        state="running",
        run_open=True,
        run_no=1,
        last_run_at=began,
        lease_owner="this-one",
        lease_until=now() + timedelta(seconds=60),
    )
    async with ctx.db.write() as conn:
        row = await transfer_rows.get(conn, task["taskID"])
        assert row is not None and await transfer_rows.cancel(conn, row.task_id, row.user_id)
        await transfer_rows.finish(
            conn,
            row.task_id,
            "this-one",
            state=TaskState.CANCELLED,
            ts=now(),
            progress=row.progress,
            last_error=None,
            next_run=None,
        )
    done = await get_task(api, task["taskID"])
    assert done["lastFinishTime"] is not None, done
    assert assert_time(done["lastFinishTime"]) >= assert_time(done["lastRunTime"]), done


async def test_a_file_the_filter_leaves_out_is_no_failure_whatever_its_name(
    api: Api, ctx: Context
) -> None:
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "data", {"keep/ok.txt": b"fine", "cache/x": b"x"})
    (api.spaces[src] / "data" / "cache" / os.fsdecode(b"caf\xe9.tmp")).write_bytes(b"latin-1")
    task = await create(
        api, src, "data", [(dst, "copy")], mode="diff", filter={"excludePaths": ["cache"]}
    )
    await ctx.tasks.run_due()
    done = await get_task(api, task["taskID"])
    assert done["state"] == "succeeded" and done["failures"] == [], done
    assert read_tree(api.spaces[dst] / "copy") == {"keep/ok.txt": b"fine"}


async def test_a_cancelled_task_left_with_an_open_run_by_an_older_release_holds_nothing(
    api: Api, ctx: Context
) -> None:
    src, dst = await api.add_spaces(2)
    task = await create(api, src, "data", [(dst, "copy")], trigger=HOURLY)
    async with ctx.db.write() as conn:  # as the release before this one left it
        await conn.execute(
            update(t.transfer_tasks)
            .where(t.transfer_tasks.c.id == task["taskID"])
            .values(state="cancelled", run_open=True, lease_owner=None, lease_until=None)
        )
    await api.post("/v1/userSpace/delete", {"userSpaceID": dst})
    async with ctx.db.write() as conn:
        assert await transfer_rows.delete_finished(conn, now() + timedelta(days=1)) == 1
