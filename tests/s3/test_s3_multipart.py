"""Multipart uploads through the S3 endpoint with boto3's current defaults
(CRC32 checksums sent in streaming trailers): create, upload, part copy,
complete, abort, list parts and list uploads, with AWS's error codes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import zlib
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from s3_support import S3, code_of, multipart_object

from jointcloud.core.authz import Principal
from jointcloud.core.commands import CopyObject, ObjectAddress, PackageRef
from jointcloud.meta import catalog

MIB = 1024 * 1024
PART = 5 * MIB  # S3's minimum size of every part but the last


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def multipart_etag(parts: list[bytes]) -> str:
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'


def crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def replace_body(client: Any, operation: str, body: bytes) -> None:
    """Send ``body`` instead of what boto3 serialized (once)."""

    def hook(request: Any, **_: Any) -> None:
        request.data = body
        if "Content-MD5" in request.headers:
            del request.headers["Content-MD5"]
        client.meta.events.unregister(f"before-sign.s3.{operation}", hook)

    client.meta.events.register(f"before-sign.s3.{operation}", hook)


async def test_multipart_round_trip(s3: S3) -> None:
    c = s3.client()
    one, two = os.urandom(PART), os.urandom(1234)

    def work() -> None:
        c.create_bucket(Bucket="mpu")
        made = c.create_multipart_upload(
            Bucket="mpu",
            Key="big/file.bin",
            ContentType="application/x-test",
            Metadata={"colour": "green"},
            Tagging="team=core&tier=1",
            ChecksumAlgorithm="CRC32",
        )
        assert made["Bucket"] == "mpu" and made["Key"] == "big/file.bin"
        assert made["ChecksumAlgorithm"] == "CRC32"
        uid = made["UploadId"]
        # Nothing is visible until completion.
        assert c.list_objects_v2(Bucket="mpu").get("Contents") is None
        p1 = c.upload_part(Bucket="mpu", Key="big/file.bin", UploadId=uid, PartNumber=1, Body=one)
        assert p1["ETag"] == f'"{md5(one)}"' and p1["ChecksumCRC32"] == crc32(one)
        p2 = c.upload_part(Bucket="mpu", Key="big/file.bin", UploadId=uid, PartNumber=2, Body=two)
        assert p2["ChecksumCRC32"] == crc32(two)
        listed = c.list_parts(Bucket="mpu", Key="big/file.bin", UploadId=uid)
        assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]] == [
            (1, PART, f'"{md5(one)}"'),
            (2, 1234, f'"{md5(two)}"'),
        ]
        assert listed["StorageClass"] == "STANDARD" and listed["IsTruncated"] is False
        assert listed["Initiator"]["ID"] == listed["Owner"]["ID"]
        assert listed["ChecksumAlgorithm"] == "CRC32"
        uploads = c.list_multipart_uploads(Bucket="mpu")["Uploads"]
        assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big/file.bin", uid)]
        done = c.complete_multipart_upload(
            Bucket="mpu",
            Key="big/file.bin",
            UploadId=uid,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": p1["ETag"], "ChecksumCRC32": p1["ChecksumCRC32"]},
                    # ETags without quotes are accepted too.
                    {
                        "PartNumber": 2,
                        "ETag": p2["ETag"].strip('"'),
                        "ChecksumCRC32": p2["ChecksumCRC32"],
                    },
                ]
            },
        )
        assert done["ETag"] == multipart_etag([one, two])
        assert done["Bucket"] == "mpu" and done["Key"] == "big/file.bin"
        assert done["Location"].endswith("/mpu/big/file.bin")
        assert done["ChecksumCRC32"].endswith("-2") and done["ChecksumType"] == "COMPOSITE"
        got = c.get_object(Bucket="mpu", Key="big/file.bin")
        assert got["Body"].read() == one + two
        assert got["ETag"] == done["ETag"] and got["ContentType"] == "application/x-test"
        assert got["Metadata"] == {"colour": "green"} and got["TagCount"] == 2
        assert c.list_multipart_uploads(Bucket="mpu").get("Uploads") is None
        # The upload is gone: its id answers NoSuchUpload everywhere.
        assert code_of(lambda: c.list_parts(Bucket="mpu", Key="big/file.bin", UploadId=uid))[
            :2
        ] == ("NoSuchUpload", 404)

    await asyncio.to_thread(work)


async def test_complete_refusals_leave_nothing_visible(s3: S3) -> None:
    c = s3.client()
    small = [os.urandom(100), os.urandom(200)]

    def work() -> None:
        c.create_bucket(Bucket="mpu")
        uid = c.create_multipart_upload(Bucket="mpu", Key="k")["UploadId"]
        etags = [
            c.upload_part(Bucket="mpu", Key="k", UploadId=uid, PartNumber=n + 1, Body=b)["ETag"]
            for n, b in enumerate(small)
        ]

        def complete(parts: list[dict[str, Any]], **extra: Any) -> Any:
            return c.complete_multipart_upload(
                Bucket="mpu", Key="k", UploadId=uid, MultipartUpload={"Parts": parts}, **extra
            )

        both = [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}]
        # Every part but the last must be 5 MiB.
        assert code_of(lambda: complete(both))[:2] == ("EntityTooSmall", 400)
        assert code_of(lambda: complete(both[::-1]))[:2] == ("InvalidPartOrder", 400)
        wrong = [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]
        assert code_of(lambda: complete(wrong))[:2] == ("InvalidPart", 400)
        missing = [{"PartNumber": 3, "ETag": etags[0]}]
        assert code_of(lambda: complete(missing))[:2] == ("InvalidPart", 400)
        bad_sum = [{"PartNumber": 1, "ETag": etags[0], "ChecksumCRC32": crc32(b"other")}]
        assert code_of(lambda: complete(bad_sum))[:2] == ("InvalidPart", 400)
        replace_body(c, "CompleteMultipartUpload", b"<CompleteMultipartUpload/>")
        assert code_of(lambda: complete(both))[:2] == ("MalformedXML", 400)
        replace_body(c, "CompleteMultipartUpload", b"<CompleteMultipartUpload><Part>")
        assert code_of(lambda: complete(both))[:2] == ("MalformedXML", 400)
        # If-Match on a missing object is 404, as AWS.
        assert code_of(lambda: complete(both[:1], IfMatch='"abc"'))[:2] == ("NoSuchKey", 404)
        # Nothing became visible; the upload still lists.
        assert c.list_objects_v2(Bucket="mpu").get("Contents") is None
        assert code_of(lambda: c.head_object(Bucket="mpu", Key="k"))[1] == 404
        assert len(c.list_parts(Bucket="mpu", Key="k", UploadId=uid)["Parts"]) == 2
        # Completing with the last part only succeeds (unlisted parts go).
        done = complete(both[1:], IfNoneMatch="*")
        assert done["ETag"] == multipart_etag([small[1]])
        assert c.get_object(Bucket="mpu", Key="k")["Body"].read() == small[1]
        # If-None-Match: * with an object there, If-Match with another ETag: 412.
        uid = c.create_multipart_upload(Bucket="mpu", Key="k")["UploadId"]
        etag = c.upload_part(Bucket="mpu", Key="k", UploadId=uid, PartNumber=1, Body=b"new")["ETag"]
        part = [{"PartNumber": 1, "ETag": etag}]
        assert code_of(lambda: complete(part, IfNoneMatch="*"))[:2] == ("PreconditionFailed", 412)
        assert code_of(lambda: complete(part, IfMatch='"0000"'))[:2] == ("PreconditionFailed", 412)
        assert c.get_object(Bucket="mpu", Key="k")["Body"].read() == small[1]
        assert complete(part, IfMatch=done["ETag"])["ETag"] == multipart_etag([b"new"])

    await asyncio.to_thread(work)


async def test_upload_part_refusals_and_abort(s3: S3) -> None:
    c = s3.client()  # boto3 sends its part bodies with Expect: 100-continue

    def work() -> None:
        c.create_bucket(Bucket="mpu")
        uid = c.create_multipart_upload(Bucket="mpu", Key="k")["UploadId"]

        def part(number: int, body: bytes = b"data", **extra: Any) -> Any:
            return c.upload_part(
                Bucket="mpu", Key="k", UploadId=uid, PartNumber=number, Body=body, **extra
            )

        for number in (0, 10001):
            code, status, message = code_of(lambda n=number: part(n))  # type: ignore[misc]
            assert (code, status) == ("InvalidArgument", 400) and "10000" in message
        assert part(10000)["ETag"] == f'"{md5(b"data")}"'
        wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        assert code_of(lambda: part(1, ContentMD5=wrong_md5))[:2] == ("BadDigest", 400)
        assert code_of(lambda: part(1, ChecksumCRC32=crc32(b"other")))[:2] == ("BadDigest", 400)
        assert code_of(lambda: part(1, ContentMD5="bad"))[:2] == ("InvalidDigest", 400)
        good_md5 = base64.b64encode(hashlib.md5(b"data").digest()).decode()
        assert part(1, ContentMD5=good_md5, ChecksumAlgorithm="SHA256")["ChecksumSHA256"]
        # A failed part stored nothing.
        parts = c.list_parts(Bucket="mpu", Key="k", UploadId=uid)["Parts"]
        assert [p["PartNumber"] for p in parts] == [1, 10000]
        # An upload of another key, an unknown id: NoSuchUpload.
        for call in (
            lambda: c.upload_part(Bucket="mpu", Key="other", UploadId=uid, PartNumber=1, Body=b""),
            lambda: c.upload_part(Bucket="mpu", Key="k", UploadId="nope", PartNumber=1, Body=b""),
            lambda: c.list_parts(Bucket="mpu", Key="k", UploadId="nope"),
            lambda: c.abort_multipart_upload(Bucket="mpu", Key="k", UploadId="nope"),
            lambda: c.complete_multipart_upload(
                Bucket="mpu",
                Key="k",
                UploadId="nope",
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": "x"}]},
            ),
        ):
            assert code_of(call)[:2] == ("NoSuchUpload", 404)
        assert code_of(lambda: c.create_multipart_upload(Bucket="nobucket", Key="k"))[:2] == (
            "NoSuchBucket",
            404,
        )
        aborted = c.abort_multipart_upload(Bucket="mpu", Key="k", UploadId=uid)
        assert aborted["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert code_of(lambda: part(2))[:2] == ("NoSuchUpload", 404)
        assert code_of(lambda: c.abort_multipart_upload(Bucket="mpu", Key="k", UploadId=uid))[
            :2
        ] == ("NoSuchUpload", 404)
        assert c.list_multipart_uploads(Bucket="mpu").get("Uploads") is None
        assert c.list_objects_v2(Bucket="mpu").get("Contents") is None

    await asyncio.to_thread(work)


async def test_upload_part_copy_ranges(s3: S3) -> None:
    c = s3.client()
    source = os.urandom(PART + 3000)

    def work() -> None:
        c.create_bucket(Bucket="src")
        c.create_bucket(Bucket="dst")
        put = c.put_object(Bucket="src", Key="a b/ü+?.bin", Body=source)
        uid = c.create_multipart_upload(Bucket="dst", Key="joined")["UploadId"]

        def copy(number: int, **extra: Any) -> Any:
            return c.upload_part_copy(
                Bucket="dst",
                Key="joined",
                UploadId=uid,
                PartNumber=number,
                CopySource=extra.pop("CopySource", {"Bucket": "src", "Key": "a b/ü+?.bin"}),
                **extra,
            )

        first = copy(1, CopySourceRange=f"bytes=0-{PART - 1}")
        assert first["CopyPartResult"]["ETag"] == f'"{md5(source[:PART])}"'
        assert first["CopyPartResult"]["LastModified"]
        # The whole object, from a source named with versionId=null.
        second = copy(2, CopySource="src/a b/ü+?.bin?versionId=null")
        assert second["CopyPartResult"]["ETag"] == put["ETag"]
        third = copy(3, CopySourceRange=f"bytes={PART}-{PART + 999}", CopySourceIfMatch=put["ETag"])
        # Refusals: bad range syntax, a range past the end, failed conditions,
        # a missing source, a version id that is not null.
        for rng in ("bytes=0-", "bytes=5-1", "items=0-1", "bytes=-10"):
            assert code_of(lambda r=rng: copy(4, CopySourceRange=r))[:2] == (  # type: ignore[misc]
                "InvalidArgument",
                400,
            )
        code, status, message = code_of(lambda: copy(4, CopySourceRange=f"bytes=0-{len(source)}"))
        assert (code, status) == ("InvalidArgument", 400) and str(len(source)) in message
        for cond in (
            {"CopySourceIfMatch": '"0123"'},
            {"CopySourceIfNoneMatch": put["ETag"]},
            {"CopySourceIfUnmodifiedSince": "2000-01-01T00:00:00Z"},
            {"CopySourceIfModifiedSince": "2999-01-01T00:00:00Z"},
        ):
            assert code_of(lambda k=cond: copy(4, **k))[:2] == (  # type: ignore[misc]
                "PreconditionFailed",
                412,
            )
        missing = {"Bucket": "src", "Key": "missing"}
        assert code_of(lambda: copy(4, CopySource=missing))[:2] == ("NoSuchKey", 404)
        assert code_of(lambda: copy(4, CopySource="src/x?versionId=abc"))[:2] == (
            "InvalidArgument",
            400,
        )
        assert code_of(lambda: copy(4, CopySource="srconly"))[:2] == ("InvalidArgument", 400)
        parts = c.list_parts(Bucket="dst", Key="joined", UploadId=uid)["Parts"]
        assert [p["Size"] for p in parts] == [PART, len(source), 1000]
        done = c.complete_multipart_upload(
            Bucket="dst",
            Key="joined",
            UploadId=uid,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]}
                    for n, r in ((1, first), (2, second), (3, third))
                ]
            },
        )
        body = c.get_object(Bucket="dst", Key="joined")["Body"].read()
        pieces = [source[:PART], source, source[PART : PART + 1000]]
        assert body == b"".join(pieces) and done["ETag"] == multipart_etag(pieces)

    await asyncio.to_thread(work)


async def test_list_parts_and_uploads_paging(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="mpu")
        uid = c.create_multipart_upload(Bucket="mpu", Key="k")["UploadId"]
        for n in (1, 2, 5):
            c.upload_part(Bucket="mpu", Key="k", UploadId=uid, PartNumber=n, Body=b"x" * n)
        page = c.list_parts(Bucket="mpu", Key="k", UploadId=uid, MaxParts=2)
        assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
        assert page["IsTruncated"] is True and page["NextPartNumberMarker"] == 2
        assert page["MaxParts"] == 2
        rest = c.list_parts(Bucket="mpu", Key="k", UploadId=uid, PartNumberMarker=2)
        assert [p["PartNumber"] for p in rest["Parts"]] == [5]
        assert rest["IsTruncated"] is False and rest["PartNumberMarker"] == 2
        paginator = c.get_paginator("list_parts")
        numbers = [
            p["PartNumber"]
            for pg in paginator.paginate(
                Bucket="mpu", Key="k", UploadId=uid, PaginationConfig={"PageSize": 1}
            )
            for p in pg.get("Parts", [])
        ]
        assert numbers == [1, 2, 5]
        code = code_of(lambda: c.list_parts(Bucket="mpu", Key="k", UploadId=uid, MaxParts=-1))
        assert code[:2] == ("InvalidArgument", 400)

        ids = {"k": [uid]}
        for key in ("a/1", "a/2", "b", "c/d/e", "k", "sp ace"):
            ids.setdefault(key, []).append(
                c.create_multipart_upload(Bucket="mpu", Key=key)["UploadId"]
            )
        everything = c.list_multipart_uploads(Bucket="mpu")
        keys = [u["Key"] for u in everything["Uploads"]]
        assert keys == ["a/1", "a/2", "b", "c/d/e", "k", "k", "sp ace"]
        assert [u["UploadId"] for u in everything["Uploads"] if u["Key"] == "k"] == sorted(ids["k"])
        assert everything["Uploads"][0]["StorageClass"] == "STANDARD"
        assert everything["Uploads"][0]["Initiated"]
        rolled = c.list_multipart_uploads(Bucket="mpu", Delimiter="/")
        assert [u["Key"] for u in rolled["Uploads"]] == ["b", "k", "k", "sp ace"]
        assert rolled["CommonPrefixes"] == [{"Prefix": "a/"}, {"Prefix": "c/"}]
        under = c.list_multipart_uploads(Bucket="mpu", Prefix="c/", Delimiter="/")
        assert under["CommonPrefixes"] == [{"Prefix": "c/d/"}] and "Uploads" not in under
        # Pages of one, by key and upload id markers, prefixes counted too.
        seen: list[str] = []
        marker: dict[str, str] = {}
        while True:
            page_ = c.list_multipart_uploads(Bucket="mpu", Delimiter="/", MaxUploads=1, **marker)
            seen += [u["Key"] for u in page_.get("Uploads", [])]
            seen += [p["Prefix"] for p in page_.get("CommonPrefixes", [])]
            if not page_["IsTruncated"]:
                break
            marker = {"KeyMarker": page_["NextKeyMarker"]}
            if "NextUploadIdMarker" in page_:
                marker["UploadIdMarker"] = page_["NextUploadIdMarker"]
        assert seen == ["a/", "b", "c/", "k", "k", "sp ace"]
        encoded = c.list_multipart_uploads(Bucket="mpu", Prefix="sp", EncodingType="url")
        assert encoded["EncodingType"] == "url"
        assert [u["Key"] for u in encoded["Uploads"]] == ["sp%20ace"]
        bad = code_of(lambda: c.list_multipart_uploads(Bucket="mpu", EncodingType="xml"))
        assert bad[:2] == ("InvalidArgument", 400)

    await asyncio.to_thread(work)


async def test_concurrent_uploads_to_one_key(s3: S3) -> None:
    c = s3.client()
    bodies = [os.urandom(2000 + n) for n in range(4)]

    def one(body: bytes) -> str:
        uid = c.create_multipart_upload(Bucket="mpu", Key="same")["UploadId"]
        etag = c.upload_part(Bucket="mpu", Key="same", UploadId=uid, PartNumber=1, Body=body)[
            "ETag"
        ]
        done = c.complete_multipart_upload(
            Bucket="mpu",
            Key="same",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
        return str(done["ETag"])

    await asyncio.to_thread(c.create_bucket, Bucket="mpu")
    etags = await asyncio.gather(*(asyncio.to_thread(one, b) for b in bodies))
    assert sorted(etags) == sorted(multipart_etag([b]) for b in bodies)
    got = await asyncio.to_thread(c.get_object, Bucket="mpu", Key="same")
    data = await asyncio.to_thread(got["Body"].read)
    assert data in bodies and got["ETag"] == multipart_etag([data])
    left = await asyncio.to_thread(c.list_multipart_uploads, Bucket="mpu")
    assert left.get("Uploads") is None


async def test_transfer_manager_upload_and_copy(s3: S3) -> None:
    """boto3's managed transfers as they come: upload_fileobj in parts (CRC32
    asked for at creation, sent per part in trailers), then a managed copy,
    which copies the parts with UploadPartCopy ranges."""
    c = s3.client()
    data = os.urandom(2 * PART + 7)
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=3)

    def work() -> None:
        c.create_bucket(Bucket="xfer")
        c.upload_fileobj(io.BytesIO(data), "xfer", "up.bin", Config=config)
        head = c.head_object(Bucket="xfer", Key="up.bin", ChecksumMode="ENABLED")
        assert head["ETag"] == multipart_etag(
            [data[:PART], data[PART : 2 * PART], data[2 * PART :]]
        )
        assert head["ContentLength"] == len(data) and head["ChecksumCRC32"].endswith("-3")
        c.copy({"Bucket": "xfer", "Key": "up.bin"}, "xfer", "copied.bin", Config=config)
        out = io.BytesIO()
        c.download_fileobj("xfer", "copied.bin", out)
        assert out.getvalue() == data
        copied = c.head_object(Bucket="xfer", Key="copied.bin")
        assert copied["ETag"] == head["ETag"]  # the same part boundaries

    await asyncio.to_thread(work)


async def test_head_of_a_part_describes_one_version_of_an_object_being_replaced(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HeadObject with ``partNumber`` read the object and then its part in
    two snapshots: an overwrite in between answered one object's ETag with
    another's Content-Range and parts count (a review reproduced it against
    a real server). The object is replaced right after its row is first
    read, whichever read that is: every header must describe that version."""
    c = s3.client()
    first, second = os.urandom(5 * 1024 * 1024), b"tail"

    def setup() -> None:
        c.create_bucket(Bucket="headpart")
        multipart_object(c, "headpart", "k", first, second)
        c.put_object(Bucket="headpart", Key="small", Body=b"small")

    await asyncio.to_thread(setup)
    objects, replaced = s3.ctx.objects, []
    owner = Principal.user((await s3.ctx.accounts.user_named("admin")).user_id)

    def then_replaced(read: Any) -> Any:
        """``read`` of the object's row, after which (once) the object is
        replaced by the 5-byte one, as a concurrent CopyObject would."""

        async def reading(conn: Any, package_id: int, path: str, *args: Any, **kw: Any) -> Any:
            found = await read(conn, package_id, path, *args, **kw)
            if path == "k" and not replaced:
                replaced.append(path)
                dest = ObjectAddress(PackageRef.by_id(package_id), "k")
                source = ObjectAddress(PackageRef.by_id(package_id), "small")
                await objects.copy(owner, CopyObject(source=source, dest=dest))
            return found

        return reading

    for name in ("get_object_by_path", "open_by_path"):
        monkeypatch.setattr(catalog, name, then_replaced(getattr(catalog, name)))
    got = await asyncio.to_thread(c.head_object, Bucket="headpart", Key="k", PartNumber=1)
    assert replaced  # the object was replaced right after it was read
    # Every header is of the version read: the multipart one.
    assert got["ETag"].endswith('-2"') and got["PartsCount"] == 2
    assert got["ContentRange"] == f"bytes 0-{len(first) - 1}/{len(first + second)}"
    assert got["ContentLength"] == len(first)
    # The replacement is there for the next request.
    again = await asyncio.to_thread(c.head_object, Bucket="headpart", Key="k", PartNumber=1)
    assert "PartsCount" not in again and again["ContentLength"] == 5
