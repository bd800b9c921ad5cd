"""Edges a review with real clients (AWS CLI, rclone, s3cmd, boto3's
presigners) found answered otherwise than AWS: version ids of an
unversioned bucket, ``x-amz-*`` parameters of presigned URLs, paged
listings after a folder marker and after keys with control characters,
listing times, repeated metadata headers, a ``+`` in a signed query, and
conditions a write does not take."""

from __future__ import annotations

import asyncio
import urllib.request

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
