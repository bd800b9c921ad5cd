"""Bad input on every endpoint: BadArgument (naming the field) or
DataNotFound, and nothing changed."""

from __future__ import annotations

from typing import Any

import pytest
from jcs_helpers import Api, expect_error, file_parts, info_part, multipart, snapshot

from jointcloud.api.jcs.app import create_app
from support.asgi import sent_then_gone

BIG = 2**63  # one past int64


async def world(api: Api) -> dict[str, int]:
    bid = await api.bucket("b")
    pid = await api.package("p", bucket_id=bid)
    o = await api.upload_one(pid, "dir/f.txt", b"content")
    pending = await api.post("/v1/object/newMultipartUpload", {"packageID": pid, "path": "mp"})
    r = await api.upload_part(pending["object"]["objectID"], 0, b"part")
    assert r.status_code == 200
    return {"bid": bid, "pid": pid, "oid": o["objectID"], "mp": pending["object"]["objectID"]}


def post_cases(w: dict[str, int]) -> list[tuple[str, Any, str]]:
    """(url, JSON body, the field the message must name)."""
    bid, pid, oid, mp = w["bid"], w["pid"], w["oid"], w["mp"]
    return [
        # missing fields
        ("/v1/bucket/create", {}, "name"),
        ("/v1/bucket/delete", {}, "bucketID"),
        ("/v1/package/create", {"name": "x"}, "bucketID"),
        ("/v1/package/create", {"bucketID": bid}, "name"),
        ("/v1/package/delete", {}, "packageID"),
        ("/v1/package/clone", {"packageID": pid, "name": "x"}, "bucketID"),
        ("/v1/package/clone", {"packageID": pid, "bucketID": bid}, "name"),
        ("/v1/object/listByIDs", {}, "objectIDs"),
        ("/v1/object/move", {}, "movings"),
        ("/v1/object/move", {"movings": [{"objectID": oid, "packageID": pid}]}, "path"),
        ("/v1/object/delete", {}, "objectIDs"),
        ("/v1/object/deleteByPath", {"packageID": pid}, "path"),
        ("/v1/object/deleteByPath", {"path": "dir/f.txt"}, "packageID"),
        ("/v1/object/clone", {"clonings": [{"objectID": oid, "newPath": "c"}]}, "newPackageID"),
        ("/v1/object/newMultipartUpload", {"packageID": pid}, "path"),
        ("/v1/object/completeMultipartUpload", {"indexes": [0]}, "objectID"),
        ("/v1/userSpace/update", {"name": "x"}, "userSpaceID"),
        ("/v1/userSpace/delete", {}, "userSpaceID"),
        # wrong types
        ("/v1/bucket/create", {"name": 5}, "name"),
        ("/v1/bucket/create", {"name": ["a"]}, "name"),
        ("/v1/bucket/delete", {"bucketID": str(bid)}, "bucketID"),
        ("/v1/bucket/delete", {"bucketID": 1.5}, "bucketID"),
        ("/v1/bucket/delete", {"bucketID": True}, "bucketID"),
        ("/v1/bucket/delete", {"bucketID": None}, "bucketID"),
        ("/v1/package/create", {"bucketID": bid, "name": None}, "name"),
        ("/v1/package/delete", {"packageID": [pid]}, "packageID"),
        ("/v1/object/listByIDs", {"objectIDs": oid}, "objectIDs"),
        ("/v1/object/listByIDs", {"objectIDs": ["x"]}, "objectIDs"),
        ("/v1/object/delete", {"objectIDs": [str(oid)]}, "objectIDs"),
        ("/v1/object/move", {"movings": {"objectID": oid}}, "movings"),
        (
            "/v1/object/move",
            {"movings": [{"objectID": oid, "packageID": pid, "path": 7}]},
            "path",
        ),
        ("/v1/object/deleteByPath", {"packageID": pid, "path": None}, "path"),
        (
            "/v1/object/clone",
            {"clonings": [{"objectID": "x", "newPackageID": pid, "newPath": "c"}]},
            "objectID",
        ),
        ("/v1/object/completeMultipartUpload", {"objectID": mp, "indexes": "0"}, "indexes"),
        ("/v1/object/completeMultipartUpload", {"objectID": mp, "indexes": [0.5]}, "indexes"),
        # out of the int64 range
        ("/v1/bucket/delete", {"bucketID": BIG}, "bucketID"),
        ("/v1/package/create", {"bucketID": -BIG - 1, "name": "x"}, "bucketID"),
        ("/v1/object/listByIDs", {"objectIDs": [oid, BIG]}, "objectIDs"),
        ("/v1/object/delete", {"objectIDs": [BIG]}, "objectIDs"),
        (
            "/v1/object/move",
            {"movings": [{"objectID": oid, "packageID": BIG, "path": "x"}]},
            "packageID",
        ),
        ("/v1/userSpace/delete", {"userSpaceID": BIG}, "userSpaceID"),
        ("/v1/userSpace/test", {"userSpaceID": BIG}, "userSpaceID"),
        # invalid names
        ("/v1/bucket/create", {"name": ""}, "name"),
        ("/v1/bucket/create", {"name": "a/b"}, "name"),
        ("/v1/bucket/create", {"name": " padded "}, "name"),
        ("/v1/bucket/create", {"name": "nul\x00"}, "name"),
        ("/v1/bucket/create", {"name": "x" * 256}, "name"),
        ("/v1/package/create", {"bucketID": bid, "name": "a\\b"}, "name"),
        ("/v1/package/clone", {"packageID": pid, "bucketID": bid, "name": ""}, "name"),
        # invalid redundancy
        ("/v1/bucket/create", {"name": "r", "redundancy": "rep"}, "redundancy"),
        ("/v1/bucket/create", {"name": "r", "redundancy": {"type": "raid"}}, "redundancy.type"),
        (
            "/v1/bucket/create",
            {"name": "r", "redundancy": {"type": "rep", "repCount": 0}},
            "redundancy.repCount",
        ),
        (
            "/v1/bucket/create",
            {"name": "r", "redundancy": {"type": "rep"}},
            "redundancy.repCount",
        ),
        (
            "/v1/package/create",
            {"bucketID": bid, "name": "r", "redundancy": {"type": "ec", "k": 3, "n": 3}},
            "redundancy",
        ),
        (
            "/v1/package/create",
            {"bucketID": bid, "name": "r", "redundancy": {"type": "ec", "k": 2, "n": "3"}},
            "redundancy.n",
        ),
        (
            "/v1/package/create",
            {
                "bucketID": bid,
                "name": "r",
                "redundancy": {"type": "ec", "k": 2, "n": 3, "chunkSize": 100},
            },
            "redundancy.chunkSize",
        ),
        # paths with '..', '.', empty segments or NUL
        ("/v1/object/deleteByPath", {"packageID": pid, "path": "dir/../dir/f.txt"}, "path"),
        ("/v1/object/deleteByPath", {"packageID": pid, "path": "dir/f.txt\x00"}, "path"),
        ("/v1/object/deleteByPath", {"packageID": pid, "path": ""}, "path"),
        (
            "/v1/object/move",
            {"movings": [{"objectID": oid, "packageID": pid, "path": "../up"}]},
            "path",
        ),
        (
            "/v1/object/move",
            {"movings": [{"objectID": oid, "packageID": pid, "path": "a//b"}]},
            "path",
        ),
        (
            "/v1/object/clone",
            {"clonings": [{"objectID": oid, "newPackageID": pid, "newPath": "a/./b"}]},
            "newPath",
        ),
        (
            "/v1/object/clone",
            {"clonings": [{"objectID": oid, "newPackageID": pid, "newPath": "a\x00b"}]},
            "newPath",
        ),
        ("/v1/object/newMultipartUpload", {"packageID": pid, "path": "x/.."}, "path"),
        ("/v1/object/newMultipartUpload", {"packageID": pid, "path": "x\x00"}, "path"),
    ]


