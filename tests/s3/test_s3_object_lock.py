"""Object Lock is not supported: asking for it is refused, never ignored.
A write with Object Lock headers is answered as AWS answers it on a bucket
without Object Lock (``400 InvalidRequest``) and stores nothing; a bucket
asked to have Object Lock is not made (``501``). Stored unlocked, the
object could be deleted by a client that believes it cannot."""

from __future__ import annotations

import asyncio
import datetime

from s3_support import S3, code_of

UNTIL = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
LOCKS = [
    {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": UNTIL},
    {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": UNTIL},
    {"ObjectLockLegalHoldStatus": "ON"},
]


async def test_writes_that_ask_for_a_lock_are_refused(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="locks")
        c.put_object(Bucket="locks", Key="source", Body=b"s")
        for lock in LOCKS:
            writes = {
                "PutObject": lambda lock=lock: c.put_object(
                    Bucket="locks", Key="k", Body=b"keep me", **lock
                ),
                "CopyObject": lambda lock=lock: c.copy_object(
                    Bucket="locks", Key="k", CopySource="locks/source", **lock
                ),
                "CreateMultipartUpload": lambda lock=lock: c.create_multipart_upload(
                    Bucket="locks", Key="k", **lock
                ),
            }
            for name, write in writes.items():
                code, status, message = code_of(write)
                assert (code, status) == ("InvalidRequest", 400), (name, lock, message)
                assert message == "Bucket is missing ObjectLockConfiguration"
        keys = [o["Key"] for o in c.list_objects_v2(Bucket="locks").get("Contents", [])]
        assert keys == ["source"]
        assert c.list_multipart_uploads(Bucket="locks").get("Uploads", []) == []

    await asyncio.to_thread(work)


async def test_a_bucket_with_object_lock_is_not_made(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        code, status, message = code_of(
            lambda: c.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
        )
        assert (code, status) == ("NotImplemented", 501) and "Object Lock" in message
        names = [b["Name"] for b in c.list_buckets()["Buckets"]]
        assert "locked" not in names
        c.create_bucket(Bucket="unlocked", ObjectLockEnabledForBucket=False)
        assert "unlocked" in [b["Name"] for b in c.list_buckets()["Buckets"]]

    await asyncio.to_thread(work)
