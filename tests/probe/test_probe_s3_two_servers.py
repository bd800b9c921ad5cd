"""The S3 endpoint behind any load balancer: two ``jcs serve`` processes on
ONE PostgreSQL database with the same public URL (the satellite address in
access grants) serve the same S3 data. Credentials are made once through
server A (v1 API, a grant, ``POST /v1/access``); boto3 writes through A's S3
listener and reads and lists through B's; a multipart upload is started on
A, gets parts on A and on B and is completed on B; revoking the grant's key
on A stops the credentials on B within 5 s (polled against a deadline)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from probe_support import ProbeServer, ok

from jointcloud.keys.caveats import APIKey, KeyCaveat
from jointcloud.keys.grant import new_grant
from support.postgres import PostgresServer

PUBLIC_URL = "http://jcs.lb.test:8080"  # the load balancer's address, the same for both
S3_PUBLIC_URL = "http://s3.lb.test:8081"
REVOCATION_BOUND = 5.0  # seconds (issue 11: revoked keys stop on every process within 5 s)
POLL = 0.05
PART = 5 * 1024 * 1024  # S3's minimum size of every part but the last


def s3_client(server: ProbeServer, access_key_id: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{server.s3_port}",
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def make_credentials(server: ProbeServer, key: str, project_id: str) -> tuple[str, str]:
    """A grant for ``key`` registered with the auth service of ``server``."""
    grant = new_grant(PUBLIC_URL, key, "probe passphrase", project_id)
    r = httpx.post(
        f"{server.endpoint}/v1/access", json={"access_grant": grant.serialize()}, timeout=60
    )
    assert r.status_code == 200, r.text
    made = r.json()
    assert made["endpoint"] == S3_PUBLIC_URL, made
    return made["access_key_id"], made["secret_key"]


def etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def test_s3_behind_a_load_balancer(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.new_database()
    data = tmp_path / "data"
    env = {"JCS_PUBLIC_URL": PUBLIC_URL, "JCS_S3_PUBLIC_URL": S3_PUBLIC_URL}
    a = ProbeServer(data_dir=data, log_dir=tmp_path, database_url=url, env=dict(env))
    b = ProbeServer(data_dir=data, log_dir=tmp_path, database_url=url, env=dict(env))
    a.start()
    try:
        b.start()
        try:
            _scenario(a, b)
        finally:
            b.stop()
    finally:
        a.stop()


def _scenario(a: ProbeServer, b: ProbeServer) -> None:
    with a.client() as admin:
        bucket = ok(admin.post("/v1/bucket/create", json={"name": "lbproj"}))["bucket"]
        bid = int(bucket["bucketID"])
        body = {"bucketID": bid, "name": "s3"}
        project_key = ok(admin.post("/v1/apiKey/create", json=body))["apiKey"]["key"]
        info = ok(admin.get("/v1/project/info", params={"bucketID": bid}))
    assert info["satellite"] == PUBLIC_URL
    # Both servers name the same satellite: either judges the other's grants.
    with b.client() as admin_b:
        assert ok(admin_b.get("/v1/project/info", params={"bucketID": bid}))["satellite"] == (
            PUBLIC_URL
        )

    # The grant's key: derived from the project key (so revoking it leaves
    # the project key, and credentials made from it, working).
    grant_key = (
        APIKey.parse(project_key)
        .restrict(KeyCaveat.allowing(allow={"read", "write", "list", "delete"}))
        .serialize()
    )
    akid, secret = make_credentials(a, grant_key, info["projectID"])
    other_akid, other_secret = make_credentials(a, project_key, info["projectID"])
    on_a, on_b = s3_client(a, akid, secret), s3_client(b, akid, secret)
    other_b = s3_client(b, other_akid, other_secret)

    # Writes on A, reads and listings on B.
    small, medium = os.urandom(1000), os.urandom(300_000)
    on_a.create_bucket(Bucket="shared")
    on_a.put_object(Bucket="shared", Key="docs/small.txt", Body=small, Metadata={"from": "a"})
    on_a.put_object(Bucket="shared", Key="docs/medium.bin", Body=medium)
    assert [x["Name"] for x in on_b.list_buckets()["Buckets"]] == ["shared"]
    on_b.head_bucket(Bucket="shared")
    got = on_b.get_object(Bucket="shared", Key="docs/small.txt")
    assert got["Body"].read() == small and got["Metadata"] == {"from": "a"}
    assert got["ETag"] == etag(small)
    ranged = on_b.get_object(Bucket="shared", Key="docs/medium.bin", Range="bytes=100-199")
    assert ranged["Body"].read() == medium[100:200]
    listed = on_b.list_objects_v2(Bucket="shared", Prefix="docs/")
    assert [o["Key"] for o in listed["Contents"]] == ["docs/medium.bin", "docs/small.txt"]
    # ...and the other way round: B deletes, A no longer sees it.
    on_b.delete_object(Bucket="shared", Key="docs/small.txt")
    with pytest.raises(ClientError) as e:
        on_a.head_object(Bucket="shared", Key="docs/small.txt")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # Multipart: created on A, part 1 on A, part 2 on B, listed and completed on B.
    one, two = os.urandom(PART), os.urandom(12345)
    up = on_a.create_multipart_upload(Bucket="shared", Key="big.bin")["UploadId"]
    uploads = on_b.list_multipart_uploads(Bucket="shared").get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big.bin", up)]
    e1 = on_a.upload_part(Bucket="shared", Key="big.bin", UploadId=up, PartNumber=1, Body=one)
    e2 = on_b.upload_part(Bucket="shared", Key="big.bin", UploadId=up, PartNumber=2, Body=two)
    parts = on_b.list_parts(Bucket="shared", Key="big.bin", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [
        (1, len(one), e1["ETag"]),
        (2, len(two), e2["ETag"]),
    ]
    on_b.complete_multipart_upload(
        Bucket="shared",
        Key="big.bin",
        UploadId=up,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": e1["ETag"]},
                {"PartNumber": 2, "ETag": e2["ETag"]},
            ]
        },
    )
    joined = hashlib.md5(hashlib.md5(one).digest() + hashlib.md5(two).digest()).hexdigest()
    for client in (on_a, on_b):
        got = client.get_object(Bucket="shared", Key="big.bin")
        assert got["ETag"] == f'"{joined}-2"'
        assert got["Body"].read() == one + two
    assert on_a.list_multipart_uploads(Bucket="shared").get("Uploads", []) == []

    # Revoke the grant's key on A: B refuses its credentials within the bound
    # (both have them cached: B has just served them).
    for client in (on_a, on_b):
        client.list_objects_v2(Bucket="shared")
    with a.client() as admin:
        ok(admin.post("/v1/apiKey/revoke", json={"key": grant_key}))
    revoked = time.monotonic()
    refused: dict[str, float] = {}
    deadline = revoked + REVOCATION_BOUND + 5
    while len(refused) < 2 and time.monotonic() < deadline:
        for name, client in (("b", on_b), ("a", on_a)):
            if name in refused:
                continue
            try:
                client.list_objects_v2(Bucket="shared")
            except ClientError as err:
                response = err.response
                assert response["Error"]["Code"] == "AccessDenied", response
                assert "revoked" in response["Error"]["Message"], response
                refused[name] = time.monotonic() - revoked
        time.sleep(POLL)
    print("refused after:", refused)
    assert set(refused) == {"a", "b"}, f"still accepted after {deadline - revoked:.0f} s"
    assert max(refused.values()) <= REVOCATION_BOUND, refused
    # Writes are refused too, and the parent key's credentials still work on B.
    with pytest.raises(ClientError) as e:
        on_b.put_object(Bucket="shared", Key="late", Body=b"x")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    keys = [o["Key"] for o in other_b.list_objects_v2(Bucket="shared")["Contents"]]
    assert keys == ["big.bin", "docs/medium.bin"]
