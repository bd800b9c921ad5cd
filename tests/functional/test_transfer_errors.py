"""Bad requests to the transfer endpoints (spec §4.6, §4.7, §5; docs/sync.md):
each is refused with the right code and a message naming the field, and
nothing is created or moved."""

from __future__ import annotations

from typing import Any

from jcs_helpers import Api, expect_error

from jointcloud.context import Context
from support.trees import write_tree

CREATE = "/v1/spaceSync/createTask"
IMPORT = "/v1/userSpace/createPackage"
EXPORT = "/v1/userSpace/downloadPackage"


async def refused(api: Api, url: str, body: Any, code: str = "BadArgument") -> str:
    status = {"BadArgument": 400, "DataNotFound": 404, "DataExists": 409, "Forbidden": 403}
    r = await api.request("POST", url, json=body)
    return expect_error(r, code, status[code])


async def spaces(api: Api) -> tuple[int, int]:
    src, dst = await api.add_spaces(2)
    write_tree(api.spaces[src] / "data", {"f.txt": b"file", "sub/g.txt": b"gee"})
    return src, dst


def sync_body(src: int, dst: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "srcUserSpaceID": src,
        "srcPath": "data",
        "dests": [{"userSpaceID": dst, "path": "out"}],
        "mode": "full",
        "trigger": {"type": "once"},
    }
    body.update(changes)
    return body


async def assert_nothing_happened(api: Api, ctx: Context, dst: int) -> None:
    assert (await api.get("/v1/spaceSync/listTasks"))["tasks"] == []
    assert await ctx.tasks.run_due() == (0, 0)
    assert not (api.spaces[dst] / "out").exists()


# -- sync: spaces and paths ----------------------------------------------------


async def test_unknown_spaces_bad_ids_and_body(api: Api, ctx: Context) -> None:
    src, dst = await spaces(api)
    msg = await refused(api, CREATE, sync_body(987001, dst), "DataNotFound")
    assert "987001" in msg
    body = sync_body(src, dst, dests=[{"userSpaceID": dst, "path": "a"}, {"userSpaceID": 987002}])
    msg = await refused(api, CREATE, body, "DataNotFound")
    assert "987002" in msg
    msg = await refused(api, CREATE, sync_body(None, dst))
    assert "srcUserSpaceID" in msg
    msg = await refused(api, CREATE, sync_body(src, dst, dests=[{"path": "x"}]))
    assert "dests[0].userSpaceID" in msg
    r = await api.request("POST", CREATE, json=[sync_body(src, dst)])
    assert "object" in expect_error(r, "BadArgument", 400)
    msg = await refused(api, CREATE, {**sync_body(src, dst), "userID": 424242}, "Forbidden")
    assert "424242" in msg
    r = await api.request("GET", "/v1/spaceSync/getTask", params={"taskID": "abc"})
    assert "taskID" in expect_error(r, "BadArgument", 400)
    r = await api.request("GET", "/v1/spaceSync/getTask")
    assert "taskID" in expect_error(r, "BadArgument", 400)
    r = await api.request("POST", "/v1/spaceSync/cancelTask", json={})
    assert "taskID" in expect_error(r, "BadArgument", 400)
    await assert_nothing_happened(api, ctx, dst)


async def test_bad_dest_paths_and_dest_inside_source(api: Api, ctx: Context) -> None:
    src, dst = await spaces(api)
    for i, path in ((0, "../out"), (1, "out/../../x"), (1, "a/./b")):
        dests = [{"userSpaceID": dst, "path": "ok"}] * i + [{"userSpaceID": dst, "path": path}]
        msg = await refused(api, CREATE, sync_body(src, dst, dests=dests))
        assert f"dests[{i}].path" in msg, msg

    # A destination repeated (the same after normalisation).
    dests = [{"userSpaceID": dst, "path": "out"}, {"userSpaceID": dst, "path": "/out/"}]
    msg = await refused(api, CREATE, sync_body(src, dst, dests=dests))
    assert "dests[1]" in msg and "repeat" in msg, msg

    # A destination inside the source, in the same space.
    for src_path, dest_path in (
        ("data", "data/backup"),
        ("data", "data"),
        ("", "copy"),
        ("/data/", "data/x/y"),
    ):
        body = sync_body(
            src, dst, srcPath=src_path, dests=[{"userSpaceID": src, "path": dest_path}]
        )
        msg = await refused(api, CREATE, body)
        assert "dests[0].path" in msg and "inside" in msg, msg
    await assert_nothing_happened(api, ctx, dst)

    # The same paths in another space, or beside the source, are fine.
    ok = sync_body(
        src,
        dst,
        dests=[
            {"userSpaceID": dst, "path": "data/backup"},
            {"userSpaceID": src, "path": "data-copy"},
        ],
    )
    task = (await api.post(CREATE, ok))["task"]
    await ctx.tasks.run_due()
    got = (await api.get("/v1/spaceSync/getTask", taskID=task["taskID"]))["task"]
    assert got["state"] == "succeeded", got
    assert (api.spaces[src] / "data-copy" / "sub" / "g.txt").read_bytes() == b"gee"
    assert (api.spaces[dst] / "data" / "backup" / "f.txt").read_bytes() == b"file"


