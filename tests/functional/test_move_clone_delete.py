"""§3.6 move, §3.7 delete/deleteByPath, §3.8 clone."""

from __future__ import annotations

from jcs_helpers import Api, assert_object, text_data


async def test_move_within_and_across_packages(api: Api) -> None:
    p1 = await api.package("p1")
    p2 = await api.package("p2")
    a, b, c = await api.upload(p1, [("a", b"AAA"), ("b", b"BB"), ("dir/c", b"C")])

    data = await api.post(
        "/v1/object/move",
        {
            "movings": [
                {"objectID": a["objectID"], "packageID": p1, "path": "renamed/a"},
                {"objectID": b["objectID"], "packageID": p2, "path": "b"},
                {"objectID": c["objectID"], "packageID": p1, "path": "dir/c"},  # in place
            ]
        },
    )
    assert data == {
        "successes": [a["objectID"], b["objectID"], c["objectID"]],
        "failures": [],
    }
    assert [o["path"] for o in await api.objects(p1)] == ["dir/c", "renamed/a"]
    moved = await api.objects(p2)
    assert [o["path"] for o in moved] == ["b"]
    assert moved[0]["objectID"] == b["objectID"] and moved[0]["packageID"] == p2
    assert moved[0]["createTime"] == b["createTime"]
    assert moved[0]["fileHash"] == b["fileHash"]
    r = await api.client.get(
        "/v1/object/downloadByPath", params={"packageID": p1, "path": "renamed/a"}
    )
    assert r.status_code == 200 and r.content == b"AAA"
    assert await api.download(b["objectID"]) == b"BB"
    await api.fail(
        "GET",
        "/v1/object/downloadByPath",
        "DataNotFound",
        404,
        params={"packageID": p1, "path": "a"},
    )


async def test_move_onto_an_occupied_path_fails_alone(api: Api) -> None:
    p1 = await api.package("p1")
    p2 = await api.package("p2")
    a, b = await api.upload(p1, [("a", b"A"), ("b", b"B")])
    (z,) = await api.upload(p2, [("z", b"Z")])
    data = await api.post(
        "/v1/object/move",
        {
            "movings": [
                {"objectID": a["objectID"], "packageID": p1, "path": "b"},  # taken
                {"objectID": b["objectID"], "packageID": p1, "path": "c"},
                {"objectID": z["objectID"], "packageID": p1, "path": "c"},  # taken now
                {"objectID": 987654, "packageID": p1, "path": "d"},
                {"objectID": a["objectID"], "packageID": 987654, "path": "e"},
            ]
        },
    )
    assert data["successes"] == [b["objectID"]]
    failures = data["failures"]
    assert [f["objectID"] for f in failures] == [
        a["objectID"],
        z["objectID"],
        987654,
        a["objectID"],
    ]
    for f in failures:
        assert set(f) == {"objectID", "reason"} and f["reason"]
    assert "'b'" in failures[0]["reason"] and "'c'" in failures[1]["reason"]
    assert "987654" in failures[2]["reason"] and "987654" in failures[3]["reason"]
    # Nothing was overwritten.
    assert {o["path"]: o["objectID"] for o in await api.objects(p1)} == {
        "a": a["objectID"],
        "c": b["objectID"],
    }
    assert await api.download(a["objectID"]) == b"A"
    assert await api.download(b["objectID"]) == b"B"
    assert await api.download(z["objectID"]) == b"Z"


