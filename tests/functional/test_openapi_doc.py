"""``/openapi.json`` describes the v1 endpoints as they answer: the upload
form, errors as the 400/401 envelopes (never FastAPI's 422), downloads as
bytes, ``taskID`` as the required integer it is, and the Bearer key. Each
test checks the document and then a live request against it."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
from jcs_helpers import Api, expect_error, file_parts, info_part, multipart

DOWNLOADS = [
    (method, path)
    for path in ("/v1/object/download", "/v1/bucket/download", "/v1/object/downloadByPath")
    for method in ("get", "head")
]


async def _doc(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if method in ("get", "head", "post", "put", "delete", "patch")
    ]


def _validate(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    """``value`` against ``schema`` of the document (its $refs resolved)."""
    root = {**schema, "components": doc["components"]}
    jsonschema.Draft202012Validator(root).validate(value)


def _json_schema(response: dict[str, Any]) -> dict[str, Any]:
    content = response["content"]
    assert set(content) == {"application/json"}, content
    schema: dict[str, Any] = content["application/json"]["schema"]
    return schema


async def test_no_operation_promises_a_422(api: Api, client: httpx.AsyncClient) -> None:
    """A missing or malformed parameter answers 400 BadArgument in the
    envelope; the document described FastAPI's 422 ``{"detail": [...]}``,
    which the server never sends."""
    doc = await _doc(client)
    for method, path, op in _operations(doc):
        assert "422" not in op["responses"], (method, path)
        _json_schema(op["responses"]["400"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]

    r = await client.get("/v1/package/get")
    msg = expect_error(r, "BadArgument", 400)
    assert "packageID" in msg
    schema = _json_schema(doc["paths"]["/v1/package/get"]["get"]["responses"]["400"])
    _validate(doc, schema, r.json())
    # and the OK answer fits the document's 200 envelope
    data = await api.post("/v1/bucket/create", {"name": "b"})
    r = await client.get("/v1/bucket/getByName", params={"name": "b"})
    assert r.json()["data"] == data
    ok = _json_schema(doc["paths"]["/v1/bucket/getByName"]["get"]["responses"]["200"])
    _validate(doc, ok, r.json())
    with_bad_code = {**r.json(), "code": "Fine"}
    try:
        _validate(doc, ok, with_bad_code)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the 200 envelope accepts any code")


async def test_the_upload_form_is_described(api: Api, client: httpx.AsyncClient) -> None:
    """The seed's batch upload is multipart/form-data: 'info' (JSON with
    packageID, affinity?) then 'files' parts. The document had no request
    body at all for it."""
    doc = await _doc(client)
    for path in ("/v1/object/upload", "/object/upload"):
        body = doc["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        form = body["content"]["multipart/form-data"]
        schema = form["schema"]
        assert schema["required"] == ["info", "files"], path
        info = schema["properties"]["info"]
        assert info["type"] == "object" and info["required"] == ["packageID"]
        assert {"packageID", "affinity", "redundancy", "userID"} <= set(info["properties"])
        assert info["properties"]["packageID"]["type"] == "integer"
        assert info["properties"]["affinity"]["type"] == "integer"
        files = schema["properties"]["files"]
        assert files["type"] == "array"
        assert files["items"] == {"type": "string", "format": "binary"}
        assert form["encoding"]["info"]["contentType"] == "application/json"

    # A form made as the document says is what the endpoint takes.
    pid = await api.package("p")
    body_, ctype = multipart(
        [info_part({"packageID": pid, "affinity": 1}), *file_parts([("a/b.txt", b"x")])]
    )
    r = await client.post("/v1/object/upload", content=body_, headers={"Content-Type": ctype})
    ok = _json_schema(doc["paths"]["/v1/object/upload"]["post"]["responses"]["200"])
    _validate(doc, ok, r.json())
    assert r.json()["data"]["uploadeds"][0]["path"] == "a/b.txt"


async def test_downloads_are_described_as_bytes(api: Api, client: httpx.AsyncClient) -> None:
    """A download answers application/octet-stream (206 for a Range), a
    failure the JSON envelope; the document said 200 application/json."""
    doc = await _doc(client)
    for method, path in DOWNLOADS:
        responses = doc["paths"][path][method]["responses"]
        for status in ("200", "206"):
            content = responses[status]["content"]
            assert set(content) == {"application/octet-stream"}, (method, path, status)
            assert content["application/octet-stream"]["schema"] == {
                "type": "string",
                "format": "binary",
            }
        assert "416" in responses, (method, path)
        _json_schema(responses["404"])

    pid = await api.package("p")
    oid = (await api.upload(pid, [("f.txt", b"hello")]))[0]["objectID"]
    r = await client.get("/v1/object/download", params={"objectID": oid})
    assert (r.status_code, r.headers["content-type"]) == (200, "application/octet-stream")
    r = await client.get(
        "/v1/object/download", params={"objectID": oid}, headers={"Range": "bytes=1-"}
    )
    assert (r.status_code, r.content) == (206, b"ello")
    r = await client.get("/v1/object/download", params={"objectID": oid + 1000})
    expect_error(r, "DataNotFound", 404)
    error = _json_schema(doc["paths"]["/v1/object/download"]["get"]["responses"]["404"])
    _validate(doc, error, r.json())


async def test_get_task_id_is_a_required_integer(api: Api, client: httpx.AsyncClient) -> None:
    """getTask's taskID is described as an optional string; the server
    requires a positive int64 (§5.2)."""
    doc = await _doc(client)
    (param,) = doc["paths"]["/v1/spaceSync/getTask"]["get"]["parameters"]
    assert param["name"] == "taskID" and param["in"] == "query"
    assert param["required"] is True
    assert param["schema"]["type"] == "integer" and param["schema"]["minimum"] == 1
    assert param["schema"]["maximum"] == 2**63 - 1

    msg = expect_error(await client.get("/v1/spaceSync/getTask"), "BadArgument", 400)
    assert "taskID" in msg
    for bad in ("abc", "0", "-5", "1.5", "", "5\n", str(2**63)):
        r = await client.get("/v1/spaceSync/getTask", params={"taskID": bad})
        assert "taskID" in expect_error(r, "BadArgument", 400), bad
    expect_error(
        await client.get("/v1/spaceSync/getTask", params={"taskID": "999"}), "TaskNotFound", 404
    )


async def test_the_bearer_key_is_described(
    client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    """Every v1 endpoint needs 'Authorization: Bearer <key>'; the document
    declared no security at all."""
    doc = await _doc(client)
    schemes = doc["components"]["securitySchemes"]
    assert list(schemes.values()) == [{"type": "http", "scheme": "bearer"}]
    (name,) = schemes
    assert doc["security"] == [{name: []}]
    for method, path, op in _operations(doc):
        assert op.get("security", doc["security"]) == [{name: []}], (method, path)
        _json_schema(op["responses"]["401"])

    r = await anon.get("/v1/bucket/listAll")
    expect_error(r, "Unauthorized", 401)
    error = _json_schema(doc["paths"]["/v1/bucket/listAll"]["get"]["responses"]["401"])
    _validate(doc, error, r.json())


async def test_transfer_bodies_are_described(api: Api, client: httpx.AsyncClient) -> None:
    """createPackage, downloadPackage, createTask and cancelTask parse their
    body field by field; the document described it as any JSON at all."""
    doc = await _doc(client)

    def body_schema(path: str) -> dict[str, Any]:
        op = doc["paths"][path]["post"]
        return _json_schema(op["requestBody"])

    required = {
        "/v1/userSpace/createPackage": ["userSpaceID", "path", "bucketID", "name"],
        "/v1/userSpace/downloadPackage": ["packageID", "userSpaceID", "rootPath"],
        "/v1/spaceSync/createTask": ["srcUserSpaceID", "srcPath", "dests"],
        "/v1/spaceSync/cancelTask": ["taskID"],
    }
    for path, fields in required.items():
        schema = body_schema(path)
        assert schema["type"] == "object" and schema["required"] == fields, path
        for name in fields:
            assert name in schema["properties"], (path, name)

    # §5.1 as the spec spells it fits the document, and is taken.
    src, dst = await api.add_spaces(2)
    (api.spaces[src] / "in").mkdir(parents=True)
    (api.spaces[src] / "in" / "a.txt").write_bytes(b"a")
    body = {
        "srcUserSpaceID": src,
        "srcPath": "in",
        "dests": [{"userSpaceID": dst, "path": "out"}],
        "mode": "diff",
        "trigger": {"type": "window", "start": "01:00", "end": "02:00", "timezone": "UTC"},
        "filter": {"minSize": 0, "maxSize": 10, "includeExt": ["txt"], "excludePaths": ["x/*"]},
        "deleteSource": False,
    }
    _validate(doc, body_schema("/v1/spaceSync/createTask"), body)
    task = (await api.post("/v1/spaceSync/createTask", body))["task"]
    cancel = {"taskID": task["taskID"]}
    _validate(doc, body_schema("/v1/spaceSync/cancelTask"), cancel)
    assert await api.post("/v1/spaceSync/cancelTask", cancel) is None
    bad = {**body, "filter": {"size": 1}}  # refused by the server, and by the document
    expect_error(await client.post("/v1/spaceSync/createTask", json=bad), "BadArgument", 400)
    try:
        _validate(doc, body_schema("/v1/spaceSync/createTask"), bad)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the document takes a filter the server refuses")