async def test_block_area_is_off_limits(api: Api, ctx: Context) -> None:
    src, dst = await spaces(api)
    for src_path in ("jcs", "/jcs/", "jcs/blocks"):
        msg = await refused(api, CREATE, sync_body(src, dst, srcPath=src_path))
        assert "srcPath" in msg and "block area" in msg, msg
    for dest_path in ("jcs", "jcs/blocks/x"):
        body = sync_body(src, dst, dests=[{"userSpaceID": dst, "path": dest_path}])
        msg = await refused(api, CREATE, body)
        assert "dests[0].path" in msg and "block area" in msg, msg
    # "jcsx" is not inside "jcs".
    body = sync_body(src, dst, dests=[{"userSpaceID": dst, "path": "jcsx"}])
    await api.post(CREATE, body)

    # A space with its own rootPath reserves that directory instead of "jcs".
    custom = api.tmp_path / "custom"
    data = await api.post(
        "/v1/userSpace/create",
        {"name": "custom", "storage": {"type": "Local", "path": str(custom)}, "rootPath": "store"},
    )
    sid = int(data["userSpace"]["userSpaceID"])
    body = sync_body(src, dst, dests=[{"userSpaceID": sid, "path": "store/in"}])
    msg = await refused(api, CREATE, body)
    assert "dests[0].path" in msg and "block area" in msg, msg
    await api.post(CREATE, sync_body(src, dst, dests=[{"userSpaceID": sid, "path": "jcs/in"}]))


BAD_SYNC_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"srcPath": "data/../etc"}, "srcPath"),
    ({"srcPath": ".."}, "srcPath"),
    ({"srcPath": "data/./sub"}, "srcPath"),
    ({"srcPath": "data//sub"}, "srcPath"),
    ({"srcPath": "data\\sub"}, "srcPath"),
    ({"srcPath": "data\x00"}, "srcPath"),
    ({"srcPath": 7}, "srcPath"),
    ({"dests": []}, "dests"),
    ({"dests": None}, "dests"),
    ({"dests": {"userSpaceID": 1}}, "dests"),
    ({"dests": ["out"]}, "dests[0]"),
    ({"mode": "mirror"}, "mode"),
    ({"mode": "diff", "compare": "md5"}, "compare"),
    ({"deleteSource": "yes"}, "deleteSource"),
]


BAD_TRIGGERS: list[tuple[Any, str]] = [
    ({"type": "window", "start": "25:00", "end": "02:00"}, "trigger.start"),
    ({"type": "window", "start": "01:00", "end": "24:00"}, "trigger.end"),
    ({"type": "window", "start": "1:60", "end": "02:00"}, "trigger.start"),
    ({"type": "window", "start": "0100", "end": "02:00"}, "trigger.start"),
    ({"type": "window", "end": "02:00"}, "trigger.start"),
    ({"type": "window", "start": "03:30", "end": "03:30"}, "trigger.end"),
    (
        {"type": "window", "start": "01:00", "end": "02:00", "timezone": "Mars/Olympus"},
        "trigger.timezone",
    ),
    ({"type": "window", "start": "01:00", "end": "02:00", "timezone": 8}, "trigger.timezone"),
    ({"type": "interval", "seconds": 0}, "trigger.seconds"),
    ({"type": "interval", "seconds": "60"}, "trigger.seconds"),
    ({"type": "interval"}, "trigger.seconds"),
    ({"type": "cron"}, "trigger.type"),
    ("once", "trigger"),
]


