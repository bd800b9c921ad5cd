"""The seed's own raw multipart example must work byte for byte."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from jointcloud.api.jcs.app import create_app
from jointcloud.context import Context

BOUNDARY = "-----------------------------818270992847011232305151"


def seed_body(package_id: int, user_id: int) -> bytes:
    text = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="info"\r\n'
        "\r\n"
        "{\n"
        f'\t"userID": {user_id},\n'
        f'\t"packageID": {package_id}\n'
        "}\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="files"; filename="test.txt"\r\n'
        "Content-Type: text/plain\r\n"
        "\r\n"
        "testdata\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="files"; filename="a%2Fb%2Ftest2.txt"\r\n'
        "\r\n"
        "testdata2\r\n"
        f"--{BOUNDARY}--\r\n"
    )
    return text.encode()


async def test_seed_multipart_example(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/bucket/create", json={"userID": 1, "name": "bkt1"})
    assert r.status_code == 200, r.text
    bucket = r.json()["data"]["bucket"]
    assert bucket["name"] == "bkt1" and isinstance(bucket["bucketID"], int)
    r = await client.post("/v1/package/create", json={"bucketID": bucket["bucketID"], "name": "p"})
    package_id = r.json()["data"]["package"]["packageID"]

    r = await client.post(
        "/v1/object/upload",
        content=seed_body(package_id, 1),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == "OK" and body["message"] == ""
    up = body["data"]["uploadeds"]
    assert [o["path"] for o in up] == ["test.txt", "a/b/test2.txt"]
    assert [o["size"] for o in up] == ["8", "9"]
    assert up[0]["fileHash"] == "Full" + hashlib.sha256(b"testdata").hexdigest().upper()
    assert up[0]["redundancy"] == {"type": "none"}

    r = await client.get("/v1/bucket/download", params={"objectID": up[1]["objectID"]})
    assert r.status_code == 200
    assert r.content == b"testdata2"
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "attachment; filename=test2.txt"


@pytest.mark.parametrize("fast_lane", [True, False], ids=["fast-lane", "fastapi"])
async def test_seed_example_request_line_without_v1(
    ctx: Context, root_key: str, fast_lane: bool
) -> None:
    """The seed's example request is ``POST /object/upload HTTP/1.1`` (its
    heading says ``/v1/object/upload``): both paths take the same form."""
    app = create_app(ctx, fast_lane=fast_lane)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://localhost:7890",
        headers={"Authorization": f"Bearer {root_key}"},
    ) as client:
        r = await client.post("/v1/bucket/create", json={"userID": 1, "name": "bkt1"})
        bucket_id = r.json()["data"]["bucket"]["bucketID"]
        r = await client.post("/v1/package/create", json={"bucketID": bucket_id, "name": "p"})
        package_id = r.json()["data"]["package"]["packageID"]

        r = await client.post(
            "/object/upload",
            content=seed_body(package_id, 1),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert r.status_code == 200, r.text
        up = r.json()["data"]["uploadeds"]
        assert [(o["path"], o["size"]) for o in up] == [("test.txt", "8"), ("a/b/test2.txt", "9")]
        r = await client.get("/v1/bucket/download", params={"objectID": up[1]["objectID"]})
        assert r.content == b"testdata2"

        # Only the upload has the second spelling; its errors are the same.
        r = await client.post(
            "/object/upload",
            content=seed_body(987654, 1),
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert (r.status_code, r.json()["code"]) == (404, "DataNotFound"), r.text
        r = await client.get("/object/download", params={"objectID": up[1]["objectID"]})
        assert r.status_code == 404
