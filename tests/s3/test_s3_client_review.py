"""Edges a review with real clients (AWS CLI, rclone, s3cmd, boto3's
presigners) found answered otherwise than AWS: version ids of an
unversioned bucket, ``x-amz-*`` parameters of presigned URLs, paged
listings after a folder marker and after keys with control characters,
listing times, repeated metadata headers, a ``+`` in a signed query, and
conditions a write does not take."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import urllib.parse
import urllib.request
from typing import Any

import httpx
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from s3_support import S3, code_of


async def test_a_version_id_the_bucket_never_issued_is_refused_not_ignored(s3: S3) -> None:
    """DeleteObject with another version's id deleted the live object (a
    script pruning old versions would wipe the current data); GET, HEAD
    and the tagging calls answered with the current object. Buckets here
    are unversioned: "null" is the one version."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="versions")
        c.put_object(Bucket="versions", Key="k", Body=b"live")
        old = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nrjfkd"
        calls = {
            "delete": lambda: c.delete_object(Bucket="versions", Key="k", VersionId=old),
            "get": lambda: c.get_object(Bucket="versions", Key="k", VersionId=old),
            "tagging": lambda: c.get_object_tagging(Bucket="versions", Key="k", VersionId=old),
            "put tagging": lambda: c.put_object_tagging(
                Bucket="versions", Key="k", VersionId=old, Tagging={"TagSet": []}
            ),
        }
        for what, call in calls.items():
            code, status, message = code_of(call)
            assert (code, status, message) == (
                "InvalidArgument",
                400,
                "Invalid version id specified",
            ), what
        assert code_of(lambda: c.head_object(Bucket="versions", Key="k", VersionId=old))[1] == 400
        assert c.get_object(Bucket="versions", Key="k")["Body"].read() == b"live"
        got = c.get_object(Bucket="versions", Key="k", VersionId="null")
        assert got["Body"].read() == b"live"
        c.delete_object(Bucket="versions", Key="k", VersionId="null")
        assert code_of(lambda: c.head_object(Bucket="versions", Key="k"))[1] == 404

    await asyncio.to_thread(work)


async def test_a_page_that_ends_on_a_folder_marker_goes_on_to_the_keys_under_it(s3: S3) -> None:
    """A folder marker ``dir/`` listed under ``prefix=dir/`` with ``/`` as
    delimiter, one key a page: the page ends on the key ``dir/``, which was
    taken for a common prefix, so the next page skipped ``dir/a`` and the
    rest (``rclone lsf --s3-list-chunk 1``, the CLI's ``--page-size 1``)."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="folders")
        for key in ("dir/", "dir/a", "dir/b", "dir/sub/c", "dir0"):
            c.put_object(Bucket="folders", Key=key, Body=b"x")
        pages = c.get_paginator("list_objects").paginate(
            Bucket="folders", Prefix="dir/", Delimiter="/", PaginationConfig={"PageSize": 1}
        )
        keys, prefixes = [], []
        for page in pages:
            keys += [o["Key"] for o in page.get("Contents", [])]
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert (keys, prefixes) == (["dir/", "dir/a", "dir/b"], ["dir/sub/"])
        versions = c.get_paginator("list_object_versions").paginate(
            Bucket="folders", Prefix="dir/", Delimiter="/", PaginationConfig={"PageSize": 1}
        )
        listed = [v["Key"] for page in versions for v in page.get("Versions", [])]
        assert listed == ["dir/", "dir/a", "dir/b"]

    await asyncio.to_thread(work)


async def test_keys_with_control_characters_page_as_markers(s3: S3) -> None:
    """A key may hold an ASCII control (NUL apart), and a listing pages by
    passing the last key back as ``marker``/``start-after``: that was
    refused as a parameter XML could not carry, so boto3's and rclone's V1
    listings failed on the page that ended on such a key."""
    c = s3.client()
    keys = ["k1", "k2\x01", "k3\x1f", "k4"]

    def work() -> None:
        c.create_bucket(Bucket="controls")
        for key in keys:
            c.put_object(Bucket="controls", Key=key, Body=b"x")
        for op in ("list_objects", "list_objects_v2"):
            pages = c.get_paginator(op).paginate(
                Bucket="controls", PaginationConfig={"PageSize": 1}
            )
            assert [o["Key"] for p in pages for o in p.get("Contents", [])] == keys, op
        after = c.list_objects_v2(Bucket="controls", StartAfter="k2\x01")
        assert [o["Key"] for o in after["Contents"]] == ["k3\x1f", "k4"]

    await asyncio.to_thread(work)


async def test_listings_give_the_same_time_as_head(s3: S3) -> None:
    """Listings gave milliseconds where ``Last-Modified`` has whole seconds
    (AWS writes ``.000Z``): the AWS CLI stamps files with the listing's
    time cut to the second, so ``aws s3 sync --exact-timestamps`` fetched
    every file again, every run."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="times")
        for i in range(3):
            c.put_object(Bucket="times", Key=f"k{i}", Body=b"x")
        for entry in c.list_objects_v2(Bucket="times")["Contents"]:
            head = c.head_object(Bucket="times", Key=entry["Key"])
            assert entry["LastModified"] == head["LastModified"], entry["Key"]
        [bucket] = [b for b in c.list_buckets()["Buckets"] if b["Name"] == "times"]
        assert bucket["CreationDate"].microsecond == 0

    await asyncio.to_thread(work)


