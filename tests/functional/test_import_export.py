"""Import of a space directory into a package and export of a package into a
space (spec §4.6, §4.7, docs/sync.md), inline and as tasks, on Local
directories and on an S3 server on loopback: the bytes that come out are the
bytes that went in."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jcs_helpers import Api, assert_time, expect_error, get_task, s3_space

from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.core.commands import ObjectAddress, PackageRef, PutObject
from jointcloud.core.transfer.spec import TransferFilter
from jointcloud.spaces.local import LocalSpace
from support.s3server import S3Server, s3_server_fixture
from support.trees import read_tree, s3_put_tree, s3_read_tree, write_tree

s3_server = s3_server_fixture(scope="module", bucket="jcs-import-export")

EC23 = {"type": "ec", "k": 2, "n": 3, "chunkSize": 65536}


def sample_tree(big: int = 3 * 1024 * 1024 + 17) -> dict[str, bytes]:
    """Nested directories, unicode names, empty files and a few MiB of random bytes."""
    return {
        "données/日本語/ファイル.txt": "こんにちは、世界\n".encode() * 50,
        "données/vide.txt": b"",
        "emoji 🎉.bin": os.urandom(4097),
        "a/b/c/d/deep.dat": os.urandom(70_000),
        "a/b/empty": b"",
        "big/random.bin": os.urandom(big),
        "top.txt": b"top level\n",
    }


def digests(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


async def run_tasks(ctx: Context) -> None:
    await ctx.tasks.run_due()


async def package_contents(api: Api, package_id: int) -> dict[str, bytes]:
    return {o["path"]: await api.download(o["objectID"]) for o in await api.objects(package_id)}


# -- inline --------------------------------------------------------------------


async def test_inline_import_export_round_trip(api: Api) -> None:
    src_space, dst_space = await api.add_spaces(2)
    files = sample_tree()
    write_tree(api.spaces[src_space] / "in" / "tree", files)
    bucket = await api.bucket("imports")

    data = await api.post(
        "/v1/userSpace/createPackage",
        {"userSpaceID": src_space, "path": "/in/tree/", "bucketID": bucket, "name": "tree"},
    )
    assert "task" not in data
    assert data["objectCount"] == len(files)
    assert data["totalSize"] == sum(len(v) for v in files.values())
    package = data["package"]
    assert package["name"] == "tree" and package["bucketID"] == bucket
    pid = int(package["packageID"])
    assert digests(await package_contents(api, pid)) == digests(files)

    # The import reads; it does not move or change the source.
    assert digests(read_tree(api.spaces[src_space] / "in" / "tree")) == digests(files)

    out = await api.post(
        "/v1/userSpace/downloadPackage",
        {"packageID": pid, "userSpaceID": dst_space, "rootPath": "out/here"},
    )
    assert out == {"objectCount": len(files), "totalSize": sum(len(v) for v in files.values())}
    exported = read_tree(api.spaces[dst_space] / "out" / "here")
    assert digests(exported) == digests(files)
    assert exported == files

    (dst,) = await api.add_spaces(1)
    pid = await api.package("flat")
    await api.upload(pid, [("x.txt", b"x"), ("d/y.txt", b"yy")])
    out = await api.post(
        "/v1/userSpace/downloadPackage", {"packageID": pid, "userSpaceID": dst, "rootPath": "/"}
    )
    assert out == {"objectCount": 2, "totalSize": 3}
    assert (api.spaces[dst] / "x.txt").read_bytes() == b"x"
    assert (api.spaces[dst] / "d" / "y.txt").read_bytes() == b"yy"


# -- as tasks ------------------------------------------------------------------


async def test_task_import_export_round_trip(api: Api, ctx: Context) -> None:
    src_space, dst_space = await api.add_spaces(2)
    files = sample_tree()
    total = sum(len(v) for v in files.values())
    write_tree(api.spaces[src_space] / "tree", files)
    bucket = await api.bucket("async-imports")

    data = await api.post(
        "/v1/userSpace/createPackage",
        {
            "userSpaceID": src_space,
            "path": "tree",
            "bucketID": bucket,
            "name": "async-tree",
            "async": True,
        },
    )
    assert "objectCount" not in data
    pid = int(data["package"]["packageID"])
    task = data["task"]
    assert task["type"] == "import"
    assert task["state"] == "pending"
    assert task["srcUserSpaceID"] == src_space and task["srcPath"] == "tree"
    assert task["bucketID"] == bucket and task["name"] == "async-tree"
    assert task["packageID"] == pid
    assert_time(task["createTime"])
    task_id = int(task["taskID"])

    await run_tasks(ctx)
    done = await get_task(api, task_id)
    assert done["state"] == "succeeded", done
    assert done["lastError"] is None and done["failures"] == []
    assert done["progress"] == {
        "filesTotal": len(files),
        "filesDone": len(files),
        "bytesTotal": total,
        "bytesDone": total,
        "filesFailed": 0,
        "filesSkipped": 0,
    }
    assert done["result"] == {"objectCount": len(files), "totalSize": total, "packageID": pid}
    assert done["runs"] == 1
    assert done["nextRunTime"] is None
    assert assert_time(done["lastFinishTime"]) >= assert_time(done["lastRunTime"])
    assert digests(await package_contents(api, pid)) == digests(files)

    data = await api.post(
        "/v1/userSpace/downloadPackage",
        {"packageID": pid, "userSpaceID": dst_space, "rootPath": "restored", "async": True},
    )
    assert set(data) == {"task"}
    export = data["task"]
    assert export["type"] == "export" and export["state"] == "pending"
    assert export["packageID"] == pid and export["userSpaceID"] == dst_space
    assert export["rootPath"] == "restored"

    await run_tasks(ctx)
    done = await get_task(api, int(export["taskID"]))
    assert done["state"] == "succeeded", done
    assert done["result"] == {"objectCount": len(files), "totalSize": total}
    assert done["progress"]["filesDone"] == len(files)
    assert done["progress"]["bytesDone"] == total
    assert read_tree(api.spaces[dst_space] / "restored") == files

    listed = (await api.get("/v1/spaceSync/listTasks"))["tasks"]
    assert {t["taskID"] for t in listed} >= {task_id, export["taskID"]}


async def test_ec_package_import_export(api: Api, ctx: Context) -> None:
    """An EC(2,3) package over three spaces: export reassembles every object."""
    s2, s3 = await api.add_spaces(2)
    assert len(api.spaces) == 3
    files = sample_tree(big=2 * 1024 * 1024 + 5)
    write_tree(api.spaces[s2] / "ec-src", files)
    bucket = await api.bucket("ec")
    data = await api.post(
        "/v1/userSpace/createPackage",
        {
            "userSpaceID": s2,
            "path": "ec-src",
            "bucketID": bucket,
            "name": "ec-pkg",
            "redundancy": EC23,
            "async": True,
        },
    )
    pid = int(data["package"]["packageID"])
    await run_tasks(ctx)
    assert (await get_task(api, int(data["task"]["taskID"])))["state"] == "succeeded"
    objs = await api.objects(pid)
    assert {o["path"] for o in objs} == set(files)
    assert all(o["redundancy"]["type"] == "ec" for o in objs if o["size"] != "0"), objs
    # The blocks really are spread over the three spaces.
    assert all(api.block_files()[sid] for sid in api.spaces), api.block_files()

    out = await api.post(
        "/v1/userSpace/downloadPackage", {"packageID": pid, "userSpaceID": s3, "rootPath": "ec"}
    )
    assert out["objectCount"] == len(files)
    assert read_tree(api.spaces[s3] / "ec") == files


# -- S3 ------------------------------------------------------------------------


async def test_export_local_package_to_s3(api: Api, s3_server: S3Server) -> None:
    (src,) = await api.add_spaces(1)
    s3 = await s3_space(api, s3_server)
    files = sample_tree(big=5 * 1024 * 1024 + 3)  # more than one 4 MiB chunk
    write_tree(api.spaces[src] / "exp", files)
    data = await api.post(
        "/v1/userSpace/createPackage",
        {"userSpaceID": src, "path": "exp", "bucketID": await api.bucket("b"), "name": "p"},
    )
    pid = int(data["package"]["packageID"])
    prefix = f"export-{secrets.token_hex(4)}"
    out = await api.post(
        "/v1/userSpace/downloadPackage",
        {"packageID": pid, "userSpaceID": s3, "rootPath": prefix},
    )
    assert out["objectCount"] == len(files)
    assert s3_read_tree(s3_server, prefix) == files


async def test_import_s3_directory_into_package(
    api: Api, ctx: Context, s3_server: S3Server
) -> None:
    s3 = await s3_space(api, s3_server)
    (dst,) = await api.add_spaces(1)
    prefix = f"import-{secrets.token_hex(4)}"
    files = sample_tree(big=1024 * 1024 + 1)
    s3_put_tree(s3_server, prefix, files)
    s3_put_tree(s3_server, prefix + "-sibling", {"not-me.txt": b"outside the prefix"})
    bucket = await api.bucket("from-s3")

    inline = await api.post(
        "/v1/userSpace/createPackage",
        {"userSpaceID": s3, "path": prefix, "bucketID": bucket, "name": "inline"},
    )
    assert inline["objectCount"] == len(files)
    assert await package_contents(api, int(inline["package"]["packageID"])) == files

    queued = await api.post(
        "/v1/userSpace/createPackage",
        {"userSpaceID": s3, "path": prefix, "bucketID": bucket, "name": "task", "async": True},
    )
    await run_tasks(ctx)
    done = await get_task(api, int(queued["task"]["taskID"]))
    assert done["state"] == "succeeded", done
    pid = int(queued["package"]["packageID"])
    assert await package_contents(api, pid) == files

    await api.post(
        "/v1/userSpace/downloadPackage", {"packageID": pid, "userSpaceID": dst, "rootPath": "s3"}
    )
    assert read_tree(api.spaces[dst] / "s3") == files


# -- failures and the block area -----------------------------------------------


async def test_failed_import_inline_removes_package_task_keeps_it(api: Api, ctx: Context) -> None:
    """rep(5) over two spaces cannot store anything: the inline import fails
    and leaves no package; the import task fails, keeps its package and says
    so in lastError (docs/sync.md)."""
    (src,) = await api.add_spaces(1)
    files = {"f.txt": b"content", "g/h.txt": b"more"}
    write_tree(api.spaces[src] / "imp", files)
    bucket = await api.bucket("failing")
    body = {
        "userSpaceID": src,
        "path": "imp",
        "bucketID": bucket,
        "name": "rep5",
        "redundancy": {"type": "rep", "repCount": 5},
    }
    r = await api.request("POST", "/v1/userSpace/createPackage", json=body)
    assert r.status_code == 409 and r.json()["code"] == "OperationFailed", r.text
    assert "import failed" in r.json()["message"]
    assert (await api.get("/v1/package/listBucketPackages", bucketID=bucket))["packages"] == []

    data = await api.post("/v1/userSpace/createPackage", {**body, "async": True})
    pid = int(data["package"]["packageID"])
    await run_tasks(ctx)
    done = await get_task(api, int(data["task"]["taskID"]))
    assert done["state"] == "failed", done
    assert "result" not in done
    assert progress_failed(done) == len(files)
    assert sorted(f["path"] for f in done["failures"]) == sorted(files)
    packages = (await api.get("/v1/package/listBucketPackages", bucketID=bucket))["packages"]
    assert [p["packageID"] for p in packages] == [pid]
    assert await api.objects(pid) == []
    assert read_tree(api.spaces[src] / "imp") == files  # the source is untouched
    # "keeps the package with what was imported, and says so in lastError"
    assert "package" in done["lastError"].lower(), done["lastError"]


def progress_failed(task: dict[str, Any]) -> int:
    return int(task["progress"]["filesFailed"])


async def test_export_to_storage_root_never_writes_into_block_area(api: Api) -> None:
    """An object whose path lies in the space's block area ("jcs/...") must not
    land there when a package is exported to rootPath "": it would overwrite
    the blocks of other objects."""
    (space,) = await api.add_spaces(1)
    victim_pkg = await api.package("victim")
    content = os.urandom(100_000)
    victim = await api.upload_one(victim_pkg, "v.bin", content, affinity=space)
    (block,) = api.block_files()[space]
    block_bytes = block.read_bytes()
    block_rel = block.relative_to(api.spaces[space]).as_posix()
    assert block_rel.startswith("jcs/blocks/")

    pid = await api.package("hostile")
    await api.upload(pid, [(block_rel, b"junk"), ("jcs/notes.txt", b"junk"), ("ok.txt", b"ok")])
    await api.request(
        "POST",
        "/v1/userSpace/downloadPackage",
        json={"packageID": pid, "userSpaceID": space, "rootPath": ""},
    )
    assert block.read_bytes() == block_bytes
    assert not (api.spaces[space] / "jcs" / "notes.txt").exists()
    assert await api.download(victim["objectID"]) == content


async def test_export_takes_folder_markers_for_directories(api: Api) -> None:
    """S3 keys are opaque: a package may hold the folder marker ``d/`` (what
    consoles and rclone make) beside ``d/x`` and ``d``'s sibling file ``r``
    beside ``r/``. An export writes files only; a marker never replaces or
    blocks one."""
    (dst,) = await api.add_spaces(1)
    pid = await api.package("markers")
    await api.upload(pid, [("d/x", b"x"), ("r", b"data")])
    user = await api.ctx.accounts.authenticate(api.client.headers["Authorization"].split()[1])
    who = Principal.user(user.user_id)
    for marker in ("d/", "r/", "empty/"):
        address = ObjectAddress(PackageRef.by_id(pid), marker)
        await api.ctx.objects.put(who, PutObject(address, _empty()))
    out = await api.post(
        "/v1/userSpace/downloadPackage", {"packageID": pid, "userSpaceID": dst, "rootPath": "m"}
    )
    assert out == {"objectCount": 2, "totalSize": 5}
    assert read_tree(api.spaces[dst] / "m") == {"d/x": b"x", "r": b"data"}


async def _empty() -> AsyncIterator[bytes]:
    yield b""


async def test_filters_with_many_wildcards_are_refused_and_selection_runs_off_the_loop(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review sent 1,000 patterns of 500 '*' each (inside the list
    bounds): translating them held the event loop, every client, 6.6 s a
    request. A pattern now has at most 16 wildcards, and the matching of a
    tree against a filter runs in a worker thread."""
    (space,) = await api.add_spaces(1)
    package = await api.package("globs")
    await api.upload(package, [("a.txt", b"a"), ("b.bin", b"b")])
    body = {"packageID": package, "userSpaceID": space, "rootPath": "out"}
    greedy = ["*" + "a*" * 500 + f"{i}b" for i in range(1000)]
    r = await api.client.post(
        "/v1/userSpace/downloadPackage", json={**body, "filter": {"includePaths": greedy}}
    )
    message = expect_error(r, "BadArgument", 400)
    assert "filter.includePaths[0] has 501 wildcards" in message and "at most 16" in message

    threads: list[bool] = []
    selects = TransferFilter.selects

    def noted(self: TransferFilter, rel: str, size: int) -> bool:
        threads.append(threading.current_thread() is threading.main_thread())
        return selects(self, rel, size)

    monkeypatch.setattr(TransferFilter, "selects", noted)
    r = await api.client.post(
        "/v1/userSpace/downloadPackage",
        json={**body, "filter": {"includePaths": ["*.txt", "*" + "?*" * 7]}},
    )
    assert r.status_code == 200, r.text
    assert threads and not any(threads)  # every file matched away from the loop's thread
    assert read_tree(api.spaces[space] / "out") == {"a.txt": b"a"}