async def test_delete_and_delete_by_path(api: Api) -> None:
    pid = await api.package("p")
    a, b, c = await api.upload(pid, [("a", text_data(900)), ("b", b"B"), ("x/c", b"C")])
    assert len(api.all_block_files()) == 3

    r = await api.client.post("/v1/object/delete", json={"objectIDs": [a["objectID"]]})
    assert r.status_code == 200 and r.json() == {"code": "OK", "message": "", "data": None}
    r = await api.client.post("/v1/object/deleteByPath", json={"packageID": pid, "path": "x/c"})
    assert r.status_code == 200 and r.json() == {"code": "OK", "message": "", "data": None}
    assert [o["path"] for o in await api.objects(pid)] == ["b"]
    got = await api.post(
        "/v1/object/listByIDs", {"objectIDs": [a["objectID"], b["objectID"], c["objectID"]]}
    )
    assert got["object"] == [None, b, None]
    await api.fail(
        "GET", "/v1/object/download", "DataNotFound", 404, params={"objectID": a["objectID"]}
    )

    # Deleting what is gone is DataNotFound, and a batch with an unknown ID deletes nothing.
    msg = await api.fail(
        "POST", "/v1/object/delete", "DataNotFound", 404, json={"objectIDs": [a["objectID"]]}
    )
    assert str(a["objectID"]) in msg
    await api.fail(
        "POST",
        "/v1/object/delete",
        "DataNotFound",
        404,
        json={"objectIDs": [b["objectID"], 987654]},
    )
    assert await api.download(b["objectID"]) == b"B"
    msg = await api.fail(
        "POST", "/v1/object/deleteByPath", "DataNotFound", 404, json={"packageID": pid, "path": "a"}
    )
    assert "'a'" in msg
    await api.fail(
        "POST",
        "/v1/object/deleteByPath",
        "DataNotFound",
        404,
        json={"packageID": 987654, "path": "b"},
    )

    # The path is free again, and a new upload there gets a new object.
    again = await api.upload_one(pid, "a", b"again")
    assert again["objectID"] != a["objectID"]

    # Deleted content leaves the spaces at the next garbage collection.
    assert len(api.all_block_files()) == 4
    assert (await api.gc()).layouts == 2
    assert len(api.all_block_files()) == 2
    assert await api.download(b["objectID"]) == b"B"
    assert await api.download(again["objectID"]) == b"again"


async def test_clone_is_aligned_and_independent(api: Api) -> None:
    await api.add_spaces(2)
    p1 = await api.package("p1", redundancy={"type": "ec", "k": 2, "n": 3, "chunkSize": 4096})
    p2 = await api.package("p2")
    data_a = text_data(20000, seed=5)
    a, b = await api.upload(p1, [("a", data_a), ("b", b"bee")])

    data = await api.post(
        "/v1/object/clone",
        {
            "clonings": [
                {"objectID": a["objectID"], "newPackageID": p2, "newPath": "copy/a"},
                {"objectID": a["objectID"], "newPackageID": p1, "newPath": "b"},  # taken
                {"objectID": b["objectID"], "newPackageID": 987654, "newPath": "x"},
                {"objectID": 987654, "newPackageID": p2, "newPath": "y"},
                {"objectID": b["objectID"], "newPackageID": p1, "newPath": "b2"},
                # onto its own path: taken too (it failed the whole batch)
                {"objectID": b["objectID"], "newPackageID": p1, "newPath": "b"},
            ]
        },
    )
    assert set(data) == {"objects"}
    made = data["objects"]
    assert len(made) == 6 and made[1:4] == [None, None, None] and made[5] is None
    copy_a, copy_b = made[0], made[4]
    assert_object(copy_a, path="copy/a", data=data_a, package_id=p2)
    assert copy_a["redundancy"] == a["redundancy"]
    assert_object(copy_b, path="b2", data=b"bee", package_id=p1)
    assert copy_a["objectID"] not in (a["objectID"], b["objectID"])
    assert await api.download(copy_a["objectID"]) == data_a
    assert await api.download(b["objectID"]) == b"bee"  # the taken target is unchanged
    assert [o["path"] for o in await api.objects(p2)] == ["copy/a"]

    # Overwriting the source does not change the clone...
    await api.upload_one(p1, "a", b"overwritten")
    assert await api.download(a["objectID"]) == b"overwritten"
    assert await api.download(copy_a["objectID"]) == data_a
    # ...nor does deleting it, even after garbage collection.
    await api.post("/v1/object/delete", {"objectIDs": [a["objectID"], b["objectID"]]})
    await api.gc()
    assert await api.download(copy_a["objectID"]) == data_a
    assert await api.download(copy_b["objectID"]) == b"bee"
    # Deleting the clone does not bring anything back or break the other clone.
    await api.post("/v1/object/delete", {"objectIDs": [copy_a["objectID"]]})
    await api.gc()
    assert await api.download(copy_b["objectID"]) == b"bee"
    # Only copy_b's content (three EC blocks) is left on disk.
    assert len(api.all_block_files()) == 3