async def test_bad_json_bodies(api: Api) -> None:
    w = await world(api)
    before = await snapshot(api)
    for url, body, field in post_cases(w):
        r = await api.client.post(url, json=body)
        msg = expect_error(r, "BadArgument", 400)
        assert field in msg, (url, body, msg)
    # Bodies that are not a JSON object at all.
    for raw in (b"{not json", b"[1, 2]", b'"text"', b""):
        r = await api.client.post(
            "/v1/bucket/create", content=raw, headers={"Content-Type": "application/json"}
        )
        expect_error(r, "BadArgument", 400)
    assert await snapshot(api) == before


async def test_bad_query_parameters(api: Api) -> None:
    w = await world(api)
    pid, oid = w["pid"], w["oid"]
    before = await snapshot(api)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/bucket/getByName", {}, "name"),
        ("/v1/package/get", {}, "packageID"),
        ("/v1/package/get", {"packageID": "abc"}, "packageID"),
        ("/v1/package/get", {"packageID": str(BIG)}, "packageID"),
        ("/v1/package/getByFullName", {"bucketName": "b"}, "packageName"),
        ("/v1/package/getByFullName", {"packageName": "p"}, "bucketName"),
        ("/v1/package/listBucketPackages", {"bucketID": "1.5"}, "bucketID"),
        ("/v1/object/download", {}, "objectID"),
        ("/v1/object/download", {"objectID": "x"}, "objectID"),
        ("/v1/object/download", {"objectID": str(BIG)}, "objectID"),
        ("/v1/bucket/download", {"objectID": str(-BIG - 1)}, "objectID"),
        ("/v1/object/download", {"objectID": oid, "offset": "one"}, "offset"),
        ("/v1/object/download", {"objectID": oid, "length": "1.5"}, "length"),
        ("/v1/object/downloadByPath", {"packageID": pid}, "path"),
        ("/v1/object/downloadByPath", {"path": "dir/f.txt"}, "packageID"),
        ("/v1/object/downloadByPath", {"packageID": pid, "path": "dir/../dir/f.txt"}, "path"),
        ("/v1/object/downloadByPath", {"packageID": pid, "path": "dir/f.txt\x00"}, "path"),
        ("/v1/object/listByPath", {"path": ""}, "packageID"),
        (
            "/v1/object/listByPath",
            {"packageID": pid, "path": "", "isPrefix": "perhaps"},
            "isPrefix",
        ),
        (
            "/v1/object/listByPath",
            {"packageID": pid, "path": "d", "isPrefix": "true", "noRecursive": "2"},
            "noRecursive",
        ),
        (
            "/v1/object/listByPath",
            {"packageID": pid, "path": "", "isPrefix": "true", "maxKeys": "many"},
            "maxKeys",
        ),
        # A prefix is a prefix of keys ("../x" may begin an S3 key): only its
        # characters and its length are bounded.
        (
            "/v1/object/listByPath",
            {"packageID": pid, "path": "x" * 1025, "isPrefix": "true"},
            "path",
        ),
        ("/v1/object/listByPath", {"packageID": pid, "path": "a/../b"}, "path"),
        ("/v1/object/listByPath", {"packageID": pid, "path": "a\x00", "isPrefix": "true"}, "path"),
        ("/v1/object/getPackageObjects", {}, "packageID"),
        ("/v1/object/getPackageObjects", {"packageID": "p"}, "packageID"),
        ("/v1/userSpace/get", {}, "userSpaceID"),
        ("/v1/userSpace/get", {"userSpaceID": str(BIG)}, "userSpaceID"),
    ]
    for url, params, field in cases:
        r = await api.client.get(url, params=params)
        msg = expect_error(r, "BadArgument", 400)
        assert field in msg, (url, params, msg)
    # A parameter given twice is refused, not read as its last value.
    repeated = [
        ("/v1/object/download", f"objectID={oid}&objectID={oid}"),
        ("/v1/package/get", f"packageID={pid}&packageID=1"),
        ("/v1/object/downloadByPath", f"packageID={pid}&path=dir/f.txt&path=x"),
        ("/v1/object/listByPath", f"packageID={pid}&path=&isPrefix=true&isPrefix=false"),
    ]
    for url, query in repeated:
        r = await api.client.get(f"{url}?{query}")
        msg = expect_error(r, "BadArgument", 400)
        assert "is given more than once" in msg, (url, query, msg)
    assert await snapshot(api) == before


