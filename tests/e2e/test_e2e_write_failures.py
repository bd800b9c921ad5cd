"""A disk that refuses writes under a real ``jcs serve``: what a user and the
operator see, and what is left behind.

The server runs with a file size limit (``RLIMIT_FSIZE``, set before it
starts): any write that would take one file past ``LIMIT`` fails in the
kernel with ``EFBIG``, as a full disk fails with ``ENOSPC``, while small
files (the metadata database, small objects' blocks, the log) keep working.
Python ignores ``SIGXFSZ``, so the process is not killed by it. Objects of
``BIG`` bytes need a block file past the limit.

Checked, with blocks past the limit: v1 uploads (one file, an overwrite, a multi-file upload) and S3
(PutObject, UploadPart) answer 503 in their protocol's format, naming the
failure; nothing of them is visible and the object overwritten keeps its
bytes; the server logs the failed write at warning level; once the limit is
lifted (the disk has room again) the same uploads succeed without a
restart; GC and fsck then find no orphan, no missing block and no temporary
file, and exactly the blocks of committed objects are on disk.

And with the metadata database's write-ahead log reaching the limit: v1
and S3 writes answer 503 saying that the metadata database cannot use its
file (never 500), the operator is told, every acknowledged object stays
readable, and once the limit is lifted writes succeed again."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from e2e_support import (
    JcsServer,
    api_client,
    block_files,
    fetch,
    gc_then_fsck,
    make_package,
    temp_files,
    upload,
)
from s3_clients import S3Creds, boto3_client, make_credentials

LIMIT = 4 << 20
BIG = 6 << 20
SMALL = 100_000
PROJECT = "fullproj"
BUCKET = "fullbucket"

# Sets the limit (soft only: the test lifts it later with prlimit) and
# becomes the server: the same PID, so the server's PID is the one limited.
_LIMITED = (
    "import os, resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


@dataclass
class LimitedServer(JcsServer):
    """``jcs serve`` whose files may not grow past ``limit`` bytes."""

    limit: int = LIMIT

    def command(self) -> list[str]:
        return [sys.executable, "-c", _LIMITED, str(self.limit), *super().command()]

    def lift_limit(self) -> None:
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, unlimited)


@dataclass
class Setup:
    server: LimitedServer
    api: httpx.Client
    package_id: int
    s3: Any
    creds: S3Creds


@contextlib.contextmanager
def limited(tmp_path: Path, limit: int) -> Iterator[Setup]:
    """A server limited to files of ``limit`` bytes, with a package for v1
    uploads and an S3 bucket in the same project."""
    server = LimitedServer(data_dir=tmp_path / "data", log_dir=tmp_path, limit=limit)
    server.start()
    try:
        with api_client(server) as api:
            package_id = make_package(api, PROJECT, "files")
            creds = make_credentials(server, PROJECT, "full passphrase", cwd=tmp_path)
            s3 = boto3_client(creds)
            s3.create_bucket(Bucket=BUCKET)
            yield Setup(server, api, package_id, s3, creds)
    finally:
        server.stop()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Setup]:
    with limited(tmp_path, LIMIT) as setup:
        yield setup


def listed(api: httpx.Client, package_id: int) -> list[str]:
    r = api.get("/v1/object/listByPath", params={"packageID": package_id, "isPrefix": "true"})
    assert r.status_code == 200, r.text
    return [o["path"] for o in r.json()["data"]["objects"]]


def assert_refused_write(r: httpx.Response) -> str:
    """503 in the v1 envelope, naming what failed: the kernel's reason.
    Returns the request's id."""
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "OperationFailed" and body["data"] is None
    assert "File too large" in body["message"], body
    assert "Traceback" not in r.text
    return r.headers["x-request-id"]


def assert_s3_refused(caught: pytest.ExceptionInfo[ClientError]) -> str:
    """503 ServiceUnavailable in S3's XML, naming the kernel's reason;
    returns the request's id."""
    answer = caught.value.response
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert answer["Error"]["Code"] == "ServiceUnavailable"
    assert "File too large" in answer["Error"]["Message"]
    request_id: str = answer["ResponseMetadata"]["RequestId"]
    assert request_id
    return request_id


