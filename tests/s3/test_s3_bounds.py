"""Boundary values found by a review of sizes meeting limits: a multipart
object's empty last part read by ``partNumber``, and an
``x-amz-copy-source-range`` that ends at the source's size."""

from __future__ import annotations

import asyncio
import os

from s3_support import S3, code_of, multipart_object

PART = 5 * 1024 * 1024


async def test_an_empty_last_part_reads_as_no_bytes(s3: S3) -> None:
    """The last part of an upload may be empty (AWS takes it). Read by
    ``partNumber`` it is no bytes: GetObject answered all of the object (part
    1's bytes, with part 1's ``Content-Range``) and HeadObject its whole
    length."""
    c = s3.client()
    first = os.urandom(PART)

    def work() -> None:
        c.create_bucket(Bucket="emptylast")
        multipart_object(c, "emptylast", "k", first, b"")
        got = c.get_object(Bucket="emptylast", Key="k", PartNumber=2)
        assert got["Body"].read() == b""
        assert got["ContentLength"] == 0
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert "ContentRange" not in got
        assert got["PartsCount"] == 2
        head = c.head_object(Bucket="emptylast", Key="k", PartNumber=2)
        assert head["ContentLength"] == 0
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert "ContentRange" not in head
        assert head["PartsCount"] == 2
        # The part before it is still read as itself.
        one = c.get_object(Bucket="emptylast", Key="k", PartNumber=1)
        assert one["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert one["ContentRange"] == f"bytes 0-{PART - 1}/{PART}"
        assert one["Body"].read() == first

    await asyncio.to_thread(work)


async def test_a_copy_source_range_past_the_end_is_an_invalid_argument(s3: S3) -> None:
    """AWS answers a range ending at or past the source's last byte with
    ``400 InvalidArgument`` ("Range specified is not valid for source object
    of size: N"); it was ``416 InvalidRange``. The last byte itself is in."""
    c = s3.client()
    source = os.urandom(10_000)

    def work() -> None:
        c.create_bucket(Bucket="copyrange")
        c.put_object(Bucket="copyrange", Key="src", Body=source)
        c.put_object(Bucket="copyrange", Key="empty", Body=b"")
        uid = c.create_multipart_upload(Bucket="copyrange", Key="dst")["UploadId"]

        def copy(key: str, rng: str) -> object:
            return c.upload_part_copy(
                Bucket="copyrange",
                Key="dst",
                UploadId=uid,
                PartNumber=1,
                CopySource={"Bucket": "copyrange", "Key": key},
                CopySourceRange=rng,
            )

        for key, rng, size in (
            ("src", "bytes=0-10000", 10_000),
            ("src", "bytes=10000-10000", 10_000),
            ("empty", "bytes=0-0", 0),
        ):
            code, status, message = code_of(lambda k=key, r=rng: copy(k, r))
            assert (code, status) == ("InvalidArgument", 400), (key, rng)
            assert message == f"Range specified is not valid for source object of size: {size}"
        copy("src", "bytes=9999-9999")
        part = c.list_parts(Bucket="copyrange", Key="dst", UploadId=uid)["Parts"][0]
        assert part["Size"] == 1

    await asyncio.to_thread(work)
