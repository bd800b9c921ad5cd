"""§3.9–3.11: newMultipartUpload → uploadPart → completeMultipartUpload."""

from __future__ import annotations

import re

import pytest
from jcs_helpers import (
    OBJECT_KEYS,
    Api,
    assert_object,
    assert_time,
    comp_hash,
    expect_error,
    info_part,
    multipart,
    text_data,
)


async def new_upload(api: Api, package_id: int, path: str) -> dict:
    data = await api.post("/v1/object/newMultipartUpload", {"packageID": package_id, "path": path})
    assert set(data) == {"object"}
    obj = data["object"]
    assert set(obj) == OBJECT_KEYS
    assert obj["path"] == path and obj["packageID"] == package_id
    assert isinstance(obj["objectID"], int) and isinstance(obj["size"], str)
    assert assert_time(obj["updateTime"]) >= assert_time(obj["createTime"])
    return dict(obj)


async def put_part(api: Api, object_id: int, index: int, content: bytes) -> None:
    r = await api.upload_part(object_id, index, content)
    assert r.status_code == 200, r.text
    assert r.json() == {"code": "OK", "message": "", "data": {}}


async def invisible(api: Api, pid: int, obj: dict) -> None:
    """The object is in no listing and cannot be read."""
    assert all(o["path"] != obj["path"] for o in await api.objects(pid))
    listed = await api.get(
        "/v1/object/listByPath", packageID=pid, path=obj["path"], isPrefix="false"
    )
    assert listed["objects"] == []
    listed = await api.get("/v1/object/listByPath", packageID=pid, path="", isPrefix="true")
    assert all(o["path"] != obj["path"] for o in listed["objects"])
    got = await api.post("/v1/object/listByIDs", {"objectIDs": [obj["objectID"]]})
    assert got == {"object": [None]}
    await api.fail(
        "GET", "/v1/object/download", "DataNotFound", 404, params={"objectID": obj["objectID"]}
    )
    await api.fail(
        "GET",
        "/v1/object/downloadByPath",
        "DataNotFound",
        404,
        params={"packageID": pid, "path": obj["path"]},
    )


@pytest.mark.parametrize(
    "policy",
    [None, {"type": "ec", "k": 2, "n": 3, "chunkSize": 4096}],
    ids=["none", "ec23"],
)
async def test_multipart_round_trip(api: Api, policy: dict | None) -> None:
    if policy is not None:
        await api.add_spaces(2)
    pid = await api.package("p", redundancy=policy)
    await api.upload_one(pid, "visible", b"v")
    obj = await new_upload(api, pid, "big/assembled.bin")
    oid = obj["objectID"]
    await invisible(api, pid, obj)

    parts = {i: text_data(10_000 + 1000 * i, seed=i) for i in range(1, 5)}
    for i in (3, 1, 4, 2):  # out of order
        await put_part(api, oid, i, parts[i])
    await invisible(api, pid, obj)
    # Re-uploading an index replaces that part.
    parts[1] = text_data(7777, seed=99)
    await put_part(api, oid, 1, parts[1])
    await invisible(api, pid, obj)

    order = [2, 1, 4, 3]
    data = await api.post("/v1/object/completeMultipartUpload", {"objectID": oid, "indexes": order})
    assert set(data) == {"object"}
    done = data["object"]
    content = b"".join(parts[i] for i in order)
    assert_object(done, path="big/assembled.bin", package_id=pid)
    assert done["objectID"] == oid
    assert done["size"] == str(len(content))
    assert done["fileHash"].startswith("Comp")
    assert re.fullmatch(r"Comp[0-9A-F]{64}", done["fileHash"])
    assert done["fileHash"] == comp_hash([parts[i] for i in order])
    assert done["redundancy"] == (policy or {"type": "none"})

    assert await api.download(oid) == content
    # Ranges across part boundaries.
    b1 = len(parts[2])
    b2 = b1 + len(parts[1])
    for offset, length in ((b1 - 5, 10), (b2 - 1, 2), (b1 - 1, len(parts[1]) + 2), (0, b2 + 1)):
        assert (
            await api.download(oid, offset=offset, length=length)
            == content[offset : offset + length]
        )
    r = await api.client.get(
        "/v1/object/download", params={"objectID": oid}, headers={"Range": f"bytes={b2 - 3}-"}
    )
    assert r.status_code == 206 and r.content == content[b2 - 3 :]

    objs = await api.objects(pid)
    assert [o["path"] for o in objs] == ["big/assembled.bin", "visible"]
    assert objs[0] == done
    assert (await api.post("/v1/object/listByIDs", {"objectIDs": [oid]}))["object"] == [done]

    # Parts that were replaced are garbage; the completed object still reads back.
    await api.gc()
    assert await api.download(oid) == content
    # Completing again has no parts left to use.
    await api.fail(
        "POST",
        "/v1/object/completeMultipartUpload",
        "BadArgument",
        400,
        json={"objectID": oid, "indexes": order},
    )
    assert await api.download(oid) == content


async def test_complete_with_a_subset_drops_the_rest(api: Api) -> None:
    pid = await api.package("p")
    obj = await new_upload(api, pid, "f")
    for i, content in enumerate([b"zero", b"one", b"two"]):
        await put_part(api, obj["objectID"], i, content)
    assert len(api.all_block_files()) == 3
    data = await api.post(
        "/v1/object/completeMultipartUpload", {"objectID": obj["objectID"], "indexes": [2, 0]}
    )
    assert data["object"]["fileHash"] == comp_hash([b"two", b"zero"])
    assert await api.download(obj["objectID"]) == b"twozero"
    await api.gc()
    assert len(api.all_block_files()) == 2


