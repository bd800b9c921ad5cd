"""Keys holding control characters, as AWS takes them (the AWS CLI's own
suite puts ``foo\\r.txt``, botocore's ``foo\\x08``): stored, listed back
unchanged (tab, CR and LF in plain XML too, CR and LF written as character
references, as AWS writes them; the others through ``encoding-type=url``,
as the SDKs ask), read, copied and deleted one by one and in a batch. NUL
and the C1 controls stay refused, as AWS refuses them."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from botocore.handlers import set_list_objects_encoding_type_url
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


async def test_every_control_but_nul_is_a_key_as_on_aws(s3: S3) -> None:
    """botocore's own suite puts ``foo\\x08`` and ``foo\\x03`` and lists them:
    boto3 asks listings for ``encoding-type=url`` (XML 1.0 cannot carry
    them even as references) and sends DeleteObjects with them raw."""
    c = s3.client()
    keys = ["foo\x08", "foo\x03", "esc\x1b[2J", "del\x7f", "us\x1f", "bell\x07/x"]

    def work() -> None:
        c.create_bucket(Bucket="ctl")
        for key in keys:
            c.put_object(Bucket="ctl", Key=key, Body=key.encode())
        for key in keys:
            assert c.get_object(Bucket="ctl", Key=key)["Body"].read() == key.encode()
        assert [o["Key"] for o in c.list_objects_v2(Bucket="ctl")["Contents"]] == sorted(keys)
        assert [o["Key"] for o in c.list_objects(Bucket="ctl")["Contents"]] == sorted(keys)
        url = c.list_objects_v2(Bucket="ctl", EncodingType="url", Prefix="foo")
        assert sorted(o["Key"] for o in url["Contents"]) == ["foo%03", "foo%08"]
        # Quiet: an answer echoing these keys would hold references XML 1.0
        # does not allow (as AWS's), which botocore cannot read.
        gone = c.delete_objects(
            Bucket="ctl", Delete={"Objects": [{"Key": k} for k in keys[:4]], "Quiet": True}
        )
        assert "Errors" not in gone and "Deleted" not in gone, gone
        assert [o["Key"] for o in c.list_objects_v2(Bucket="ctl")["Contents"]] == sorted(keys[4:])

    await asyncio.to_thread(work)


async def test_nul_c1_and_noncharacters_are_refused(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="nul")
        # C1 as AWS refuses it (ceph's s3-tests read "\xae\x8a-" so).
        for key in ("a\x00b", "a\x85b", "a\x9fb", "a\ufffeb"):
            with pytest.raises(ClientError) as e:
                c.put_object(Bucket="nul", Key=key, Body=b"x")
            assert e.value.response["Error"]["Code"] == "InvalidURI", key
        assert c.list_objects_v2(Bucket="nul")["KeyCount"] == 0

    await asyncio.to_thread(work)


async def test_a_plain_listing_never_resumes_after_a_key_that_is_not_there(s3: S3) -> None:
    """Without ``encoding-type=url`` a key with a control XML cannot carry is
    written as AWS writes it (``&#x8;``): a parser refuses the page, loudly.
    A stand-in (U+FFFD) made the next page start after a key that does not
    exist and skip real ones, silently."""
    c = s3.client()

    def work() -> tuple[int, bytes]:
        c.create_bucket(Bucket="pages")
        for key in ("a\x08", "a1", "ab", "b"):
            c.put_object(Bucket="pages", Key=key, Body=b"x")
        v4 = s3.client(signature_version="s3v4")
        # boto3 adds encoding-type=url itself: a client that does not is
        # what is checked here (SigV4 signs the query, so it is removed
        # before signing).
        v4.meta.events.unregister(
            "before-parameter-build.s3.ListObjects", set_list_objects_encoding_type_url
        )
        url = v4.generate_presigned_url("list_objects", Params={"Bucket": "pages", "MaxKeys": 1})
        assert "encoding-type" not in url
        r = httpx.get(url)
        return r.status_code, r.content

    status, body = await asyncio.to_thread(work)
    assert status == 200 and b"<Key>a&#x8;</Key>" in body, body
    with pytest.raises(ET.ParseError):
        ET.fromstring(body)


async def test_pages_resume_after_a_prefix_ending_in_del(s3: S3) -> None:
    """A page that ends on the common prefix ``d\\x7f`` resumes just past it
    (``d\\x80``, which no key may hold): the cursor is accepted."""
    c = s3.client()

    def work() -> list[str]:
        c.create_bucket(Bucket="delpages")
        for key in ("d\x7fa", "d\x7fb", "e"):
            c.put_object(Bucket="delpages", Key=key, Body=b"x")
        seen: list[str] = []
        token = None
        while True:
            kw = {"ContinuationToken": token} if token else {}
            page = c.list_objects_v2(Bucket="delpages", Delimiter="\x7f", MaxKeys=1, **kw)
            seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            seen += [o["Key"] for o in page.get("Contents", [])]
            if not page["IsTruncated"]:
                return seen
            token = page["NextContinuationToken"]

    assert await asyncio.to_thread(work) == ["d\x7f", "e"]
