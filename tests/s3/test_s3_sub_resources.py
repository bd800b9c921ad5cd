"""A PUT or DELETE naming a sub-resource it does not act on is refused
(405 MethodNotAllowed), not read as the plain operation: fuzzing found
``DELETE /bucket?versioning`` deleting the (empty) bucket, ``DELETE
/key?acl`` deleting the object, and ``PUT /key?uploadId=...`` without
``partNumber`` overwriting it (2026-12-06, eighth session)."""

from __future__ import annotations

import asyncio
import hashlib

import defusedxml.ElementTree as ET
import httpx
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from s3_support import S3


def _send(s3: S3, method: str, path: str, body: bytes = b"") -> httpx.Response:
    request = AWSRequest(method=method, url=f"{s3.endpoint}{path}", data=body)
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(s3.access_key_id, s3.secret_key), "s3", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    return httpx.request(method, request.url, headers=headers, content=body, timeout=30)


def _refused(answer: httpx.Response, sub: str) -> None:
    assert answer.status_code == 405, answer.text
    error = ET.fromstring(answer.content)
    assert error.findtext("Code") == "MethodNotAllowed"
    assert f"?{sub}" in (error.findtext("Message") or "")


async def test_a_delete_of_another_sub_resource_never_deletes_the_bucket(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="subs")
        for sub in ("versioning", "uploads", "acl", "location", "versions"):
            _refused(_send(s3, "DELETE", f"/subs?{sub}"), sub)
        c.head_bucket(Bucket="subs")  # still there, empty as it is
        assert _send(s3, "DELETE", "/subs?cors").status_code == 204  # DeleteBucketCors
        assert _send(s3, "DELETE", "/subs").status_code == 204

    await asyncio.to_thread(work)


async def test_a_write_of_another_sub_resource_never_touches_the_object(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="subk")
        c.put_object(Bucket="subk", Key="k", Body=b"kept")
        _refused(_send(s3, "DELETE", "/subk/k?acl"), "acl")
        _refused(_send(s3, "DELETE", "/subk/k?uploads"), "uploads")
        _refused(_send(s3, "PUT", "/subk/k?uploads", b"other"), "uploads")
        answer = _send(s3, "PUT", "/subk/k?uploadId=2~abc", b"other")
        assert answer.status_code == 405, answer.text
        assert "partNumber" in (ET.fromstring(answer.content).findtext("Message") or "")
        _refused(_send(s3, "PUT", "/subk?uploads"), "uploads")
        assert c.get_object(Bucket="subk", Key="k")["Body"].read() == b"kept"

    await asyncio.to_thread(work)
