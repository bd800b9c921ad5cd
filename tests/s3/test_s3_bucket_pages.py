"""A page of ListBuckets reads about a page of packages, not all of them.

S3 buckets are the project's packages. ListBuckets read every package of
the project for each page and sorted and cut them in Python: paging
through 5,000 packages 100 at a time cost 1.95 s of the server's CPU, each
page about 40 ms and growing with the packages (found by the scale review
of 2026-12-07, twelfth session). A page is now read by name from the
project's index, past the continuation token, under the prefix. Packages
built from rows are counted, not time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
import pytest
from botocore.config import Config
from s3_support import S3

from jointcloud.keys.caveats import CaveatPath, KeyCaveat
from jointcloud.meta import catalog
from jointcloud.meta.catalog import buckets as catalog_buckets
from support.counting import rows_built

NAMES = [f"b{i:03d}" for i in range(300)]


async def test_a_page_of_buckets_reads_a_page_of_packages(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with s3.ctx.db.write() as conn:
        for name in reversed(NAMES):
            await catalog.create_package(conn, s3.project_id, name, None)
    built = rows_built(monkeypatch, catalog_buckets, "to_package", lambda row: row.name)
    c = s3.client()
    narrow_id, narrow_secret = await s3.credentials(
        KeyCaveat(paths=(CaveatPath("b150"), CaveatPath("b299", "x/")))
    )
    narrow = boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        aws_access_key_id=narrow_id,
        aws_secret_access_key=narrow_secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )

    def work() -> None:
        seen: list[str] = []
        kwargs: dict[str, Any] = {"MaxBuckets": 10}
        pages = 0
        while True:
            built.clear()
            page = c.list_buckets(**kwargs)
            assert len(built) <= 2 * 11, len(built)  # was 300 a page
            pages += 1
            seen += [b["Name"] for b in page["Buckets"]]
            if "ContinuationToken" not in page:
                break
            kwargs["ContinuationToken"] = page["ContinuationToken"]
        assert seen == NAMES and pages == 30

        built.clear()
        page = c.list_buckets(MaxBuckets=5, Prefix="b12")
        assert [b["Name"] for b in page["Buckets"]] == [f"b12{i}" for i in range(5)]
        token = page["ContinuationToken"]
        rest = c.list_buckets(MaxBuckets=5, Prefix="b12", ContinuationToken=token)
        assert [b["Name"] for b in rest["Buckets"]] == [f"b12{i}" for i in range(5, 10)]
        assert "ContinuationToken" not in rest
        assert len(built) <= 2 * (6 + 1), len(built)

        listed = narrow.list_buckets()  # a key limited to two packages sees two
        assert [b["Name"] for b in listed["Buckets"]] == ["b150", "b299"]

    await asyncio.to_thread(work)
