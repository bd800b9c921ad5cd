"""Boundary values found by a review of sizes meeting limits: a multipart
object's empty last part read by ``partNumber``."""

from __future__ import annotations

import asyncio
import os

from s3_support import S3, multipart_object

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