async def test_query_values_that_are_not_utf8_are_refused(api: Api) -> None:
    """A percent-encoded query value that is not UTF-8 is refused, naming
    the parameter, never decoded with U+FFFD in place of its bytes (found by
    a fuzzing pass, 2026-12-06: ``downloadByPath?path=%FF`` served the object
    named "\ufffd", and the gateway and S3 refuse such text already)."""
    bid = await api.bucket("b")
    pid = await api.package("p", bucket_id=bid)
    await api.upload_one(pid, "\ufffd", b"a different object")
    before = await snapshot(api)
    cases = [
        ("GET", "/v1/object/downloadByPath", f"packageID={pid}&path=%FF", "path"),
        ("HEAD", "/v1/object/downloadByPath", f"packageID={pid}&path=%FF", "path"),
        ("GET", "/v1/object/downloadByPath", f"packageID={pid}&path=%ED%A0%80", "path"),
        ("GET", "/v1/object/listByPath", f"packageID={pid}&path=%FF&isPrefix=true", "path"),
        (
            "GET",
            "/v1/object/listByPath",
            f"packageID={pid}&path=&isPrefix=true&continuationToken=%C3",
            "continuationToken",
        ),
        ("GET", "/v1/bucket/getByName", "name=%FF", "name"),
        ("GET", "/v1/package/getByFullName", "bucketName=b&packageName=b%E9", "packageName"),
        ("GET", "/v1/object/download", "objectID=1&x%FF=1", "name"),
    ]
    for method, url, query, field in cases:
        r = await api.client.request(method, f"{url}?{query}")
        assert r.status_code == 400, (url, query, r.status_code)
        if method == "HEAD":
            continue
        msg = expect_error(r, "BadArgument", 400)
        assert field in msg and "UTF-8" in msg, (url, query, msg)
    assert await snapshot(api) == before


