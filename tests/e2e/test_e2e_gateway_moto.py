"""The gateway facade of a real ``jcs serve`` pointed at a third-party S3:
moto's S3 server (``python -m moto.server``) as a subprocess on loopback.

Every object call of the facade is an S3 call to the URL in the ``Endpoint``
header, so against moto the facade must behave as against this server's own
S3 endpoint: buckets, a multipart ``/uploadObject`` (over one 8 MiB part),
listing, ranged download, copy, tags, the multipart endpoints, batch delete,
in JSON and in XML; and S3's refusals read as the seed's facade prints them
(the AWS Go SDK's ``operation error S3: …`` text)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_support import JcsServer, free_port, running_server

MiB = 1024 * 1024
ERROR = re.compile(
    r"^operation error S3: (?P<op>\w+), https response error StatusCode: (?P<status>\d+), "
    r"RequestID: [^,]*, HostID: [^,]*, (?P<rest>.*)$"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JcsServer]:
    with running_server(tmp_path_factory.mktemp("gateway-moto")) as s:
        yield s


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server in its own process, stopped by its PID."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto exited with {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url + "/", timeout=1)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"moto did not answer in 20 s:\n{log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def gw(served: JcsServer, moto_url: str) -> Iterator[httpx.Client]:
    headers = {"AccessKeyId": "testing", "SecretKey": "testing", "Endpoint": moto_url}
    with httpx.Client(base_url=served.endpoint, headers=headers, timeout=60) as client:
        yield client


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0, body
    return body.get("data")


def s3_error(r: httpx.Response, op: str, status: int, rest: str) -> None:
    """A refusal reads as the Go SDK prints it (HTTP 200, code -1)."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == -1, body
    m = ERROR.match(body["msg"])
    assert m is not None, body["msg"]
    assert (m["op"], int(m["status"])) == (op, status), body["msg"]
    assert m["rest"].startswith(rest), body["msg"]