BAD_FILTERS: list[tuple[Any, str]] = [
    ({"minSize": "10"}, "filter.minSize"),
    ({"minSize": -1}, "filter.minSize"),
    ({"minSize": 1.5}, "filter.minSize"),
    ({"maxSize": True}, "filter.maxSize"),
    ({"minSize": 10, "maxSize": 9}, "filter.minSize"),
    ({"includeExt": "txt"}, "filter.includeExt"),
    ({"excludeExt": [".log", 3]}, "filter.excludeExt"),
    ({"excludeExt": [""]}, "filter.excludeExt"),
    ({"includePaths": "dir"}, "filter.includePaths"),
    ({"excludePaths": [None]}, "filter.excludePaths"),
    ({"includePaths": ["../etc"]}, "filter.includePaths"),
    ({"minsize": 1}, "minsize"),
    ("big", "filter"),
]


async def test_bad_sync_fields_triggers_filters(api: Api, ctx: Context) -> None:
    src, dst = await spaces(api)
    for change, word in BAD_SYNC_FIELDS:
        msg = await refused(api, CREATE, sync_body(src, dst, **change))
        assert word in msg, (change, msg)
    for trigger, word in BAD_TRIGGERS:
        msg = await refused(api, CREATE, sync_body(src, dst, trigger=trigger))
        assert word in msg, (trigger, msg)
    for flt, word in BAD_FILTERS:
        msg = await refused(api, CREATE, sync_body(src, dst, filter=flt))
        assert word in msg, (flt, msg)
    await assert_nothing_happened(api, ctx, dst)


# -- import and export ---------------------------------------------------------


async def test_bad_imports(api: Api, ctx: Context) -> None:
    src, _ = await spaces(api)
    (api.spaces[src] / "empty" / "nested").mkdir(parents=True)
    bucket = await api.bucket("b")
    ok = {"userSpaceID": src, "path": "data", "bucketID": bucket, "name": "pkg"}

    for path in ("data/..", "../data", "a//b", "data\\x"):
        msg = await refused(api, IMPORT, {**ok, "path": path})
        assert "path" in msg, msg
    for path in ("jcs", "jcs/blocks"):
        msg = await refused(api, IMPORT, {**ok, "path": path})
        assert "path" in msg and "block area" in msg, msg
    for path in ("empty", "nowhere"):
        msg = await refused(api, IMPORT, {**ok, "path": path})
        assert "path" in msg and path in msg, msg
    msg = await refused(api, IMPORT, {**ok, "userSpaceID": 987003}, "DataNotFound")
    assert "987003" in msg
    msg = await refused(api, IMPORT, {**ok, "bucketID": 987004}, "DataNotFound")
    assert "987004" in msg
    msg = await refused(api, IMPORT, {**ok, "async": "yes"})
    assert "async" in msg
    msg = await refused(api, IMPORT, {**ok, "redundancy": {"type": "raid"}})
    assert "redundancy" in msg or "type" in msg, msg
    assert (await api.get("/v1/package/listBucketPackages", bucketID=bucket))["packages"] == []

    # An existing package name: refused, and the existing package is untouched.
    existing = await api.package("pkg", bucket_id=bucket)
    await api.upload_one(existing, "old.txt", b"old")
    msg = await refused(api, IMPORT, ok, "DataExists")
    assert "pkg" in msg
    msg = await refused(api, IMPORT, {**ok, "async": True}, "DataExists")
    assert [o["path"] for o in await api.objects(existing)] == ["old.txt"]
    packages = (await api.get("/v1/package/listBucketPackages", bucketID=bucket))["packages"]
    assert [p["packageID"] for p in packages] == [existing]
    assert (await api.get("/v1/spaceSync/listTasks"))["tasks"] == []


async def test_bad_exports(api: Api) -> None:
    _, dst = await spaces(api)
    pid = await api.package("p")
    await api.upload_one(pid, "x.txt", b"x")
    ok = {"packageID": pid, "userSpaceID": dst, "rootPath": "out"}
    for root in ("out/../..", "..", "a/./b"):
        msg = await refused(api, EXPORT, {**ok, "rootPath": root})
        assert "rootPath" in msg, msg
    for root in ("jcs", "/jcs/blocks/"):
        msg = await refused(api, EXPORT, {**ok, "rootPath": root})
        assert "rootPath" in msg and "block area" in msg, msg
    msg = await refused(api, EXPORT, {**ok, "packageID": 987005}, "DataNotFound")
    assert "987005" in msg
    msg = await refused(api, EXPORT, {**ok, "userSpaceID": 987006}, "DataNotFound")
    assert "987006" in msg
    msg = await refused(api, EXPORT, {**ok, "packageID": "p"})
    assert "packageID" in msg
    assert not (api.spaces[dst] / "out").exists()
    assert (await api.get("/v1/spaceSync/listTasks"))["tasks"] == []
