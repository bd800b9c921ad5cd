"""§1 buckets and §2 packages."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime

from jcs_helpers import Api, assert_time, expect_error, text_data


def check_bucket(b: dict, name: str) -> None:
    assert isinstance(b["bucketID"], int) and not isinstance(b["bucketID"], bool)
    assert b["name"] == name
    assert_time(b["createTime"])


def check_package(p: dict, name: str, bucket_id: int) -> None:
    assert isinstance(p["packageID"], int) and not isinstance(p["packageID"], bool)
    assert p["name"] == name and p["bucketID"] == bucket_id
    assert_time(p["createTime"])


async def test_bucket_create_get_list_delete(api: Api) -> None:
    data = await api.post("/v1/bucket/create", {"userID": 1, "name": "alpha"})
    assert set(data) == {"bucket"}
    alpha = data["bucket"]
    check_bucket(alpha, "alpha")
    beta = (await api.post("/v1/bucket/create", {"name": "beta"}))["bucket"]
    check_bucket(beta, "beta")
    assert beta["bucketID"] != alpha["bucketID"]

    got = await api.get("/v1/bucket/getByName", name="alpha")
    assert got == {"bucket": alpha}

    listed = await api.get("/v1/bucket/listAll")
    assert set(listed) == {"buckets"}
    assert [b["name"] for b in listed["buckets"]] == ["alpha", "beta"]
    assert listed["buckets"][0] == alpha

    msg = await api.fail("POST", "/v1/bucket/create", "DataExists", 409, json={"name": "alpha"})
    assert "alpha" in msg

    r = await api.client.post("/v1/bucket/delete", json={"bucketID": alpha["bucketID"]})
    assert r.status_code == 200 and r.json() == {"code": "OK", "message": "", "data": None}
    await api.fail("GET", "/v1/bucket/getByName", "DataNotFound", 404, params={"name": "alpha"})
    listed = await api.get("/v1/bucket/listAll")
    assert [b["name"] for b in listed["buckets"]] == ["beta"]
    await api.fail(
        "POST", "/v1/bucket/delete", "DataNotFound", 404, json={"bucketID": alpha["bucketID"]}
    )
    # The name is free again.
    check_bucket((await api.post("/v1/bucket/create", {"name": "alpha"}))["bucket"], "alpha")


async def test_times_carry_the_server_offset(api: Api) -> None:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "JCS-05:30"  # POSIX: five and a half hours east of UTC
    time.tzset()
    try:
        b = (await api.post("/v1/bucket/create", {"name": "tz"}))["bucket"]
        p = (await api.post("/v1/package/create", {"bucketID": b["bucketID"], "name": "p"}))[
            "package"
        ]
        o = await api.upload_one(p["packageID"], "x", b"x")
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
    for stamp in (b["createTime"], p["createTime"], o["createTime"], o["updateTime"]):
        assert stamp.endswith("+05:30"), stamp
        age = datetime.now().astimezone() - datetime.fromisoformat(stamp)
        assert abs(age.total_seconds()) < 60


async def test_bucket_delete_refused_while_packages_exist(api: Api) -> None:
    bid = await api.bucket("full")
    p1 = await api.package("pkg-one", bucket_id=bid)
    await api.package("pkg-two", bucket_id=bid)
    msg = await api.fail(
        "POST", "/v1/bucket/delete", "OperationFailed", 409, json={"bucketID": bid}
    )
    assert "pkg-one" in msg and "pkg-two" in msg
    assert (await api.get("/v1/bucket/getByName", name="full"))["bucket"]["bucketID"] == bid
    pkgs = await api.get("/v1/package/listBucketPackages", bucketID=bid)
    assert len(pkgs["packages"]) == 2

    await api.post("/v1/package/delete", {"packageID": p1})
    msg = await api.fail(
        "POST", "/v1/bucket/delete", "OperationFailed", 409, json={"bucketID": bid}
    )
    assert "pkg-two" in msg and "pkg-one" not in msg


async def test_package_create_get_list_delete(api: Api) -> None:
    bid = await api.bucket("b1")
    other = await api.bucket("b2")
    data = await api.post("/v1/package/create", {"userID": 1, "bucketID": bid, "name": "p1"})
    assert set(data) == {"package"}
    p1 = data["package"]
    check_package(p1, "p1", bid)
    p2 = (await api.post("/v1/package/create", {"bucketID": bid, "name": "p2"}))["package"]
    # The same package name is fine in another bucket, not twice in one.
    twin = (await api.post("/v1/package/create", {"bucketID": other, "name": "p1"}))["package"]
    check_package(twin, "p1", other)
    assert twin["packageID"] != p1["packageID"]
    msg = await api.fail(
        "POST", "/v1/package/create", "DataExists", 409, json={"bucketID": bid, "name": "p1"}
    )
    assert "p1" in msg
    await api.fail(
        "POST", "/v1/package/create", "DataNotFound", 404, json={"bucketID": 987654, "name": "x"}
    )

    assert await api.get("/v1/package/get", packageID=p1["packageID"]) == {"package": p1}
    got = await api.get("/v1/package/getByFullName", bucketName="b1", packageName="p2")
    assert got == {"package": p2}
    await api.fail(
        "GET",
        "/v1/package/getByFullName",
        "DataNotFound",
        404,
        params={"bucketName": "b2", "packageName": "p2"},
    )
    await api.fail(
        "GET",
        "/v1/package/getByFullName",
        "DataNotFound",
        404,
        params={"bucketName": "nope", "packageName": "p1"},
    )
    listed = await api.get("/v1/package/listBucketPackages", bucketID=bid)
    assert set(listed) == {"packages"}
    assert listed["packages"] == [p1, p2]
    await api.fail(
        "GET", "/v1/package/listBucketPackages", "DataNotFound", 404, params={"bucketID": 987654}
    )

    r = await api.client.post("/v1/package/delete", json={"packageID": p1["packageID"]})
    assert r.status_code == 200 and r.json() == {"code": "OK", "message": "", "data": None}
    await api.fail(
        "GET", "/v1/package/get", "DataNotFound", 404, params={"packageID": p1["packageID"]}
    )
    listed = await api.get("/v1/package/listBucketPackages", bucketID=bid)
    assert listed["packages"] == [p2]
    await api.fail(
        "POST", "/v1/package/delete", "DataNotFound", 404, json={"packageID": p1["packageID"]}
    )


async def test_package_delete_removes_its_objects_and_blocks(api: Api) -> None:
    pid = await api.package("doomed")
    keep = await api.package("kept")
    ups = await api.upload(pid, [("a.txt", text_data(1000)), ("d/b.txt", text_data(5000, 1))])
    kept = await api.upload_one(keep, "a.txt", b"stays")
    # An unfinished multipart upload goes with the package too.
    pending = await api.post("/v1/object/newMultipartUpload", {"packageID": pid, "path": "mp"})
    assert (await api.upload_part(pending["object"]["objectID"], 0, b"part")).status_code == 200
    blocks_before = api.all_block_files()
    assert len(blocks_before) == 4

    await api.post("/v1/package/delete", {"packageID": pid})
    ids = [o["objectID"] for o in ups]
    got = await api.post("/v1/object/listByIDs", {"objectIDs": [*ids, kept["objectID"]]})
    assert got["object"][:2] == [None, None]
    assert got["object"][2]["objectID"] == kept["objectID"]
    for oid in ids:
        await api.fail("GET", "/v1/object/download", "DataNotFound", 404, params={"objectID": oid})
    await api.fail(
        "GET", "/v1/object/getPackageObjects", "DataNotFound", 404, params={"packageID": pid}
    )

    # Once garbage collection has run, the blocks of the deleted objects are gone
    # from the spaces, and the other package still reads back.
    report = await api.gc()
    assert report.layouts == 3
    assert len(api.all_block_files()) == 1
    assert await api.download(kept["objectID"]) == b"stays"


async def test_package_clone(api: Api) -> None:
    b1 = await api.bucket("src")
    b2 = await api.bucket("dst")
    src = await api.package("orig", bucket_id=b1, redundancy={"type": "none"})
    files = [("one.txt", text_data(3000)), ("dir/two.bin", os.urandom(7000)), ("empty", b"")]
    ups = await api.upload(src, files)

    data = await api.post("/v1/package/clone", {"packageID": src, "bucketID": b2, "name": "copy"})
    assert set(data) == {"package"}
    copy = data["package"]
    check_package(copy, "copy", b2)
    assert copy["packageID"] != src
    assert await api.get("/v1/package/getByFullName", bucketName="dst", packageName="copy") == {
        "package": copy
    }

    cloned = await api.objects(copy["packageID"])
    assert [o["path"] for o in cloned] == sorted(p for p, _ in files)
    by_path = {o["path"]: o for o in ups}
    for o in cloned:
        assert o["packageID"] == copy["packageID"]
        assert o["objectID"] != by_path[o["path"]]["objectID"]
        assert o["fileHash"] == by_path[o["path"]]["fileHash"]
        assert o["size"] == by_path[o["path"]]["size"]
        assert await api.download(o["objectID"]) == dict(files)[o["path"]]

    # The clone is independent: changing and then deleting the source leaves it alone.
    await api.upload_one(src, "one.txt", b"changed")
    await api.post("/v1/package/delete", {"packageID": src})
    await api.gc()
    for o in cloned:
        assert await api.download(o["objectID"]) == dict(files)[o["path"]]

    # A clone into the same bucket under a taken name, or into an unknown bucket, fails.
    await api.fail(
        "POST",
        "/v1/package/clone",
        "DataExists",
        409,
        json={"packageID": copy["packageID"], "bucketID": b2, "name": "copy"},
    )
    await api.fail(
        "POST",
        "/v1/package/clone",
        "DataNotFound",
        404,
        json={"packageID": copy["packageID"], "bucketID": 987654, "name": "x"},
    )
    await api.fail(
        "POST",
        "/v1/package/clone",
        "DataNotFound",
        404,
        json={"packageID": 987654, "bucketID": b2, "name": "y"},
    )
    names = [
        p["name"]
        for p in (await api.get("/v1/package/listBucketPackages", bucketID=b2))["packages"]
    ]
    assert names == ["copy"]


async def test_bucket_and_package_redundancy_defaults(api: Api) -> None:
    await api.add_spaces(2)
    rep = {"type": "rep", "repCount": 2}
    ec = {"type": "ec", "k": 2, "n": 3, "chunkSize": 4096}
    bid = await api.bucket("defaults", redundancy=rep)
    inherits = await api.package("inherits", bucket_id=bid)
    overrides = await api.package("overrides", bucket_id=bid, redundancy=ec)

    a = await api.upload_one(inherits, "a", b"inherit")
    assert a["redundancy"] == rep
    b = await api.upload_one(overrides, "b", b"override")
    assert b["redundancy"] == ec
    # A policy in the upload's info wins over both.
    c = await api.upload_one(overrides, "c", b"explicit", redundancy={"type": "none"})
    assert c["redundancy"] == {"type": "none"}
    for o, content in ((a, b"inherit"), (b, b"override"), (c, b"explicit")):
        assert await api.download(o["objectID"]) == content


async def test_concurrent_creates_of_one_name(api: Api) -> None:
    """Racing creates of one name: exactly one succeeds, the others are DataExists."""
    bid = await api.bucket("b")
    pid = await api.package("p", bucket_id=bid)
    await api.upload_one(pid, "f", b"x")
    requests = {
        "bucket": ("/v1/bucket/create", lambda i: {"name": "same"}),
        "package": ("/v1/package/create", lambda i: {"bucketID": bid, "name": "same"}),
        "clone": (
            "/v1/package/clone",
            lambda i: {"packageID": pid, "bucketID": bid, "name": "copy"},
        ),
        "space": (
            "/v1/userSpace/create",
            lambda i: {
                "name": "same",
                "storage": {"type": "Local", "path": str(api.tmp_path / f"race{i}")},
            },
        ),
    }
    for what, (url, body) in requests.items():
        results = await asyncio.gather(*(api.client.post(url, json=body(i)) for i in range(6)))
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 409, 409, 409, 409, 409], (what, [r.text for r in results])
        for r in results:
            if r.status_code == 409:
                expect_error(r, "DataExists", 409)
    names = [
        p["name"]
        for p in (await api.get("/v1/package/listBucketPackages", bucketID=bid))["packages"]
    ]
    assert sorted(names) == ["copy", "p", "same"]