async def test_unknown_ids(api: Api) -> None:
    w = await world(api)
    bid, pid, oid, mp = w["bid"], w["pid"], w["oid"], w["mp"]
    before = await snapshot(api)
    n = 987654
    gets: list[tuple[str, dict[str, Any]]] = [
        ("/v1/bucket/getByName", {"name": "nope"}),
        ("/v1/package/get", {"packageID": n}),
        ("/v1/package/getByFullName", {"bucketName": "b", "packageName": "nope"}),
        ("/v1/package/listBucketPackages", {"bucketID": n}),
        ("/v1/object/download", {"objectID": n}),
        ("/v1/object/download", {"objectID": mp}),  # not completed yet
        ("/v1/bucket/download", {"objectID": n}),
        ("/v1/object/downloadByPath", {"packageID": n, "path": "dir/f.txt"}),
        ("/v1/object/downloadByPath", {"packageID": pid, "path": "dir/nope"}),
        ("/v1/object/listByPath", {"packageID": n, "path": ""}),
        ("/v1/object/getPackageObjects", {"packageID": n}),
        ("/v1/userSpace/get", {"userSpaceID": n}),
    ]
    for url, params in gets:
        r = await api.client.get(url, params=params)
        msg = expect_error(r, "DataNotFound", 404)
        assert any(str(v) in msg for v in params.values()), (url, msg)
    posts: list[tuple[str, dict[str, Any]]] = [
        ("/v1/bucket/delete", {"bucketID": n}),
        ("/v1/package/create", {"bucketID": n, "name": "x"}),
        ("/v1/package/delete", {"packageID": n}),
        ("/v1/package/clone", {"packageID": n, "bucketID": bid, "name": "x"}),
        ("/v1/package/clone", {"packageID": pid, "bucketID": n, "name": "x"}),
        ("/v1/object/delete", {"objectIDs": [oid, n]}),
        ("/v1/object/deleteByPath", {"packageID": pid, "path": "nope"}),
        ("/v1/object/deleteByPath", {"packageID": n, "path": "dir/f.txt"}),
        ("/v1/object/newMultipartUpload", {"packageID": n, "path": "x"}),
        ("/v1/object/completeMultipartUpload", {"objectID": n, "indexes": [0]}),
        ("/v1/userSpace/update", {"userSpaceID": n, "name": "x"}),
        ("/v1/userSpace/delete", {"userSpaceID": n}),
        ("/v1/userSpace/test", {"userSpaceID": n}),
    ]
    for url, body in posts:
        r = await api.client.post(url, json=body)
        expect_error(r, "DataNotFound", 404)
    r = await api.upload_raw([info_part({"packageID": n}), *file_parts([("f", b"x")])])
    assert str(n) in expect_error(r, "DataNotFound", 404)
    r = await api.upload_part(n, 0, b"x")
    expect_error(r, "DataNotFound", 404)
    assert await snapshot(api) == before