def test_a_disk_refusing_writes_leaves_nothing_and_the_server_recovers(
    full_disk: Setup,
) -> None:
    server, api, pkg, s3 = full_disk.server, full_disk.api, full_disk.package_id, full_disk.s3
    kept, old, big = os.urandom(SMALL), os.urandom(SMALL), os.urandom(BIG)
    assert upload(api, pkg, ("kept.bin", kept), ("over.bin", old)).status_code == 200
    s3.put_object(Bucket=BUCKET, Key="s3-kept.bin", Body=kept)
    before = block_files(server)
    assert len(before) == 3  # small objects' blocks fit under the limit

    # v1: a new object, an overwrite, a multi-file upload with one big file
    refused = [
        assert_refused_write(upload(api, pkg, ("big.bin", big))),
        assert_refused_write(upload(api, pkg, ("over.bin", big))),
        assert_refused_write(
            upload(api, pkg, ("m/a.bin", kept), ("m/big.bin", big), ("m/c.bin", old))
        ),
    ]
    assert sorted(listed(api, pkg)) == ["kept.bin", "over.bin"]
    assert fetch(api, pkg, "over.bin") == old  # the overwrite left the old bytes

    # S3: a PUT and one part of a multipart upload
    with pytest.raises(ClientError) as put:
        s3.put_object(Bucket=BUCKET, Key="s3-big.bin", Body=big)
    refused.append(assert_s3_refused(put))
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket=BUCKET, Key="s3-big.bin")
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="mp.bin")["UploadId"]
    with pytest.raises(ClientError) as part:
        s3.upload_part(Bucket=BUCKET, Key="mp.bin", UploadId=upload_id, PartNumber=1, Body=big)
    refused.append(assert_s3_refused(part))
    parts = s3.list_parts(Bucket=BUCKET, Key="mp.bin", UploadId=upload_id)
    assert parts.get("Parts", []) == []

    # nothing of the refused writes is on disk, not even a temporary file
    assert block_files(server) == before
    assert temp_files(server) == []
    # the operator is told of every refused write, with the kernel's reason
    # (boto3 may have sent an S3 request twice: each attempt is logged)
    failures = {
        entry["request_id"]: entry
        for entry in (json.loads(line) for line in server.output().splitlines() if line[:1] == "{")
        if entry["event"] == "block write failed"
    }
    assert set(refused) <= set(failures), server.output()
    assert all(
        f["level"] == "warning" and "File too large" in f["error"] for f in failures.values()
    )

    # the disk has room again: the same writes succeed, no restart needed
    server.lift_limit()
    r = upload(api, pkg, ("over.bin", big))
    assert r.status_code == 200, r.text
    assert fetch(api, pkg, "over.bin") == big
    s3.put_object(Bucket=BUCKET, Key="s3-big.bin", Body=big)
    assert s3.get_object(Bucket=BUCKET, Key="s3-big.bin")["Body"].read() == big
    etag = s3.upload_part(Bucket=BUCKET, Key="mp.bin", UploadId=upload_id, PartNumber=1, Body=big)[
        "ETag"
    ]
    s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="mp.bin",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert s3.get_object(Bucket=BUCKET, Key="mp.bin")["Body"].read() == big

    # GC and fsck: no orphan, no missing block, nothing temporary left
    gc_then_fsck(server)
    # kept.bin, s3-kept.bin, the new over.bin, s3-big.bin and mp.bin's part
    # (the old over.bin's block went with GC)
    assert len(block_files(server)) == 5
    assert '"status": 500' not in server.output()


META_LIMIT = 1_000_000  # the write-ahead log passes this after some dozens of uploads
META_TRIES = 400


def test_a_metadata_file_that_cannot_grow_answers_503_and_recovers(tmp_path: Path) -> None:
    with limited(tmp_path, META_LIMIT) as setup:
        server, api, pkg, s3 = setup.server, setup.api, setup.package_id, setup.s3
        acked: dict[str, bytes] = {}
        refused: list[str] = []
        for i in range(META_TRIES):
            data = os.urandom(3000)  # inline: the bytes go into the database too
            r = upload(api, pkg, (f"f/{i}.bin", data))
            if r.status_code == 200:
                acked[f"f/{i}.bin"] = data
                continue
            assert r.status_code == 503, r.text
            assert r.json()["message"].startswith("the metadata database cannot use its file ("), (
                r.text
            )
            refused.append(f"f/{i}.bin")
            if len(refused) == 3:
                break
        assert len(refused) == 3, f"the log never reached the limit in {META_TRIES} uploads"
        # S3 writes are refused too. Which write is the first that no longer
        # fits depends on the pages it touches (a small one may still fit in
        # the log's last frames): put until one is refused.
        answer = None
        for i in range(20):
            try:
                s3.put_object(Bucket=BUCKET, Key=f"s3/{i}.bin", Body=os.urandom(3000))
            except ClientError as exc:
                answer = exc.response
                break
        assert answer is not None, "no S3 write was refused"
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert answer["Error"]["Code"] == "ServiceUnavailable"
        assert "metadata database cannot use its file" in answer["Error"]["Message"]

        # reads go on: every acknowledged object, nothing refused
        assert set(listed(api, pkg)) == set(acked)
        for path, data in list(acked.items())[-5:]:
            assert fetch(api, pkg, path) == data

        server.lift_limit()
        r = upload(api, pkg, ("after.bin", b"after"))
        assert r.status_code == 200, r.text
        s3.put_object(Bucket=BUCKET, Key="s3.bin", Body=b"small")
        assert s3.get_object(Bucket=BUCKET, Key="s3.bin")["Body"].read() == b"small"
        assert set(listed(api, pkg)) == {*acked, "after.bin"}
        for path, data in acked.items():
            assert fetch(api, pkg, path) == data
    gc_then_fsck(server)
    entries = [json.loads(line) for line in server.output().splitlines() if line[:1] == "{"]
    told = [e for e in entries if e["event"] == "database: SQLite cannot use its file"]
    assert told and all(e["level"] == "warning" for e in told), server.output()
    assert not [e for e in entries if e["level"] == "error"], server.output()