def big_payload(mib: int) -> bytes:
    block = hashlib.sha256(b"moto e2e").digest() * (MiB // 32)
    return b"".join(i.to_bytes(4, "big") + block[4:] for i in range(mib))


def test_facade_against_moto(gw: httpx.Client, moto_url: str, served: JcsServer) -> None:
    bucket = "gw-moto-e2e"
    r = gw.post("/createBucket", data={"bucket": bucket})
    assert r.json() == {"code": 0, "msg": "创建成功"}
    listed = ok(gw.post("/listBuckets"))
    assert bucket in [b["bucket"] for b in listed]
    ok(gw.post("/headBucket", data={"bucket": bucket}))
    s3_error(
        gw.post("/headBucket", data={"bucket": "gw-moto-none"}), "HeadBucket", 404, "NotFound: "
    )

    # > 8 MiB: a multipart upload of three parts, streamed by the facade
    data = big_payload(20)
    r = gw.post(
        "/uploadObject",
        data={"bucket": bucket, "key": "dir/big.bin"},
        files={"file": ("big.bin", data, "application/octet-stream")},
    )
    assert r.json() == {"code": 0, "msg": "上传成功"}
    head = ok(gw.post("/headObject", json={"bucket": bucket, "key": "dir/big.bin"}))
    assert head["content_length"] == len(data) and head["etag"].endswith('-3"')
    ok(
        gw.post(
            "/uploadObject",
            data={"bucket": bucket, "key": "small.txt"},
            files={"file": ("small.txt", b"small one\n", "text/plain")},
        )
    )

    assert ok(gw.post("/listObjects", json={"bucket": bucket, "delimiter": "/"})) == [
        {"key": "dir/", "size": 0, "kind": "PRE"},
        {"key": "small.txt", "size": 10, "kind": "OBJ"},
    ]
    assert ok(gw.post("/listObjects", data={"bucket": bucket, "prefix": "dir/"})) == [
        {"key": "dir/big.bin", "size": len(data), "kind": "OBJ"}
    ]

    whole = gw.post("/downloadObject", data={"bucket": bucket, "key": "dir/big.bin"})
    assert whole.status_code == 200 and whole.headers["content-length"] == str(len(data))
    assert hashlib.sha256(whole.content).digest() == hashlib.sha256(data).digest()
    lo, hi = 8 * MiB - 5, 8 * MiB + 4  # across the first part boundary
    part = gw.post(
        "/downloadObject",
        data={"bucket": bucket, "key": "dir/big.bin"},
        headers={"Range": f"bytes={lo}-{hi}"},
    )
    assert part.status_code == 206 and part.content == data[lo : hi + 1]
    assert part.headers["content-range"] == f"bytes {lo}-{hi}/{len(data)}"
    s3_error(
        gw.post("/downloadObject", data={"bucket": bucket, "key": "nothing"}),
        "GetObject",
        404,
        "NoSuchKey: ",
    )

    copy = {
        "source_bucket": bucket,
        "source_key": "small.txt",
        "destination_bucket": bucket,
        "destination_key": "copy/small.txt",
    }
    assert gw.post("/copyObject", json=copy).json() == {"code": 0, "msg": "复制成功"}
    got = gw.get("/downloadObject", params={"bucket": bucket, "key": "copy/small.txt"})
    assert got.content == b"small one\n"

    # the seed's raw body of /putObjectTagging
    seed = (
        b'{"bucket": "buc1", "key": "small.txt", "tags": [{"key": "k1", "value": "v1"}, '
        b'{"key": "k2", "value": "v2"}]}'
    ).replace(b"buc1", bucket.encode())
    r = gw.post("/putObjectTagging", content=seed, headers={"Content-Type": "application/json"})
    assert r.json() == {"code": 0, "msg": "success"}
    tags = ok(gw.post("/getObjectTagging", json={"bucket": bucket, "key": "small.txt"}))
    assert tags == [{"key": "k1", "value": "v1"}, {"key": "k2", "value": "v2"}]

    # one call in XML: the seed's <map>, the Go escaping of quotes
    xml = gw.post(
        "/getObjectTagging",
        data={"bucket": bucket, "key": "small.txt", "data_format": "xml"},
    )
    assert xml.status_code == 200
    assert xml.text == (
        "<map><code>0</code><msg>success</msg>"
        "<data><Key>k1</Key><Value>v1</Value></data>"
        "<data><Key>k2</Key><Value>v2</Value></data></map>"
    )
    xml = gw.post("/headObject", data={"bucket": bucket, "key": "small.txt", "data_format": "xml"})
    etag = hashlib.md5(b"small one\n").hexdigest()
    assert f"<ETag>&#34;{etag}&#34;</ETag><ContentLength>10</ContentLength>" in xml.text

    # the multipart endpoints
    upload_id = ok(gw.post("/createMultipartUpload", json={"bucket": bucket, "key": "mpu"}))[
        "upload_id"
    ]
    first, second = data[: 5 * MiB], b"tail part"
    etags = []
    for number, chunk in ((1, first), (2, second)):
        answer = ok(
            gw.post(
                "/uploadPart",
                data={
                    "bucket": bucket,
                    "key": "mpu",
                    "upload_id": upload_id,
                    "part_number": number,
                },
                files={"file": ("part", chunk)},
            )
        )
        assert answer == {"etag": f'"{hashlib.md5(chunk).hexdigest()}"'}
        etags.append(answer["etag"])
    uploads = ok(gw.post("/listMultipartUploads", json={"bucket": bucket}))
    assert [(u["key"], u["upload_id"]) for u in uploads] == [("mpu", upload_id)]
    parts = ok(gw.post("/listParts", json={"bucket": bucket, "key": "mpu", "upload_id": upload_id}))
    assert parts == [
        {"part_number": 1, "size": len(first), "etag": etags[0]},
        {"part_number": 2, "size": len(second), "etag": etags[1]},
    ]
    # made-up etags are refused by moto, and the refusal carries its text
    bogus = {
        "bucket": bucket,
        "key": "mpu",
        "upload_id": upload_id,
        "parts": [{"part_number": 1, "etag": "sf"}, {"part_number": 2, "etag": "sf"}],
    }
    s3_error(
        gw.post("/completeMultipartUpload", json=bogus),
        "CompleteMultipartUpload",
        400,
        "api error InvalidPart: ",
    )
    done = ok(
        gw.post(
            "/completeMultipartUpload",
            json={
                **bogus,
                "parts": [{"part_number": n, "etag": e} for n, e in ((2, etags[1]), (1, etags[0]))],
            },
        )
    )
    assert done["etag"].endswith('-2"')
    got = gw.post("/downloadObject", json={"bucket": bucket, "key": "mpu"})
    assert got.content == first + second
    upload_id = ok(gw.post("/createMultipartUpload", json={"bucket": bucket, "key": "gone"}))[
        "upload_id"
    ]
    ok(
        gw.post(
            "/abortMultipartUpload", json={"bucket": bucket, "key": "gone", "upload_id": upload_id}
        )
    )
    s3_error(
        gw.post("/listParts", json={"bucket": bucket, "key": "gone", "upload_id": upload_id}),
        "ListParts",
        404,
        "NoSuchUpload: ",
    )

    # a bucket that is not empty is refused with moto's own text
    s3_error(
        gw.request("DELETE", "/deleteBucket", params={"bucket": bucket}),
        "DeleteBucket",
        409,
        "api error BucketNotEmpty: The bucket you tried to delete is not empty",
    )
    # the seed's raw body of /deleteObjects
    body = (
        b'{"bucket":"buc1", "keys":["dir/big.bin","small.txt","copy/small.txt","mpu"]}'
    ).replace(b"buc1", bucket.encode())
    r = gw.request(
        "DELETE", "/deleteObjects", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.json() == {"code": 0, "msg": "删除成功"}
    assert ok(gw.post("/listObjects", json={"bucket": bucket})) in ([], None)
    r = gw.request("DELETE", "/deleteBucket", params={"bucket": bucket})
    assert r.json() == {"code": 0, "msg": "删除成功"}
    s3_error(
        gw.request("DELETE", "/deleteBucket", params={"bucket": bucket}),
        "DeleteBucket",
        404,
        "NoSuchBucket: ",
    )
    # the bucket was moto's, never this server's
    key = (served.data_dir / "root.key").read_text().strip()
    mine = httpx.get(
        served.endpoint + "/v1/bucket/listAll",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert bucket not in mine.text