BAD_FORMS: list[tuple[list[tuple[str, str | None, bytes]], str]] = [
    ([info_part(b"{not json"), *file_parts([("f", b"x")])], "info"),
    ([info_part(b"[1, 2]"), *file_parts([("f", b"x")])], "info"),
    ([info_part(b"\xff\xfe"), *file_parts([("f", b"x")])], "info"),
    # nested deeper than the JSON parser recurses (was a RecursionError)
    ([info_part(b"[" * 5000 + b"]" * 5000), *file_parts([("f", b"x")])], "info"),
    ([info_part({}), *file_parts([("f", b"x")])], "packageID"),
    ([info_part({"packageID": "1"}), *file_parts([("f", b"x")])], "packageID"),
    ([info_part({"packageID": True}), *file_parts([("f", b"x")])], "packageID"),
    ([info_part({"packageID": BIG}), *file_parts([("f", b"x")])], "packageID"),
    ([info_part({"packageID": "PID", "affinity": "1"}), *file_parts([("f", b"x")])], "affinity"),
    (
        [info_part({"packageID": "PID", "redundancy": {"type": "x"}}), *file_parts([("f", b"x")])],
        "redundancy",
    ),
    ([*file_parts([("f", b"x")]), info_part({"packageID": "PID"})], "info"),
    ([("files", "f", b"x")], "info"),
    ([info_part({"packageID": "PID"}), ("files", "a%2F..%2Fb", b"x")], "filename"),
    ([info_part({"packageID": "PID"}), ("files", "..", b"x")], "filename"),
    ([info_part({"packageID": "PID"}), ("files", "a%00b", b"x")], "filename"),
    ([info_part({"packageID": "PID"}), ("files", "a%2F%2Fb", b"x")], "filename"),
    ([info_part({"packageID": "PID"}), ("files", "%2F", b"x")], "filename"),
    ([info_part({"packageID": "PID"}), ("files", "%FF%FE", b"x")], "filename"),
    ([info_part({"packageID": "PID"})], "files"),
]