async def test_complete_argument_errors(api: Api) -> None:
    pid = await api.package("p")
    obj = await new_upload(api, pid, "f")
    oid = obj["objectID"]
    await put_part(api, oid, 0, b"a")
    await put_part(api, oid, 2, b"c")
    url = "/v1/object/completeMultipartUpload"
    msg = await api.fail(
        "POST", url, "BadArgument", 400, json={"objectID": oid, "indexes": [0, 1, 2]}
    )
    assert "indexes" in msg and "1" in msg
    msg = await api.fail("POST", url, "BadArgument", 400, json={"objectID": oid, "indexes": []})
    assert "indexes" in msg
    msg = await api.fail("POST", url, "BadArgument", 400, json={"objectID": oid, "indexes": [0, 0]})
    assert "indexes" in msg
    msg = await api.fail("POST", url, "BadArgument", 400, json={"objectID": oid})
    assert "indexes" in msg
    await api.fail("POST", url, "DataNotFound", 404, json={"objectID": 987654, "indexes": [0]})
    # None of that completed anything; the parts are still there to use.
    await invisible(api, pid, obj)
    data = await api.post(url, {"objectID": oid, "indexes": [0, 2]})
    assert await api.download(data["object"]["objectID"]) == b"ac"


async def test_upload_part_argument_errors(api: Api) -> None:
    pid = await api.package("p")
    obj = await new_upload(api, pid, "f")
    oid = obj["objectID"]

    r = await api.upload_part(987654, 0, b"x")
    expect_error(r, "DataNotFound", 404)
    r = await api.upload_part(oid, -1, b"x")
    assert "index" in expect_error(r, "BadArgument", 400)
    for info, word in (
        ({"index": 0}, "objectID"),
        ({"objectID": oid}, "index"),
        ({"objectID": str(oid), "index": 0}, "objectID"),
        ({"objectID": oid, "index": "0"}, "index"),
    ):
        body, ctype = multipart([info_part(info), ("file", "part", b"x")])
        r = await api.client.post(
            "/v1/object/uploadPart", content=body, headers={"Content-Type": ctype}
        )
        assert word in expect_error(r, "BadArgument", 400)
    for parts, word in (
        ([info_part({"objectID": oid, "index": 0})], "file"),
        ([info_part({"objectID": oid, "index": 0}), ("files", "x", b"x")], "file"),
        ([("file", "part", b"x"), info_part({"objectID": oid, "index": 0})], "info"),
        ([info_part(b"{not json"), ("file", "part", b"x")], "info"),
    ):
        body, ctype = multipart(parts)
        r = await api.client.post(
            "/v1/object/uploadPart", content=body, headers={"Content-Type": ctype}
        )
        assert word in expect_error(r, "BadArgument", 400)
    assert api.all_block_files() == []
    await api.fail(
        "POST",
        "/v1/object/completeMultipartUpload",
        "BadArgument",
        400,
        json={"objectID": oid, "indexes": [0]},
    )


async def test_new_multipart_on_an_existing_object(api: Api) -> None:
    pid = await api.package("p")
    old = await api.upload_one(pid, "doc", b"old content")
    obj = await new_upload(api, pid, "doc")
    assert obj["objectID"] == old["objectID"]
    await put_part(api, obj["objectID"], 0, b"new ")
    # Until completion the old content is served and listed.
    assert await api.download(old["objectID"]) == b"old content"
    assert await api.objects(pid) == [old]
    # Starting over discards parts uploaded so far.
    again = await new_upload(api, pid, "doc")
    assert again["objectID"] == old["objectID"]
    await api.fail(
        "POST",
        "/v1/object/completeMultipartUpload",
        "BadArgument",
        400,
        json={"objectID": old["objectID"], "indexes": [0]},
    )
    await put_part(api, old["objectID"], 0, b"new ")
    await put_part(api, old["objectID"], 1, b"content")
    data = await api.post(
        "/v1/object/completeMultipartUpload", {"objectID": old["objectID"], "indexes": [0, 1]}
    )
    done = data["object"]
    assert done["objectID"] == old["objectID"]
    assert done["createTime"] == old["createTime"]
    assert await api.download(old["objectID"]) == b"new content"
    assert [o["objectID"] for o in await api.objects(pid)] == [old["objectID"]]


async def test_new_multipart_argument_errors(api: Api) -> None:
    pid = await api.package("p")
    url = "/v1/object/newMultipartUpload"
    await api.fail("POST", url, "DataNotFound", 404, json={"packageID": 987654, "path": "f"})
    for body, word in (
        ({"packageID": pid, "path": "a/../b"}, "path"),
        ({"packageID": pid, "path": ""}, "path"),
        ({"packageID": pid}, "path"),
        ({"path": "f"}, "packageID"),
    ):
        assert word in await api.fail("POST", url, "BadArgument", 400, json=body)
    assert await api.objects(pid) == []
    # A pending upload blocks neither a normal upload to its path nor listing.
    obj = await new_upload(api, pid, "f")
    await invisible(api, pid, obj)
    up = await api.upload_one(pid, "f", b"direct")
    assert await api.download(up["objectID"]) == b"direct"