async def test_a_raw_plus_runs_as_it_was_signed(s3: S3) -> None:
    """A URL signed for ``prefix=a%2Bb`` with the ``%2B`` written as a raw
    ``+`` still verified (a raw ``+`` is read both ways), but ran as
    ``prefix=a b``: a request other than the one signed."""
    c = s3.client(signature_version="s3v4")  # SigV2 does not sign a prefix at all

    def work() -> None:
        c.create_bucket(Bucket="plus")
        for key in ("a+b1", "a b1"):
            c.put_object(Bucket="plus", Key=key, Body=b"x")
        url = c.generate_presigned_url(
            "list_objects_v2", Params={"Bucket": "plus", "Prefix": "a+b"}
        )
        assert "prefix=a%2Bb" in url
        for sent in (url, url.replace("prefix=a%2Bb", "prefix=a+b")):
            with urllib.request.urlopen(sent) as answer:
                body = answer.read()
            assert b"<Key>a%2Bb1</Key>" in body or b"<Key>a+b1</Key>" in body, body
            assert b"a%20b1" not in body and b"a b1" not in body, body

    await asyncio.to_thread(work)


def presign_v4(s3: S3, path: str) -> str:
    """A presigned SigV4 PUT URL of ``path``, its query signed with it."""
    request = AWSRequest(method="PUT", url=s3.endpoint + path)
    creds = Credentials(s3.access_key_id, s3.secret_key)
    S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=300).add_auth(request)
    return str(request.url)


async def test_a_presigned_urls_amz_parameters_are_headers(s3: S3) -> None:
    """botocore's SigV2 presigner puts metadata and tagging in the query,
    and the JavaScript SDK v3's moves every ``x-amz-*`` header there: the
    signature covered them, but the object was stored without them, and a
    wrong checksum or an ``x-amz-acl`` went through unchecked."""
    v2 = s3.client(signature_version="s3")
    v4 = s3.client(signature_version="s3v4")

    def put(url: str, body: bytes) -> tuple[int, bytes]:
        answer = httpx.put(url, content=body, timeout=30)  # no Content-Type: none was signed
        return answer.status_code, answer.content

    def work() -> None:
        v4.create_bucket(Bucket="hoist")
        url = v2.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": "hoist",
                "Key": "m",
                "Metadata": {"colour": "blue"},
                "Tagging": "a=b",
            },
        )
        assert "x-amz-meta-colour=blue" in url
        assert put(url, b"data")[0] == 200
        assert v4.head_object(Bucket="hoist", Key="m")["Metadata"] == {"colour": "blue"}
        tags = v4.get_object_tagging(Bucket="hoist", Key="m")["TagSet"]
        assert tags == [{"Key": "a", "Value": "b"}]
        # SigV4 with the headers in the query, as the JavaScript SDK v3 signs them
        status, body = put(presign_v4(s3, "/hoist/c?x-amz-checksum-crc32=AAAAAA%3D%3D"), b"data")
        assert status == 400 and b"BadDigest" in body, body
        status, body = put(presign_v4(s3, "/hoist/c?x-amz-acl=public-read"), b"data")
        assert status == 400 and b"AccessControlListNotSupported" in body, body
        assert b"x-amz-acl" in body, body
        assert code_of(lambda: v4.head_object(Bucket="hoist", Key="c"))[1] == 404

    await asyncio.to_thread(work)


async def test_repeated_metadata_headers_join_with_commas(s3: S3) -> None:
    """Two ``x-amz-meta-test`` headers kept only the last value; AWS joins
    them (``a,c``), as HTTP joins repeated fields."""
    c = s3.client()
    url = f"{s3.endpoint}/repeat/k"
    request = AWSRequest(method="PUT", url=url, data=b"x")
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(b"x").hexdigest()
    request.headers.add_header("x-amz-meta-test", "a")
    request.headers.add_header("x-amz-meta-test", "c")
    S3SigV4Auth(Credentials(s3.access_key_id, s3.secret_key), "s3", "us-east-1").add_auth(request)

    def work() -> None:
        c.create_bucket(Bucket="repeat")
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.netloc, timeout=30)
        conn.putrequest("PUT", parts.path, skip_accept_encoding=True)
        for name, value in request.headers.items():  # both repeats, as signed
            conn.putheader(name, value)
        conn.putheader("Content-Length", "1")
        conn.endheaders(b"x")
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()
        conn.close()
        assert c.head_object(Bucket="repeat", Key="k")["Metadata"] == {"test": "a,c"}

    await asyncio.to_thread(work)


async def test_a_write_ignores_the_date_conditions(s3: S3) -> None:
    """PutObject and DeleteObject take If-Match and If-None-Match only; AWS
    ignores If-Unmodified-Since there. It failed both with 412."""
    c = s3.client()
    long_ago = "Thu, 01 Jan 1970 00:00:00 GMT"

    def add_header(request: Any, **_: Any) -> None:
        request.headers["If-Unmodified-Since"] = long_ago

    c.meta.events.register("before-sign.s3.PutObject", add_header)
    c.meta.events.register("before-sign.s3.DeleteObject", add_header)

    def work() -> None:
        c.create_bucket(Bucket="dates")
        c.put_object(Bucket="dates", Key="k", Body=b"one")
        c.put_object(Bucket="dates", Key="k", Body=b"two")
        assert c.get_object(Bucket="dates", Key="k")["Body"].read() == b"two"
        c.delete_object(Bucket="dates", Key="k")
        assert code_of(lambda: c.head_object(Bucket="dates", Key="k"))[1] == 404

    await asyncio.to_thread(work)
