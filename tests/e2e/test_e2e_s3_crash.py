"""SIGKILL of ``jcs serve`` in the middle of S3 uploads: a multipart upload
whose parts are in but which was never completed, and a large streaming PUT
cut while its body is being written. After a restart nothing partial is
visible through S3 (HeadObject 404, the listing shows only what was there
before), the unfinished multipart upload can be aborted, and GC then fsck
leave no leaked block and no temporary file behind."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from e2e_support import JcsServer, api_client, block_files, gc_then_fsck, temp_files
from s3_clients import (
    S3Creds,
    boto3_client,
    make_credentials,
    requests_between,
    s3_requests,
    sign_v4,
)

from jointcloud.api.common.observability import CLIENT_CLOSED

PROJECT = "s3crash"
BUCKET = "crashes"
MiB = 1 << 20


def wait_for(what: str, condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def crash_server(tmp_path: Path) -> Iterator[tuple[JcsServer, S3Creds]]:
    # Each start takes new ports: a fixed public URL (as behind a load
    # balancer) keeps the satellite address in the grant valid across restarts.
    server = JcsServer(
        data_dir=tmp_path / "data",
        log_dir=tmp_path,
        env={"JCS_PUBLIC_URL": "http://jcs-crash.test:7777"},
    )
    try:
        server.start()
        with api_client(server) as api:
            r = api.post("/v1/bucket/create", json={"name": PROJECT})
            assert r.status_code == 200, r.text
        creds = make_credentials(server, PROJECT, "crash passphrase", cwd=tmp_path)
        s3 = boto3_client(creds)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="kept.bin", Body=b"committed before the crash")
        yield server, creds
    finally:
        server.kill()


def restart(server: JcsServer, creds: S3Creds) -> tuple[S3Creds, Any]:
    """Start again on the same data (new ports); credentials stay valid."""
    server.start()
    moved = S3Creds(creds.access_key_id, creds.secret_key, f"http://127.0.0.1:{server.s3_port}")
    return moved, boto3_client(moved)


def assert_nothing_partial(s3: Any, key: str) -> None:
    with pytest.raises(ClientError) as head:
        s3.head_object(Bucket=BUCKET, Key=key)
    assert head.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    listed = s3.list_objects_v2(Bucket=BUCKET)
    assert [o["Key"] for o in listed.get("Contents", [])] == ["kept.bin"]
    assert s3.get_object(Bucket=BUCKET, Key="kept.bin")["Body"].read() == (
        b"committed before the crash"
    )


def assert_gc_and_fsck_clean(server: JcsServer, before: set[Path]) -> None:
    gc_then_fsck(server)
    # exactly the blocks of the objects committed before the crash are left
    assert block_files(server) == before


def test_sigkill_during_multipart_upload(
    crash_server: tuple[JcsServer, S3Creds],
) -> None:
    server, creds = crash_server
    s3 = boto3_client(creds)
    before = block_files(server)
    uploads = {}
    for key in ("mp/aborted.bin", "mp/expired.bin"):
        upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        for n, size in ((1, 5 * MiB), (2, MiB)):
            s3.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=n, Body=b"p" * size
            )
        uploads[key] = upload_id
    assert len(block_files(server)) > len(before)  # the parts are stored
    server.kill()  # parts in, complete never called

    creds, s3 = restart(server, creds)
    for key in uploads:
        assert_nothing_partial(s3, key)
    # the uploads may still be listed (as AWS does) and aborting one works
    listed = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert {(u["Key"], u["UploadId"]) for u in listed} <= set(uploads.items())
    s3.abort_multipart_upload(
        Bucket=BUCKET, Key="mp/aborted.bin", UploadId=uploads["mp/aborted.bin"]
    )
    with pytest.raises(ClientError) as gone:
        s3.list_parts(Bucket=BUCKET, Key="mp/aborted.bin", UploadId=uploads["mp/aborted.bin"])
    assert gone.value.response["Error"]["Code"] == "NoSuchUpload"
    remaining = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u["Key"] for u in remaining] in ([], ["mp/expired.bin"])
    server.stop()

    # the other one is left to expire: GC removes it and its parts
    assert_gc_and_fsck_clean(server, before)
    creds, s3 = restart(server, creds)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert_nothing_partial(s3, "mp/expired.bin")


def test_sigkill_during_streaming_put(crash_server: tuple[JcsServer, S3Creds]) -> None:
    server, creds = crash_server
    before = block_files(server)
    total = 256 * MiB
    url = f"{creds.endpoint}/{BUCKET}/big/stream.bin"
    headers = sign_v4(creds, "PUT", url, {"Content-Length": str(total)})
    sent = 0
    killed = threading.Event()
    outcome: list[object] = []

    def body() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"s" * (256 * 1024)
        while sent < total:
            if killed.is_set():
                return
            yield chunk
            sent += len(chunk)

    def put() -> None:
        try:
            outcome.append(httpx.put(url, content=body(), headers=headers, timeout=60))
        except httpx.TransportError as exc:
            outcome.append(exc)

    sender = threading.Thread(target=put, daemon=True)
    sender.start()
    # the server is writing the body into a block: kill it there
    wait_for(
        "the server to write the body",
        lambda: any(p.stat().st_size >= 4 * MiB for p in temp_files(server)),
    )
    server.kill()
    killed.set()
    sender.join(60)
    assert sent < total
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError), outcome
    assert temp_files(server), "the kill should leave the cut block behind"

    creds, s3 = restart(server, creds)
    assert_nothing_partial(s3, "big/stream.bin")
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    server.stop()
    assert_gc_and_fsck_clean(server, before)


def test_a_client_hanging_up_mid_upload_is_no_server_error(
    crash_server: tuple[JcsServer, S3Creds],
) -> None:
    """A cancelled upload (s3transfer cancels this way) is counted as 499,
    client closed request, not 500: alerts on server errors must not fire
    for it. Nothing of it is visible or left behind."""
    server, creds = crash_server
    before_blocks = block_files(server)
    before = s3_requests(server)
    s3 = boto3_client(creds)
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="cut/part.bin")["UploadId"]
    targets = {
        "PutObject": f"{creds.endpoint}/{BUCKET}/cut/object.bin",
        "UploadPart": f"{creds.endpoint}/{BUCKET}/cut/part.bin?partNumber=1&uploadId={upload_id}",
    }
    for url in targets.values():
        headers = sign_v4(creds, "PUT", url, {"Content-Length": str(MiB)})
        host, port = url.split("/")[2].split(":")
        target = url.split("/", 3)[3]
        fields = {"Host": f"{host}:{port}", **headers}
        head = f"PUT /{target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(head.encode() + b"\r\n" + b"c" * (100 * 1024))
    wait_for(
        "both cut requests to be counted",
        lambda: all(
            requests_between(before, s3_requests(server)).get((op, CLIENT_CLOSED), 0) == 1
            for op in targets
        ),
    )
    counted = requests_between(before, s3_requests(server))
    assert not [k for k in counted if k[1] >= 500], counted
    assert_nothing_partial(s3, "cut/object.bin")
    assert s3.list_parts(Bucket=BUCKET, Key="cut/part.bin", UploadId=upload_id).get("Parts") in (
        None,
        [],
    )
    s3.abort_multipart_upload(Bucket=BUCKET, Key="cut/part.bin", UploadId=upload_id)
    server.stop()
    assert_gc_and_fsck_clean(server, before_blocks)
