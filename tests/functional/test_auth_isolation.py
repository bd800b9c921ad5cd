"""Authentication (401), userID mismatch (403) and isolation between users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from jcs_helpers import Api, Other, expect_error, file_parts, info_part, multipart, snapshot


@dataclass
class World:
    """What the admin owns, to aim every request at real things."""

    bucket_id: int
    bucket_name: str
    package_id: int
    package_name: str
    object_id: int
    path: str
    pending_id: int
    space_id: int
    scratch: str  # a directory for user spaces that requests may create


async def build_world(api: Api) -> World:
    (space_id,) = await api.add_spaces(1)
    bucket_id = await api.bucket("shared-name")
    package_id = await api.package("pkg", bucket_id=bucket_id)
    await api.package("other", bucket_id=bucket_id)
    obj = await api.upload_one(package_id, "dir/file.txt", b"admin data")
    await api.upload_one(package_id, "second", b"more")
    pending = await api.post(
        "/v1/object/newMultipartUpload", {"packageID": package_id, "path": "pending"}
    )
    r = await api.upload_part(pending["object"]["objectID"], 0, b"part")
    assert r.status_code == 200
    return World(
        bucket_id,
        "shared-name",
        package_id,
        "pkg",
        obj["objectID"],
        "dir/file.txt",
        pending["object"]["objectID"],
        space_id,
        str(api.tmp_path / "scratch"),
    )


def requests_for(w: World, user_id: int | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """One well-formed request per endpoint of §1–§4.5, aimed at the admin's things.
    With ``user_id`` every body (and upload ``info``) carries that userID."""
    uid = {} if user_id is None else {"userID": user_id}

    def form(parts: list[tuple[str, str | None, bytes]]) -> dict[str, Any]:
        body, ctype = multipart(parts)
        return {"content": body, "headers": {"Content-Type": ctype}}

    gets: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/v1/bucket/getByName", {"params": {"name": w.bucket_name}}),
        ("GET", "/v1/bucket/listAll", {}),
        ("GET", "/v1/package/get", {"params": {"packageID": w.package_id}}),
        (
            "GET",
            "/v1/package/getByFullName",
            {"params": {"bucketName": w.bucket_name, "packageName": w.package_name}},
        ),
        ("GET", "/v1/package/listBucketPackages", {"params": {"bucketID": w.bucket_id}}),
        ("GET", "/v1/object/download", {"params": {"objectID": w.object_id}}),
        ("GET", "/v1/bucket/download", {"params": {"objectID": w.object_id}}),
        (
            "GET",
            "/v1/object/downloadByPath",
            {"params": {"packageID": w.package_id, "path": w.path}},
        ),
        (
            "GET",
            "/v1/object/listByPath",
            {"params": {"packageID": w.package_id, "path": "", "isPrefix": "true"}},
        ),
        ("GET", "/v1/object/getPackageObjects", {"params": {"packageID": w.package_id}}),
        ("GET", "/v1/userSpace/get", {"params": {"userSpaceID": w.space_id}}),
        ("GET", "/v1/userSpace/list", {}),
    ]
    posts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/bucket/create", {"json": {**uid, "name": "intruder"}}),
        ("POST", "/v1/bucket/delete", {"json": {**uid, "bucketID": w.bucket_id}}),
        (
            "POST",
            "/v1/package/create",
            {"json": {**uid, "bucketID": w.bucket_id, "name": "intruder"}},
        ),
        ("POST", "/v1/package/delete", {"json": {**uid, "packageID": w.package_id}}),
        (
            "POST",
            "/v1/package/clone",
            {
                "json": {
                    **uid,
                    "packageID": w.package_id,
                    "bucketID": w.bucket_id,
                    "name": "intruder",
                }
            },
        ),
        (
            "POST",
            "/v1/object/upload",
            form(
                [
                    info_part({**uid, "packageID": w.package_id}),
                    *file_parts([(w.path, b"overwritten!")]),
                ]
            ),
        ),
        ("POST", "/v1/object/listByIDs", {"json": {**uid, "objectIDs": [w.object_id]}}),
        (
            "POST",
            "/v1/object/move",
            {
                "json": {
                    **uid,
                    "movings": [
                        {"objectID": w.object_id, "packageID": w.package_id, "path": "moved"}
                    ],
                }
            },
        ),
        ("POST", "/v1/object/delete", {"json": {**uid, "objectIDs": [w.object_id]}}),
        (
            "POST",
            "/v1/object/deleteByPath",
            {"json": {**uid, "packageID": w.package_id, "path": w.path}},
        ),
        (
            "POST",
            "/v1/object/clone",
            {
                "json": {
                    **uid,
                    "clonings": [
                        {"objectID": w.object_id, "newPackageID": w.package_id, "newPath": "c"}
                    ],
                }
            },
        ),
        (
            "POST",
            "/v1/object/newMultipartUpload",
            {"json": {**uid, "packageID": w.package_id, "path": "intruder"}},
        ),
        (
            "POST",
            "/v1/object/uploadPart",
            form(
                [
                    info_part({**uid, "objectID": w.pending_id, "index": 1}),
                    ("file", "part", b"x"),
                ]
            ),
        ),
        (
            "POST",
            "/v1/object/completeMultipartUpload",
            {"json": {**uid, "objectID": w.pending_id, "indexes": [0]}},
        ),
        (
            "POST",
            "/v1/userSpace/create",
            {"json": {**uid, "name": "intruder", "storage": {"type": "Local", "path": w.scratch}}},
        ),
        (
            "POST",
            "/v1/userSpace/update",
            {"json": {**uid, "userSpaceID": w.space_id, "name": "intruder"}},
        ),
        ("POST", "/v1/userSpace/delete", {"json": {**uid, "userSpaceID": w.space_id}}),
        ("POST", "/v1/userSpace/test", {"json": {**uid, "userSpaceID": w.space_id}}),
    ]
    return posts if user_id is not None else gets + posts


ENDPOINTS = 30  # §1 4 + §2 6 + §3 14 (with /v1/bucket/download) + §4.1–4.5 6


async def test_every_endpoint_needs_a_valid_key(
    api: Api, anon: httpx.AsyncClient, root_key: str
) -> None:
    w = await build_world(api)
    before = await snapshot(api)
    reqs = requests_for(w)
    assert len({url for _, url, _ in reqs}) == ENDPOINTS
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer not-a-real-key"},
        {"Authorization": "Bearer " + root_key[:-1] + ("x" if root_key[-1] != "x" else "y")},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic " + root_key},
        {"Authorization": root_key},
    ]
    for headers in bad_headers:
        for method, url, kw in reqs:
            kw = dict(kw)
            kw["headers"] = {**kw.get("headers", {}), **headers}
            r = await anon.request(method, url, **kw)
            msg = expect_error(r, "Unauthorized", 401)
            assert root_key not in msg
    assert await snapshot(api) == before
    # The right key still works, through the same kind of client.
    r = await anon.get("/v1/bucket/listAll", headers={"Authorization": f"Bearer {root_key}"})
    assert r.status_code == 200 and r.json()["code"] == "OK"


async def test_user_id_must_match_the_key(api: Api, bob: Other) -> None:
    w = await build_world(api)
    before = await snapshot(api)
    for method, url, kw in requests_for(w, user_id=bob.user_id):
        r = await api.client.request(method, url, **kw)
        msg = expect_error(r, "Forbidden", 403)
        assert str(bob.user_id) in msg, (url, msg)
    # Bob sending the admin's userID is refused the same way, even on his own things.
    for method, url, kw in requests_for(w, user_id=1):
        r = await bob.api.client.request(method, url, **kw)
        expect_error(r, "Forbidden", 403)
    assert await snapshot(api) == before
    assert (await bob.api.get("/v1/bucket/listAll"))["buckets"] == []
    # A matching userID is accepted.
    data = await api.post("/v1/bucket/create", {"userID": 1, "name": "mine"})
    assert data["bucket"]["name"] == "mine"


async def test_users_cannot_see_or_touch_each_other(api: Api, bob: Other) -> None:
    w = await build_world(api)
    before = await snapshot(api)
    b = bob.api

    # Bob's own world: same bucket name is his to use; he has one space.
    my_bucket = await b.bucket("shared-name")
    my_pkg = await b.package("bobpkg", bucket_id=my_bucket)
    mine = await b.upload_one(my_pkg, "mine.txt", b"bob data")
    (my_space,) = b.spaces

    for method, url, kw in requests_for(w):
        r = await b.client.request(method, url, **kw)
        if url == "/v1/bucket/listAll":
            assert r.json()["data"]["buckets"] == [
                (await b.get("/v1/bucket/getByName", name="shared-name"))["bucket"]
            ]
        elif url == "/v1/bucket/getByName":
            assert r.json()["data"]["bucket"]["bucketID"] == my_bucket
        elif url == "/v1/userSpace/list":
            # (listed before bob creates his second space below)
            assert [s["userSpaceID"] for s in r.json()["data"]["userSpaces"]] == [my_space]
        elif url == "/v1/object/listByIDs":
            assert r.json()["data"] == {"object": [None]}
        elif url == "/v1/object/move":
            data = r.json()["data"]
            assert data["successes"] == []
            assert [f["objectID"] for f in data["failures"]] == [w.object_id]
        elif url == "/v1/object/clone":
            assert r.json()["data"] == {"objects": [None]}
        elif url in ("/v1/bucket/create", "/v1/userSpace/create"):
            assert r.status_code == 200  # bob's own, new things
        else:
            expect_error(r, "DataNotFound", 404)

    # Bob's own new space is of no further use here.
    spaces = (await b.get("/v1/userSpace/list"))["userSpaces"]
    assert [s["name"] for s in spaces] == ["space-1", "intruder"]
    await b.post("/v1/userSpace/delete", {"userSpaceID": spaces[1]["userSpaceID"]})

    # Crossing the other way: bob's things into the admin's containers and back.
    await b.fail(
        "POST",
        "/v1/package/clone",
        "DataNotFound",
        404,
        json={"packageID": my_pkg, "bucketID": w.bucket_id, "name": "x"},
    )
    data = await b.post(
        "/v1/object/move",
        {"movings": [{"objectID": mine["objectID"], "packageID": w.package_id, "path": "m"}]},
    )
    assert data["successes"] == [] and len(data["failures"]) == 1
    data = await b.post(
        "/v1/object/clone",
        {
            "clonings": [
                {"objectID": mine["objectID"], "newPackageID": w.package_id, "newPath": "m"}
            ]
        },
    )
    assert data == {"objects": [None]}
    # The admin's space is not bob's to place blocks in, by affinity or by policy.
    r = await b.upload_raw(
        [info_part({"packageID": my_pkg, "affinity": w.space_id}), *file_parts([("f", b"x")])]
    )
    assert "affinity" in expect_error(r, "BadArgument", 400)
    r = await b.upload_raw(
        [
            info_part({"packageID": my_pkg, "redundancy": {"type": "rep", "repCount": 2}}),
            *file_parts([("f", b"x")]),
        ]
    )
    assert "needs 2" in expect_error(r, "OperationFailed", 503)

    # And the admin cannot see bob's things either.
    await api.fail("GET", "/v1/package/get", "DataNotFound", 404, params={"packageID": my_pkg})
    await api.fail(
        "GET", "/v1/object/download", "DataNotFound", 404, params={"objectID": mine["objectID"]}
    )
    await api.fail(
        "GET", "/v1/userSpace/get", "DataNotFound", 404, params={"userSpaceID": my_space}
    )

    assert await snapshot(api) == before
    assert await b.download(mine["objectID"]) == b"bob data"
    assert [o["path"] for o in await b.objects(my_pkg)] == ["mine.txt"]
    # Bob's block went to his own space only.
    assert len(b.all_block_files()) == 1