async def test_bad_upload_forms(api: Api) -> None:
    w = await world(api)
    before = await snapshot(api)
    pid = str(w["pid"]).encode()
    for parts, field in BAD_FORMS:
        fixed = [(n, f, c.replace(b'"PID"', pid)) for n, f, c in parts]
        r = await api.upload_raw(fixed)
        msg = expect_error(r, "BadArgument", 400)
        assert field in msg, (parts, msg)
    assert await snapshot(api) == before


async def test_upload_filename_that_is_not_utf8(api: Api) -> None:
    w = await world(api)
    before = await snapshot(api)
    body, ctype = multipart(
        [info_part({"packageID": w["pid"]}), *file_parts([("ok", b"1")]), ("files", "BAD", b"2")]
    )
    body = body.replace(b'filename="BAD"', b'filename="bad-\xff\xfe.txt"')
    r = await api.client.post("/v1/object/upload", content=body, headers={"Content-Type": ctype})
    assert "filename" in expect_error(r, "BadArgument", 400)
    assert await snapshot(api) == before


async def test_upload_body_that_is_not_a_form(api: Api) -> None:
    w = await world(api)
    before = await snapshot(api)
    body, ctype = multipart([info_part({"packageID": w["pid"]}), *file_parts([("f", b"x")])])
    for content, headers in (
        (body, {"Content-Type": "application/json"}),
        (body, {"Content-Type": "multipart/form-data"}),  # no boundary
        (body[: len(body) // 2], {"Content-Type": ctype}),  # cut short
        (b"garbage", {"Content-Type": ctype}),
    ):
        r = await api.client.post("/v1/object/upload", content=content, headers=headers)
        expect_error(r, "BadArgument", 400)
        r = await api.client.post("/v1/object/uploadPart", content=content, headers=headers)
        expect_error(r, "BadArgument", 400)
    assert await snapshot(api) == before


async def test_body_that_is_not_json_says_so(api: Api) -> None:
    msg = await api.fail(
        "POST",
        "/v1/bucket/create",
        "BadArgument",
        400,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert "not valid JSON" in msg


async def test_json_body_without_a_json_content_type_says_what_to_send(api: Api) -> None:
    """``curl -d '{...}'`` without ``-H 'Content-Type: application/json'``
    (the seed's requests are "POST application/json"): the message says
    so, rather than pydantic's "Input should be a valid dictionary"."""
    before = await snapshot(api)
    for ctype, shown in (
        ("application/x-www-form-urlencoded", "'application/x-www-form-urlencoded'"),
        ("text/plain", "'text/plain'"),
        (None, "none"),
    ):
        headers = {} if ctype is None else {"Content-Type": ctype}
        msg = await api.fail(
            "POST",
            "/v1/bucket/create",
            "BadArgument",
            400,
            content=b'{"name":"b"}',
            headers=headers,
        )
        assert msg == (
            "the request body must be a JSON object sent with 'Content-Type: "
            f"application/json' (Content-Type given: {shown})"
        ), msg
    assert await snapshot(api) == before
    # With the header the same body works; a JSON body still has its fields named.
    headers = {"Content-Type": "application/json; charset=utf-8"}
    r = await api.client.post("/v1/bucket/create", content=b'{"name":"b"}', headers=headers)
    assert r.status_code == 200, r.text
    msg = await api.fail(
        "POST", "/v1/package/create", "BadArgument", 400, content=b'{"name":"p"}', headers=headers
    )
    assert msg == "bucketID: Field required"


async def test_lone_surrogates_in_names_are_refused(api: Api) -> None:
    """JSON may spell a lone surrogate (``\\ud800``), which is no UTF-8: the
    name is refused in a JSON error that says why, and nothing changes."""
    w = await world(api)
    before = await snapshot(api)
    for url, body in (
        ("/v1/bucket/create", b'{"name": "a\\ud800b"}'),
        ("/v1/package/create", b'{"bucketID": %d, "name": "\\udfff"}' % w["bid"]),
        (
            "/v1/object/move",
            b'{"movings": [{"objectID": %d, "packageID": %d, "path": "\\ud800"}]}'
            % (w["oid"], w["pid"]),
        ),
        ("/v1/object/deleteByPath", b'{"packageID": %d, "path": "x\\ud800"}' % w["pid"]),
    ):
        r = await api.client.post(url, content=body, headers={"Content-Type": "application/json"})
        msg = expect_error(r, "BadArgument", 400)
        assert "lone surrogates" in msg, (url, msg)
    assert await snapshot(api) == before


async def test_an_upload_whose_client_goes_before_the_body_ends_leaves_nothing(
    api: Api, root_key: str
) -> None:
    """Found by review: the form's closing boundary came, the body's last 2
    bytes (its final CRLF) did not, and the client went away; the files
    were committed although the request never ended."""
    pkg = await api.package("cut")
    body, ctype = multipart([info_part({"packageID": pkg}), *file_parts([("a", b"a" * 9000)])])
    headers = [
        (b"authorization", f"Bearer {root_key}".encode()),
        (b"content-type", ctype.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    app = create_app(api.ctx, background=False)
    sent = await sent_then_gone(app, "POST", "/v1/object/upload", headers, body[:-2])
    assert not any(m.get("status") == 200 for m in sent)
    listed = await api.get("/v1/object/listByPath", packageID=pkg, path="", isPrefix="true")
    assert listed["objects"] == []
    # the same body, whole, is an upload
    whole = await api.client.post(
        "/v1/object/upload", content=body, headers={"Content-Type": ctype}
    )
    assert whole.status_code == 200, whole.text


async def test_a_part_whose_client_goes_before_the_body_ends_is_not_recorded(
    api: Api, root_key: str
) -> None:
    """Found by review: the three-step upload's part was recorded when its
    file part ended, though the rest of the body never came."""
    pkg = await api.package("cutpart")
    obj = (await api.post("/v1/object/newMultipartUpload", {"packageID": pkg, "path": "p.bin"}))[
        "object"
    ]
    body, ctype = multipart(
        [info_part({"objectID": obj["objectID"], "index": 0}), ("file", "p", b"p" * 9000)]
    )
    headers = [
        (b"authorization", f"Bearer {root_key}".encode()),
        (b"content-type", ctype.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    # Everything up to the closing boundary's start: the file part has ended.
    cut = body.rindex(b"\r\n--") + 2
    app = create_app(api.ctx, background=False)
    sent = await sent_then_gone(app, "POST", "/v1/object/uploadPart", headers, body[:cut])
    assert not any(m.get("status") == 200 for m in sent)
    msg = await api.fail(
        "POST",
        "/v1/object/completeMultipartUpload",
        "BadArgument",
        400,
        json={"objectID": obj["objectID"], "indexes": [0]},
    )
    assert "0" in msg
    # the whole request records it
    assert (await api.upload_part(obj["objectID"], 0, b"p" * 9000)).status_code == 200


@pytest.mark.parametrize("route", ["/v1/object/upload", "/v1/object/uploadPart"])
async def test_a_client_gone_in_the_info_part_gets_a_400_not_an_error(
    api: Api, root_key: str, route: str
) -> None:
    """Found by review: a disconnect before the file part (in 'info')
    raised out of the route, a 500 and a traceback."""
    body, ctype = multipart([info_part({"packageID": 1, "objectID": 1, "index": 0})])
    headers = [
        (b"authorization", f"Bearer {root_key}".encode()),
        (b"content-type", ctype.encode()),
        (b"content-length", str(len(body) + 100).encode()),
    ]
    cut = body.index(b"packageID") + 3
    sent = await sent_then_gone(create_app(api.ctx), "POST", route, headers, body[:cut])
    assert [m["status"] for m in sent if "status" in m] == [400]
    assert b"the client disconnected before" in b"".join(m.get("body", b"") for m in sent)
