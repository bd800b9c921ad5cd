"""The S3 endpoint with boto3's current defaults: buckets are packages of the
credentials' project, objects round-trip, listings and errors are AWS's."""

from __future__ import annotations

import asyncio
import os

import pytest
from botocore.exceptions import ClientError
from s3_support import S3


async def test_bucket_and_object_round_trip(s3: S3) -> None:
    c = s3.client()
    data = os.urandom(3 * 1024 * 1024 + 5)

    def work() -> None:
        c.create_bucket(Bucket="photos")
        assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["photos"]
        c.put_object(
            Bucket="photos",
            Key="2024/a.jpg",
            Body=data,
            ContentType="image/jpeg",
            Metadata={"colour": "blue"},
        )
        got = c.get_object(Bucket="photos", Key="2024/a.jpg")
        assert got["Body"].read() == data
        assert got["ContentType"] == "image/jpeg" and got["Metadata"] == {"colour": "blue"}
        part = c.get_object(Bucket="photos", Key="2024/a.jpg", Range="bytes=10-19")
        assert part["Body"].read() == data[10:20] and part["ContentRange"].endswith(f"/{len(data)}")
        head = c.head_object(Bucket="photos", Key="2024/a.jpg")
        assert head["ContentLength"] == len(data)
        listed = c.list_objects_v2(Bucket="photos", Prefix="2024/")
        assert [o["Key"] for o in listed["Contents"]] == ["2024/a.jpg"]
        roll = c.list_objects_v2(Bucket="photos", Delimiter="/")
        assert roll["CommonPrefixes"] == [{"Prefix": "2024/"}]
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket="photos", Key="missing")
        assert e.value.response["Error"]["Code"] == "NoSuchKey"
        with pytest.raises(ClientError) as e:
            c.delete_bucket(Bucket="photos")
        assert e.value.response["Error"]["Code"] == "BucketNotEmpty"
        c.delete_object(Bucket="photos", Key="2024/a.jpg")
        c.delete_bucket(Bucket="photos")
        assert c.list_buckets()["Buckets"] == []

    await asyncio.to_thread(work)


async def test_bad_secret_is_refused(s3: S3) -> None:
    s3.secret_key = "x" * 53
    c = s3.client()
    with pytest.raises(ClientError) as e:
        await asyncio.to_thread(c.list_buckets)
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


async def test_a_refused_upload_does_not_poison_the_connection(s3: S3) -> None:
    """boto3 sends bodies with "Expect: 100-continue": a refusal before the
    body is read closes the connection, so the client's next request on it
    is not read as the unsent body."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="kept")
        for _ in range(3):
            with pytest.raises(ClientError) as e:
                c.put_object(Bucket="missing", Key="k", Body=b"x" * 100_000)
            assert e.value.response["Error"]["Code"] == "NoSuchBucket"
            assert c.list_objects_v2(Bucket="kept")["KeyCount"] == 0

    await asyncio.to_thread(work)


async def test_part_number_reads_one_part_of_a_multipart_object(s3: S3) -> None:
    c = s3.client()
    one, two = os.urandom(5 * 1024 * 1024), os.urandom(1000)

    def work() -> None:
        c.create_bucket(Bucket="parts")
        up = c.create_multipart_upload(Bucket="parts", Key="big")["UploadId"]
        etags = [
            c.upload_part(Bucket="parts", Key="big", UploadId=up, PartNumber=n, Body=b)["ETag"]
            for n, b in ((1, one), (2, two))
        ]
        c.complete_multipart_upload(
            Bucket="parts",
            Key="big",
            UploadId=up,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]
            },
        )
        got = c.get_object(Bucket="parts", Key="big", PartNumber=2)
        assert got["Body"].read() == two and got["PartsCount"] == 2
        assert (
            got["ContentRange"]
            == f"bytes {len(one)}-{len(one) + len(two) - 1}/{len(one) + len(two)}"
        )
        head = c.head_object(Bucket="parts", Key="big", PartNumber=1)
        assert head["ContentLength"] == len(one) and head["PartsCount"] == 2
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket="parts", Key="big", PartNumber=3)
        assert e.value.response["Error"]["Code"] == "InvalidPartNumber"
        c.put_object(Bucket="parts", Key="small", Body=b"abc")
        assert c.get_object(Bucket="parts", Key="small", PartNumber=1)["Body"].read() == b"abc"

    await asyncio.to_thread(work)