async def test_only_the_exact_temporary_file_name_is_reserved(api: Api, ctx: Context) -> None:
    """A Local space's temporary files are ``.jcs-tmp-`` and 16 hex digits:
    only that exact name is JointCloud's. A user's ``.jcs-tmp-notes.txt``
    is imported like any file; an object named like a temporary file is
    not exported (it would be hidden from listings and swept), and the
    export says which and why."""
    src, dst = await api.add_spaces(2)
    files = {
        ".jcs-tmp-notes.txt": b"mine",
        "d/.jcs-tmp-0123456789abcdefX": b"mine too",
        ".jcs-tmp-0123456789ABCDEF": b"upper case: not ours",
        "a.txt": b"a",
    }
    write_tree(api.spaces[src] / "imp", files)
    bucket = await api.bucket("tmpnames")
    data = await api.post(
        "/v1/userSpace/createPackage",
        {"userSpaceID": src, "path": "imp", "bucketID": bucket, "name": "t"},
    )
    pid = int(data["package"]["packageID"])
    assert await package_contents(api, pid) == files

    reserved = "r/.jcs-tmp-0123456789abcdef"
    await api.upload(pid, [(reserved, b"named like ours")])
    data = await api.post(
        "/v1/userSpace/downloadPackage",
        {"packageID": pid, "userSpaceID": dst, "rootPath": "out", "async": True},
    )
    await run_tasks(ctx)
    done = await get_task(api, int(data["task"]["taskID"]))
    assert [f["path"] for f in done["failures"]] == [reserved], done
    assert "reserved for JointCloud's temporary files" in done["failures"][0]["error"]
    assert read_tree(api.spaces[dst] / "out") == files


async def test_an_inline_import_whose_task_is_cancelled_says_so(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inline import runs as a task too, which its owner may cancel: the
    request answered "import failed, the package was removed: None"."""
    (space,) = await api.add_spaces(1)
    write_tree(api.spaces[space] / "in", {"a.txt": b"a", "b.txt": b"b"})
    reading, release = asyncio.Event(), asyncio.Event()
    real = LocalSpace.read

    async def read(self: LocalSpace, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if key.startswith("in/"):
            reading.set()
            await release.wait()
        return await real(self, key, offset, length)

    monkeypatch.setattr(LocalSpace, "read", read)
    body = {"userSpaceID": space, "path": "/in/", "bucketID": await api.bucket("b"), "name": "p"}
    answer = asyncio.ensure_future(api.client.post("/v1/userSpace/createPackage", json=body))
    async with asyncio.timeout(30):
        await reading.wait()
    [task] = (await api.get("/v1/spaceSync/listTasks"))["tasks"]
    await api.post("/v1/spaceSync/cancelTask", {"taskID": task["taskID"]})
    release.set()
    message = expect_error(await answer, "OperationFailed", 409)
    assert message == "import failed, the package was removed: its task was cancelled"
