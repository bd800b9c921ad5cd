"""Every input bounded (issue 8): the attacks of the security review, replayed
through the in-process v1 API. Each is refused with 400 and the JCS envelope
``{"code": "BadArgument", "message": ..., "data": null}`` whose message names
the field, and leaves nothing behind (no bucket, package, object or task)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from jcs_helpers import Api, expect_error, get_task, info_part, multipart, snapshot
from sqlalchemy import text, update

from jointcloud.context import Context
from jointcloud.core.transfer import service as transfer_service
from jointcloud.meta import transfers as task_repo
from jointcloud.meta.rows import now
from support.trees import write_tree

BIG = 2**63  # one past int64
LOCAL = {"type": "Local", "path": "/tmp/jcs-bounds-never-created"}  # never reached
YEAR = 366 * 24 * 3600  # the longest interval accepted (a leap year)
SYNC = "/v1/spaceSync/createTask"
IMPORT = "/v1/userSpace/createPackage"
EXPORT = "/v1/userSpace/downloadPackage"


@dataclass
class World:
    src: int  # a Local space holding data/{f.txt, sub/g.txt, skip.log}
    dst: int  # an empty Local space
    bid: int
    pid: int  # holds x.txt
    oid: int
    mp: int  # a multipart upload in progress, part 0 uploaded
    tid: int  # a sync task (pending)


async def make_world(api: Api) -> World:
    src, dst = await api.add_spaces(2)
    files = {"f.txt": b"file", "sub/g.txt": b"gee", "skip.log": b"log"}
    write_tree(api.spaces[src] / "data", files)
    (api.spaces[dst] / "out").mkdir(parents=True)
    bid = await api.bucket("b")
    pid = await api.package("p", bucket_id=bid)
    oid = (await api.upload_one(pid, "x.txt", b"x"))["objectID"]
    pending = await api.post("/v1/object/newMultipartUpload", {"packageID": pid, "path": "mp"})
    mp = pending["object"]["objectID"]
    assert (await api.upload_part(mp, 0, b"part")).status_code == 200
    body = sync(src, dst, trigger={"type": "interval", "seconds": 3600})
    tid = (await api.post(SYNC, body))["task"]["taskID"]
    return World(src, dst, bid, pid, oid, mp, tid)


def sync(src: int, dst: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "srcUserSpaceID": src,
        "srcPath": "data",
        "dests": [{"userSpaceID": dst, "path": "out/copy"}],
    }
    body.update(changes)
    return body


def imp(w: World, **changes: Any) -> dict[str, Any]:
    return {"userSpaceID": w.src, "path": "data", "bucketID": w.bid, "name": "imp", **changes}


def exp(w: World, **changes: Any) -> dict[str, Any]:
    return {"packageID": w.pid, "userSpaceID": w.dst, "rootPath": "out/exp", **changes}


async def refused(api: Api, method: str, url: str, field: str, **kw: Any) -> str:
    """The request answers 400 BadArgument and the message names ``field``."""
    if "json" in kw:  # JSON escapes: lone surrogates travel as \udxxx
        kw["content"] = json.dumps(kw.pop("json")).encode()
        kw["headers"] = {"Content-Type": "application/json"}
    r = await api.request(method, url, **kw)
    msg = expect_error(r, "BadArgument", 400)
    assert field in msg, (url, kw, msg)
    return msg


async def tasks(api: Api) -> list[dict[str, Any]]:
    return list((await api.get("/v1/spaceSync/listTasks"))["tasks"])


# -- IDs: beyond int64, negative, a string ---------------------------------------

V = Any  # the bad value
Post = Callable[[World, V], dict[str, Any]]

# Every endpoint that takes an ID in a JSON body: (url, body with the bad
# value in one ID field, the name the message must carry).
POST_IDS: dict[str, tuple[str, Post, str]] = {
    "bucket.update": (
        "/v1/bucket/update",
        lambda w, v: {"bucketID": v, "redundancy": None},
        "bucketID",
    ),
    "bucket.delete": ("/v1/bucket/delete", lambda w, v: {"bucketID": v}, "bucketID"),
    "package.create": ("/v1/package/create", lambda w, v: {"bucketID": v, "name": "n"}, "bucketID"),
    "package.update": (
        "/v1/package/update",
        lambda w, v: {"packageID": v, "redundancy": None},
        "packageID",
    ),
    "package.delete": ("/v1/package/delete", lambda w, v: {"packageID": v}, "packageID"),
    "package.clone.src": (
        "/v1/package/clone",
        lambda w, v: {"packageID": v, "bucketID": w.bid, "name": "c"},
        "packageID",
    ),
    "package.clone.bucket": (
        "/v1/package/clone",
        lambda w, v: {"packageID": w.pid, "bucketID": v, "name": "c"},
        "bucketID",
    ),
    "object.listByIDs": ("/v1/object/listByIDs", lambda w, v: {"objectIDs": [v]}, "objectIDs"),
    "object.move.object": (
        "/v1/object/move",
        lambda w, v: {"movings": [{"objectID": v, "packageID": w.pid, "path": "m"}]},
        "objectID",
    ),
    "object.move.package": (
        "/v1/object/move",
        lambda w, v: {"movings": [{"objectID": w.oid, "packageID": v, "path": "m"}]},
        "packageID",
    ),
    "object.delete": ("/v1/object/delete", lambda w, v: {"objectIDs": [w.oid, v]}, "objectIDs"),
    "object.deleteByPath": (
        "/v1/object/deleteByPath",
        lambda w, v: {"packageID": v, "path": "x.txt"},
        "packageID",
    ),
    "object.clone.object": (
        "/v1/object/clone",
        lambda w, v: {"clonings": [{"objectID": v, "newPackageID": w.pid, "newPath": "c"}]},
        "objectID",
    ),
    "object.clone.package": (
        "/v1/object/clone",
        lambda w, v: {"clonings": [{"objectID": w.oid, "newPackageID": v, "newPath": "c"}]},
        "newPackageID",
    ),
    "object.newMultipartUpload": (
        "/v1/object/newMultipartUpload",
        lambda w, v: {"packageID": v, "path": "n"},
        "packageID",
    ),
    "object.completeMultipartUpload": (
        "/v1/object/completeMultipartUpload",
        lambda w, v: {"objectID": v, "indexes": [0]},
        "objectID",
    ),
    "userSpace.update": (
        "/v1/userSpace/update",
        lambda w, v: {"userSpaceID": v, "name": "n"},
        "userSpaceID",
    ),
    "userSpace.drain": ("/v1/userSpace/drain", lambda w, v: {"userSpaceID": v}, "userSpaceID"),
    "userSpace.delete": ("/v1/userSpace/delete", lambda w, v: {"userSpaceID": v}, "userSpaceID"),
    "userSpace.test": ("/v1/userSpace/test", lambda w, v: {"userSpaceID": v}, "userSpaceID"),
    "createPackage.space": (IMPORT, lambda w, v: imp(w, userSpaceID=v), "userSpaceID"),
    "createPackage.bucket": (IMPORT, lambda w, v: imp(w, bucketID=v), "bucketID"),
    "createPackage.affinity": (IMPORT, lambda w, v: imp(w, affinity=v), "affinity"),
    "downloadPackage.package": (EXPORT, lambda w, v: exp(w, packageID=v), "packageID"),
    "downloadPackage.space": (EXPORT, lambda w, v: exp(w, userSpaceID=v), "userSpaceID"),
    "createTask.src": (SYNC, lambda w, v: sync(v, w.dst), "srcUserSpaceID"),
    "createTask.dest": (
        SYNC,
        lambda w, v: sync(w.src, w.dst, dests=[{"userSpaceID": v, "path": "o"}]),
        "dests[0].userSpaceID",
    ),
    "cancelTask": ("/v1/spaceSync/cancelTask", lambda w, v: {"taskID": v}, "taskID"),
}

# Every endpoint that takes an ID in the query string.
GET_IDS: dict[str, tuple[str, Post, str]] = {
    "package.get": ("/v1/package/get", lambda w, v: {"packageID": v}, "packageID"),
    "package.listBucketPackages": (
        "/v1/package/listBucketPackages",
        lambda w, v: {"bucketID": v},
        "bucketID",
    ),
    "object.download": ("/v1/object/download", lambda w, v: {"objectID": v}, "objectID"),
    "bucket.download": ("/v1/bucket/download", lambda w, v: {"objectID": v}, "objectID"),
    "object.downloadByPath": (
        "/v1/object/downloadByPath",
        lambda w, v: {"packageID": v, "path": "x.txt"},
        "packageID",
    ),
    "object.listByPath": ("/v1/object/listByPath", lambda w, v: {"packageID": v}, "packageID"),
    "object.getPackageObjects": (
        "/v1/object/getPackageObjects",
        lambda w, v: {"packageID": v},
        "packageID",
    ),
    "userSpace.get": ("/v1/userSpace/get", lambda w, v: {"userSpaceID": v}, "userSpaceID"),
    "spaceSync.getTask": ("/v1/spaceSync/getTask", lambda w, v: {"taskID": v}, "taskID"),
}

# Multipart forms: the ID is in the JSON 'info' part.
FORM_IDS: dict[str, tuple[Callable[[World, V], dict[str, Any]], str]] = {
    "object.upload.package": (lambda w, v: {"packageID": v}, "packageID"),
    "object.upload.affinity": (lambda w, v: {"packageID": w.pid, "affinity": v}, "affinity"),
    "object.uploadPart": (lambda w, v: {"objectID": v, "index": 1}, "objectID"),
}


@pytest.mark.parametrize("endpoint", sorted(POST_IDS))
async def test_json_ids_beyond_int64_negative_or_strings(api: Api, endpoint: str) -> None:
    w = await make_world(api)
    url, body, field = POST_IDS[endpoint]
    before = await snapshot(api)
    listed = await tasks(api)
    for bad in (BIG, 2**70, -1, 0, "1", str(BIG), 1.0, True):
        await refused(api, "POST", url, field, json=body(w, bad))
    assert await snapshot(api) == before
    assert await tasks(api) == listed


@pytest.mark.parametrize("endpoint", sorted(GET_IDS))
async def test_query_ids_beyond_int64_negative_or_not_numbers(api: Api, endpoint: str) -> None:
    w = await make_world(api)
    url, params, field = GET_IDS[endpoint]
    before = await snapshot(api)
    for bad in (str(BIG), str(2**70), "-1", "0", "abc", "1.5", "1e3"):
        await refused(api, "GET", url, field, params=params(w, bad))
    assert await snapshot(api) == before


@pytest.mark.parametrize("endpoint", sorted(FORM_IDS))
async def test_form_ids_beyond_int64_negative_or_strings(api: Api, endpoint: str) -> None:
    w = await make_world(api)
    info, field = FORM_IDS[endpoint]
    url = "/v1/object/uploadPart" if endpoint == "object.uploadPart" else "/v1/object/upload"
    file_part = ("file", "part", b"p") if url.endswith("Part") else ("files", "f", b"f")
    before = await snapshot(api)
    for bad in (BIG, -1, 0, "1"):
        content, ctype = multipart([info_part(info(w, bad)), file_part])
        await refused(api, "POST", url, field, content=content, headers={"Content-Type": ctype})
    assert await snapshot(api) == before


# -- sizes and counts ----------------------------------------------------------------


async def test_negative_or_absurd_sizes_and_counts(api: Api) -> None:
    w = await make_world(api)
    before = await snapshot(api)
    listed = await tasks(api)
    for bad in (-1, BIG, 2**70, "10", 1.5):
        for key in ("minSize", "maxSize"):
            await refused(
                api, "POST", SYNC, f"filter.{key}", json=sync(w.src, w.dst, filter={key: bad})
            )
            await refused(api, "POST", IMPORT, f"filter.{key}", json=imp(w, filter={key: bad}))
            await refused(api, "POST", EXPORT, f"filter.{key}", json=exp(w, filter={key: bad}))
    for key, bad in (("offset", "-1"), ("length", "-1"), ("offset", str(2**70))):
        await refused(api, "GET", "/v1/object/download", key, params={"objectID": w.oid, key: bad})
    for bad in ("0", "-1", str(BIG)):
        params = {"packageID": w.pid, "isPrefix": "true", "maxKeys": bad}
        await refused(api, "GET", "/v1/object/listByPath", "maxKeys", params=params)
    for bad in (-1, BIG, 2**70):
        body = {"objectID": w.mp, "indexes": [bad]}
        await refused(api, "POST", "/v1/object/completeMultipartUpload", "indexes", json=body)
        content, ctype = multipart(
            [info_part({"objectID": w.mp, "index": bad}), ("file", "f", b"p")]
        )
        r = await api.request(
            "POST", "/v1/object/uploadPart", content=content, headers={"Content-Type": ctype}
        )
        assert "index" in expect_error(r, "BadArgument", 400)
    # Lists with more entries than one request may carry.
    many = list(range(1, 1002))
    await refused(api, "POST", "/v1/object/listByIDs", "objectIDs", json={"objectIDs": many})
    await refused(api, "POST", "/v1/object/delete", "objectIDs", json={"objectIDs": many})
    dests = [{"userSpaceID": w.dst, "path": f"o{i}"} for i in range(65)]
    await refused(api, "POST", SYNC, "dests", json=sync(w.src, w.dst, dests=dests))
    exts = [f"e{i}" for i in range(1001)]
    await refused(
        api, "POST", SYNC, "filter.includeExt", json=sync(w.src, w.dst, filter={"includeExt": exts})
    )
    assert await snapshot(api) == before
    assert await tasks(api) == listed


# -- intervals -------------------------------------------------------------------------


async def test_interval_beyond_a_year_is_refused(api: Api) -> None:
    w = await make_world(api)
    listed = await tasks(api)
    for seconds in (2**70, BIG, YEAR + 1, 0, -1):
        body = sync(w.src, w.dst, trigger={"type": "interval", "seconds": seconds})
        await refused(api, "POST", SYNC, "trigger.seconds", json=body)
    assert await tasks(api) == listed
    body = sync(w.src, w.dst, trigger={"type": "interval", "seconds": YEAR})
    assert (await api.post(SYNC, body))["task"]["trigger"] == {"type": "interval", "seconds": YEAR}


async def test_absurd_interval_stored_earlier_fails_visibly_once(api: Api, ctx: Context) -> None:
    """A task stored before the bound (interval 2^70 s) no longer fails every
    minute while showing 'running': it fails once, says why, and stops."""
    w = await make_world(api)
    await api.post("/v1/spaceSync/cancelTask", {"taskID": w.tid})
    admin = await ctx.accounts.authenticate(api.client.headers["Authorization"].split()[1])
    spec = sync(w.src, w.dst, trigger={"type": "interval", "seconds": 2**70})
    spec.update(srcPath="data", mode="full", compare="sizeMtime", filter={}, deleteSource=False)
    spec["dests"] = [{"userSpaceID": w.dst, "path": "out/copy"}]
    ts = now()
    async with ctx.db.write() as conn:
        task = await task_repo.create(conn, admin.user_id, "sync", spec, ts, ts)
    assert await ctx.tasks.run_due() == (1, 1)
    got = await get_task(api, task.task_id)
    assert got["state"] == "failed", got
    assert got["lastError"] and "trigger.seconds" in got["lastError"], got
    assert got["nextRunTime"] is None, got
    assert await ctx.tasks.run_due() == (0, 0)  # not claimed again


async def test_tasks_always_due_do_not_starve_a_later_one(api: Api, ctx: Context) -> None:
    """Found by review: due tasks were taken by ID, so a user's tasks of
    interval 1 s, due again as soon as they ran, kept every later task
    (another user's too) waiting for good: 1,000 of them held a once task
    pending for 15 minutes. The task that has waited longest goes first."""
    w = await make_world(api)
    await api.post("/v1/spaceSync/cancelTask", {"taskID": w.tid})
    admin = await ctx.accounts.authenticate(api.client.headers["Authorization"].split()[1])
    spec = sync(w.src, w.dst, trigger={"type": "interval", "seconds": 1})
    spec.update(srcPath="data", mode="full", compare="sizeMtime", filter={}, deleteSource=False)
    spec["dests"] = [{"userSpaceID": w.dst, "path": "out/copy"}]
    ts = now()
    waited = ts - timedelta(minutes=15)
    async with ctx.db.write() as conn:
        # Lower IDs, due again just now (they ran a second ago) ...
        busy = [await task_repo.create(conn, admin.user_id, "sync", spec, ts, ts) for _ in range(4)]
        # ... and a task due for fifteen minutes.
        late = await task_repo.create(conn, admin.user_id, "sync", spec, waited, waited)
    claimed = await ctx.tasks.claim_due(1)
    assert [t.task_id for t in claimed] == [late.task_id]
    for task in (*busy, late):
        await api.post("/v1/spaceSync/cancelTask", {"taskID": task.task_id})


async def test_a_user_has_a_bounded_number_of_tasks_scheduled(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: a user could schedule any number of recurring tasks,
    each looked at on every pass of the scheduler. At the limit a new sync
    task or background import is refused (403, naming the limit) and
    nothing is made; a cancelled one makes room again."""
    monkeypatch.setattr(transfer_service, "MAX_SCHEDULED_TASKS", 3)
    w = await make_world(api)  # its sync task is the first
    hourly = sync(w.src, w.dst, trigger={"type": "interval", "seconds": 3600})
    second = (await api.post(SYNC, hourly))["task"]["taskID"]
    await api.post(SYNC, hourly)
    before = await tasks(api)
    for url, body in ((SYNC, hourly), (IMPORT, imp(w, **{"async": True}))):
        msg = expect_error(await api.client.post(url, json=body), "Forbidden", 403)
        assert "3 transfer tasks scheduled" in msg, msg
    assert await tasks(api) == before
    packages = (await api.get("/v1/package/listBucketPackages", bucketID=w.bid))["packages"]
    assert [p["name"] for p in packages] == ["p"]  # the refused import made none
    await api.post("/v1/spaceSync/cancelTask", {"taskID": second})
    made = await api.post(IMPORT, imp(w, **{"async": True}))
    assert made["task"]["taskID"] not in {t["taskID"] for t in before}


async def test_finished_tasks_are_forgotten_after_a_week(api: Api, ctx: Context) -> None:
    """Every inline import and export leaves a finished task: a user's list
    (and the table) grew without end. GC forgets tasks finished more than
    a week ago with nothing left to run; recurring and recent ones stay."""
    w = await make_world(api)  # an hourly sync task
    await api.post(IMPORT, imp(w))  # inline: a finished task
    cancelled = (await api.post(SYNC, sync(w.src, w.dst)))["task"]["taskID"]
    await api.post("/v1/spaceSync/cancelTask", {"taskID": cancelled})
    async with ctx.db.write() as conn:  # all of it a week and a day ago
        long_ago = now() - timedelta(days=8)
        await conn.execute(update(task_repo.T).values(created_at=long_ago, last_finish_at=long_ago))
    recent = await api.post(IMPORT, imp(w, name="imp2"))
    assert recent["objectCount"] == 3
    assert len(await tasks(api)) == 4
    report = await api.gc()
    assert report.tasks == 2
    kept = await tasks(api)
    assert kept[0]["taskID"] == w.tid
    assert [(t["type"], t["state"]) for t in kept] == [("sync", "pending"), ("import", "succeeded")]


# -- NUL and control characters in names and paths ----------------------------------

CONTROL = ["\x00", "\x01", "\n", "\x1f", "\x7f", "\x85", "\ud800"]


def name_cases(w: World, c: str) -> list[tuple[str, dict[str, Any], str]]:
    """(url, body, field) with ``c`` inside a name or a path."""
    bad = f"a{c}b"
    return [
        ("/v1/bucket/create", {"name": bad}, "name"),
        ("/v1/package/create", {"bucketID": w.bid, "name": bad}, "name"),
        ("/v1/package/clone", {"packageID": w.pid, "bucketID": w.bid, "name": bad}, "name"),
        ("/v1/userSpace/create", {"name": bad, "storage": LOCAL}, "name"),
        ("/v1/userSpace/update", {"userSpaceID": w.dst, "name": bad}, "name"),
        ("/v1/object/newMultipartUpload", {"packageID": w.pid, "path": bad}, "path"),
        ("/v1/object/deleteByPath", {"packageID": w.pid, "path": bad}, "path"),
        (
            "/v1/object/move",
            {"movings": [{"objectID": w.oid, "packageID": w.pid, "path": bad}]},
            "path",
        ),
        (
            "/v1/object/clone",
            {"clonings": [{"objectID": w.oid, "newPackageID": w.pid, "newPath": bad}]},
            "newPath",
        ),
        (IMPORT, imp(w, path=bad), "path"),
        (IMPORT, imp(w, name=bad), "name"),
        (EXPORT, exp(w, rootPath=bad), "rootPath"),
        (SYNC, sync(w.src, w.dst, srcPath=bad), "srcPath"),
        (SYNC, sync(w.src, w.dst, dests=[{"userSpaceID": w.dst, "path": bad}]), "dests[0].path"),
        (SYNC, sync(w.src, w.dst, filter={"excludePaths": [bad]}), "filter.excludePaths"),
        (SYNC, sync(w.src, w.dst, filter={"includePaths": [f"*{c}"]}), "filter.includePaths"),
        (SYNC, sync(w.src, w.dst, filter={"excludeExt": [bad]}), "filter.excludeExt"),
    ]


@pytest.mark.parametrize("char", CONTROL, ids=lambda c: f"U+{ord(c):04X}")
async def test_nul_and_control_characters_in_names_and_paths(api: Api, char: str) -> None:
    w = await make_world(api)
    before = await snapshot(api)
    listed = await tasks(api)
    for url, body, field in name_cases(w, char):
        await refused(api, "POST", url, field, json=body)
    bad = f"a{char}b"
    for url, params, field in (
        ("/v1/bucket/getByName", {"name": bad}, "name"),
        ("/v1/package/getByFullName", {"bucketName": bad, "packageName": "p"}, "bucketName"),
        ("/v1/package/getByFullName", {"bucketName": "b", "packageName": bad}, "packageName"),
        ("/v1/object/downloadByPath", {"packageID": w.pid, "path": bad}, "path"),
        ("/v1/object/listByPath", {"packageID": w.pid, "path": bad}, "path"),
    ):
        if char == "\ud800":
            continue  # a URL cannot carry a lone surrogate (httpx refuses to encode it)
        await refused(api, "GET", url, field, params=params)
    # A listing's prefix is a prefix of keys, and S3 keys may hold the ASCII
    # controls but NUL: such a prefix lists what is under it (here nothing).
    prefixed = {"packageID": w.pid, "path": bad, "isPrefix": "true"}
    if char in ("\x00", "\x85"):
        await refused(api, "GET", "/v1/object/listByPath", "path", params=prefixed)
    elif char != "\ud800":
        listing = await api.get("/v1/object/listByPath", **prefixed)
        assert listing["objects"] == [] and listing["commonPrefixes"] == []
    assert await snapshot(api) == before
    assert await tasks(api) == listed


async def test_local_space_path_with_nul_or_control_characters(api: Api) -> None:
    before = await snapshot(api)
    for c in ("\x00", "\n", "\x7f"):
        path = str(api.tmp_path / f"sp{c}ace")
        body = {"name": "evil", "storage": {"type": "Local", "path": path}}
        await refused(api, "POST", "/v1/userSpace/create", "storage.path", json=body)
        await refused(api, "POST", "/v1/userSpace/test", "storage.path", json=body)
        body = {"name": "evil", "storage": LOCAL, "rootPath": f"r{c}"}
        await refused(api, "POST", "/v1/userSpace/create", "rootPath", json=body)
    assert await snapshot(api) == before


# -- '.' and '..' as names ------------------------------------------------------------


async def test_dot_and_dotdot_are_not_names(api: Api) -> None:
    w = await make_world(api)
    before = await snapshot(api)
    listed = await tasks(api)
    for name in (".", ".."):
        for url, body in (
            ("/v1/bucket/create", {"name": name}),
            ("/v1/package/create", {"bucketID": w.bid, "name": name}),
            ("/v1/package/clone", {"packageID": w.pid, "bucketID": w.bid, "name": name}),
            ("/v1/userSpace/create", {"name": name, "storage": LOCAL}),
            ("/v1/userSpace/update", {"userSpaceID": w.dst, "name": name}),
            (IMPORT, imp(w, name=name)),
        ):
            await refused(api, "POST", url, "name", json=body)
        await refused(
            api,
            "POST",
            "/v1/object/newMultipartUpload",
            "path",
            json={"packageID": w.pid, "path": name},
        )
        await refused(api, "POST", SYNC, "srcPath", json=sync(w.src, w.dst, srcPath=f"data/{name}"))
    assert await snapshot(api) == before
    assert await tasks(api) == listed


# -- over-long segments and paths -----------------------------------------------------


def long_cases(w: World, bad: str) -> list[tuple[str, dict[str, Any], str]]:
    return [
        ("/v1/object/newMultipartUpload", {"packageID": w.pid, "path": bad}, "path"),
        ("/v1/object/deleteByPath", {"packageID": w.pid, "path": bad}, "path"),
        (
            "/v1/object/move",
            {"movings": [{"objectID": w.oid, "packageID": w.pid, "path": bad}]},
            "path",
        ),
        (
            "/v1/object/clone",
            {"clonings": [{"objectID": w.oid, "newPackageID": w.pid, "newPath": bad}]},
            "newPath",
        ),
        (IMPORT, imp(w, path=bad), "path"),
        (IMPORT, imp(w, path=bad, **{"async": True}), "path"),
        (EXPORT, exp(w, rootPath=bad), "rootPath"),
        (EXPORT, exp(w, rootPath=bad, **{"async": True}), "rootPath"),
        (SYNC, sync(w.src, w.dst, srcPath=bad), "srcPath"),
        (SYNC, sync(w.src, w.dst, dests=[{"userSpaceID": w.dst, "path": bad}]), "dests[0].path"),
        (SYNC, sync(w.src, w.dst, filter={"includePaths": [bad]}), "filter.includePaths"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "a" * 300,  # one segment of 300 bytes
        "data/" + "é" * 128,  # 256 bytes of UTF-8 in 128 characters
        "/".join(["d" * 200] * 6),  # every segment fine, 1205 bytes in all
    ],
    ids=["segment-300", "segment-256-bytes", "path-1205-bytes"],
)
async def test_over_long_segments_and_paths(api: Api, bad: str) -> None:
    """Once 503 (the Local space failed with 'File name too long') or a task
    that failed later: now 400 before anything is created."""
    w = await make_world(api)
    before = await snapshot(api)
    listed = await tasks(api)
    for url, body, field in long_cases(w, bad):
        await refused(api, "POST", url, field, json=body)
    prefix = {"packageID": w.pid, "path": bad + "/", "isPrefix": "true"}
    for url, params in (
        ("/v1/object/downloadByPath", {"packageID": w.pid, "path": bad}),
        ("/v1/object/listByPath", {"packageID": w.pid, "path": bad}),
    ):
        await refused(api, "GET", url, "path", params=params)
    # A listing prefix is a prefix of keys, which S3 writes with segments of
    # any length: only its whole length is bounded (cross-protocol review).
    if len(prefix["path"].encode()) > 1024:
        await refused(api, "GET", "/v1/object/listByPath", "path", params=prefix)
    else:
        answer = await api.request("GET", "/v1/object/listByPath", params=prefix)
        assert answer.json()["data"] == {"commonPrefixes": [], "objects": []}, answer.text
    assert await snapshot(api) == before
    assert await tasks(api) == listed


async def test_over_long_names(api: Api) -> None:
    w = await make_world(api)
    before = await snapshot(api)
    for name in ("n" * 256, "é" * 128, "x" * 5000):
        for url, body in (
            ("/v1/bucket/create", {"name": name}),
            ("/v1/package/create", {"bucketID": w.bid, "name": name}),
            ("/v1/userSpace/create", {"name": name, "storage": LOCAL}),
            (IMPORT, imp(w, name=name)),
        ):
            await refused(api, "POST", url, "name", json=body)
        await refused(api, "GET", "/v1/bucket/getByName", "name", params={"name": name})
    body = {"name": "deep", "storage": {"type": "Local", "path": str(api.tmp_path / ("s" * 300))}}
    await refused(api, "POST", "/v1/userSpace/create", "storage.path", json=body)
    body = {"name": "deep", "storage": LOCAL, "rootPath": "r" * 300}
    await refused(api, "POST", "/v1/userSpace/create", "rootPath", json=body)
    assert await snapshot(api) == before
    # 255 bytes is a name.
    assert await api.bucket("n" * 255)


# -- createPackage: affinity, filter ----------------------------------------------------


async def test_bad_affinity_creates_neither_package_nor_task(api: Api, bob: Any) -> None:
    w = await make_world(api)
    theirs = next(iter(bob.api.spaces))
    before = await snapshot(api)
    listed = await tasks(api)
    for affinity in (987654, theirs, "1", BIG, -1, 1.5, [w.src]):
        for background in (False, True):
            body = imp(w, affinity=affinity, **{"async": background})
            await refused(api, "POST", IMPORT, "affinity", json=body)
    assert await snapshot(api) == before
    assert await tasks(api) == listed
    # A space of the caller's is a fine affinity.
    data = await api.post(IMPORT, imp(w, affinity=w.dst))
    assert data["objectCount"] == 3


async def test_create_package_applies_the_sync_filter(api: Api, ctx: Context) -> None:
    """Decision (docs/sync.md): createPackage and downloadPackage take the
    same ``filter`` as sync tasks, instead of ignoring it."""
    w = await make_world(api)
    flt = {"excludeExt": ["log"], "excludePaths": ["sub"]}
    data = await api.post(IMPORT, imp(w, name="inline", filter=flt))
    assert (data["objectCount"], data["totalSize"]) == (1, 4)
    assert [o["path"] for o in await api.objects(data["package"]["packageID"])] == ["f.txt"]

    data = await api.post(
        IMPORT, imp(w, name="task", filter={"includeExt": ["txt"]}, **{"async": True})
    )
    task = data["task"]
    assert task["filter"] == {"includeExt": ["txt"]}
    await ctx.tasks.run_due()
    got = await get_task(api, task["taskID"])
    assert got["state"] == "succeeded", got
    assert got["result"]["objectCount"] == 2
    paths = sorted(o["path"] for o in await api.objects(data["package"]["packageID"]))
    assert paths == ["f.txt", "sub/g.txt"]

    # Export takes it too.
    await api.upload_one(w.pid, "y.log", b"yy")
    data = await api.post(EXPORT, exp(w, filter={"includeExt": ["log"]}))
    assert (data["objectCount"], data["totalSize"]) == (1, 2)
    assert sorted(p.name for p in (api.spaces[w.dst] / "out" / "exp").iterdir()) == ["y.log"]

    # A filter that selects nothing, or a bad one: 400, no package, no task.
    before = await snapshot(api)
    listed = await tasks(api)
    msg = await refused(
        api, "POST", IMPORT, "filter", json=imp(w, name="none", filter={"minSize": 10**6})
    )
    assert "selects none" in msg
    await refused(
        api, "POST", IMPORT, "filter.minSize", json=imp(w, name="bad", filter={"minSize": -1})
    )
    await refused(api, "POST", IMPORT, "filter", json=imp(w, name="bad", filter={"size": 1}))
    await refused(api, "POST", EXPORT, "filter", json=exp(w, filter="txt"))
    assert await snapshot(api) == before
    assert await tasks(api) == listed


# -- cancelTask and getTask: the same ID rules as everywhere ----------------------------


async def test_task_ids_follow_the_common_rules(api: Api) -> None:
    w = await make_world(api)
    for bad in (str(w.tid), f"{w.tid}", None, [w.tid], {"id": w.tid}):
        await refused(api, "POST", "/v1/spaceSync/cancelTask", "taskID", json={"taskID": bad})
    for bad in ("abc", f"{w.tid}\n", "", "-5"):
        await refused(api, "GET", "/v1/spaceSync/getTask", "taskID", params={"taskID": bad})
    assert (await get_task(api, w.tid))["state"] == "pending"
    assert await api.post("/v1/spaceSync/cancelTask", {"taskID": w.tid}) is None
    assert (await api.get("/v1/spaceSync/getTask", taskID=str(w.tid)))["task"][
        "state"
    ] == "cancelled"


# -- failures are listed --------------------------------------------------------------------


async def test_failed_task_lists_its_failures(api: Api, ctx: Context) -> None:
    """filesFailed and failures agree, in getTask and in listTasks."""
    w = await make_world(api)
    await api.post("/v1/spaceSync/cancelTask", {"taskID": w.tid})
    (api.spaces[w.dst] / "out" / "blocked").write_bytes(b"a file where a directory must go")
    body = sync(w.src, w.dst, dests=[{"userSpaceID": w.dst, "path": "out/blocked"}])
    sync_id = (await api.post(SYNC, body))["task"]["taskID"]
    data = await api.post(EXPORT, exp(w, rootPath="out/blocked", **{"async": True}))
    export_id = data["task"]["taskID"]
    await ctx.tasks.run_due()
    listed = {t["taskID"]: t for t in await tasks(api)}
    for task_id, paths in ((sync_id, ["f.txt", "skip.log", "sub/g.txt"]), (export_id, ["x.txt"])):
        for shown in (await get_task(api, task_id), listed[task_id]):
            assert shown["state"] == "failed", shown
            assert shown["progress"]["filesFailed"] == len(paths), shown
            assert [f["path"] for f in shown["failures"]] == paths, shown
            assert all("Not a directory" in f["error"] for f in shown["failures"]), shown
            assert shown["lastError"], shown


# -- Range headers ------------------------------------------------------------------------


async def test_range_positions_with_thousands_of_digits(api: Api) -> None:
    """Once a 500 (int() refuses over 4300 digits): a position that long is
    past any object, as a 20-digit one is."""
    w = await make_world(api)
    nines = "9" * 5000
    url, params = "/v1/object/download", {"objectID": w.oid}
    r = await api.request("GET", url, params=params, headers={"Range": f"bytes=0-{nines}"})
    assert (r.status_code, r.content) == (206, b"x")
    r = await api.request("GET", url, params=params, headers={"Range": f"bytes=-{nines}"})
    assert (r.status_code, r.content) == (206, b"x")
    r = await api.request("GET", url, params=params, headers={"Range": f"bytes={nines}-"})
    expect_error(r, "BadArgument", 416)
    assert r.headers["Content-Range"] == "bytes */1"


async def test_concurrent_creates_stop_at_the_task_limit(
    api: Api, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL 40 creates at once each counted the tasks before any
    was made and went past the limit (105 of 100, found by review). The
    second create here starts while the first has counted and not yet
    committed: it must wait for it, then count it."""
    if ctx.db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time: the counts cannot overlap")
    w = await make_world(api)  # its sync task is the first
    monkeypatch.setattr(transfer_service, "MAX_SCHEDULED_TASKS", 2)
    hourly = sync(w.src, w.dst, trigger={"type": "interval", "seconds": 3600})
    create = task_repo.create
    second: list[asyncio.Task[Any]] = []

    async def another_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not second:
            second.append(asyncio.ensure_future(api.client.post(SYNC, json=hourly)))
            while not second[0].done() and not await lock_waiters(ctx):
                await asyncio.wait(second, timeout=0.01)
        return await create(*args, **kwargs)

    monkeypatch.setattr(task_repo, "create", another_meanwhile)
    await api.post(SYNC, hourly)
    late = await second[0]
    msg = expect_error(late, "Forbidden", 403)
    assert "2 transfer tasks scheduled" in msg, msg
    assert len(await tasks(api)) == 2


async def lock_waiters(ctx: Context) -> int:
    async with ctx.db.read() as conn:
        q = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return int((await conn.execute(q)).scalar_one())


async def test_a_cancel_keeps_the_outcome_of_a_task_that_finished_meanwhile(
    api: Api, ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cancelTask looked at the task, then set it cancelled whatever it had
    become: a one-shot task that succeeded in between showed "cancelled"
    (found by review, from the code). The task finishes right after the
    cancel looked at it: its outcome stays."""
    w = await make_world(api)
    get = transfer_service.TransferService.get

    async def finished_meanwhile(self: Any, principal: Any, task_id: int) -> Any:
        view = await get(self, principal, task_id)
        async with ctx.db.write() as conn:
            await conn.execute(
                update(task_repo.T)
                .where(task_repo.T.c.id == task_id)
                .values(state="succeeded", next_run_at=None, run_open=False)
            )
        return view

    monkeypatch.setattr(transfer_service.TransferService, "get", finished_meanwhile)
    await api.post("/v1/spaceSync/cancelTask", {"taskID": w.tid})
    [task] = [t for t in await tasks(api) if t["taskID"] == w.tid]
    assert task["state"] == "succeeded"
