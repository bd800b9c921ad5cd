"""Keys holding tab, line feed and carriage return, as AWS takes them (the
AWS CLI's own suite puts ``foo\\r.txt``): stored, listed back unchanged in
plain XML (CR and LF written as character references, as AWS writes them)
and URL-encoded, read, copied and deleted one by one and in a batch. The
other control characters are still refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3_support import S3

KEYS = ["foo\r.txt", "line\nbreak", "crlf\r\nend", "tab\there", "dir\n/inner"]


async def test_keys_with_line_breaks_round_trip(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="breaks")
        for i, key in enumerate(KEYS):
            c.put_object(Bucket="breaks", Key=key, Body=f"body {i}".encode())
        for i, key in enumerate(KEYS):
            assert c.get_object(Bucket="breaks", Key=key)["Body"].read() == f"body {i}".encode()
        plain = c.list_objects_v2(Bucket="breaks")
        assert [o["Key"] for o in plain["Contents"]] == sorted(KEYS)
        v1 = c.list_objects(Bucket="breaks")
        assert [o["Key"] for o in v1["Contents"]] == sorted(KEYS)
        # A delimiter that is a line break rolls keys up like any other.
        rolled = c.list_objects_v2(Bucket="breaks", Delimiter="\n")
        assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["crlf\r\n", "dir\n", "line\n"]
        assert c.list_objects_v2(Bucket="breaks", Prefix="crlf\r")["KeyCount"] == 1
        c.copy_object(
            Bucket="breaks", Key="copy\r\n", CopySource={"Bucket": "breaks", "Key": KEYS[0]}
        )
        assert c.get_object(Bucket="breaks", Key="copy\r\n")["Body"].read() == b"body 0"
        c.delete_object(Bucket="breaks", Key="copy\r\n")
        gone = c.delete_objects(Bucket="breaks", Delete={"Objects": [{"Key": k} for k in KEYS[:3]]})
        assert sorted(d["Key"] for d in gone["Deleted"]) == sorted(KEYS[:3])
        left = c.list_objects_v2(Bucket="breaks")
        assert [o["Key"] for o in left["Contents"]] == sorted(KEYS[3:])

    await asyncio.to_thread(work)


async def test_a_url_encoded_listing_encodes_them(s3: S3) -> None:
    c = s3.client()

    def work() -> Any:
        c.create_bucket(Bucket="enc")
        c.put_object(Bucket="enc", Key="a\rb", Body=b"x")
        # Asked for explicitly, boto3 leaves the keys as they came.
        raw = c.list_objects_v2(Bucket="enc", EncodingType="url")
        return raw["Contents"][0]["Key"]

    assert await asyncio.to_thread(work) == "a%0Db"


async def test_other_control_characters_are_still_refused(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="ctl")
        for key in ("a\x01b", "a\x0bb", "a\x1fb", "a\x7fb"):
            with pytest.raises(ClientError) as e:
                c.put_object(Bucket="ctl", Key=key, Body=b"x")
            assert e.value.response["Error"]["Code"] == "InvalidURI"
        assert c.list_objects_v2(Bucket="ctl")["KeyCount"] == 0

    await asyncio.to_thread(work)
