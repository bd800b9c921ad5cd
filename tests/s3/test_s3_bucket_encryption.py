"""Bucket encryption and the public access block with boto3: SSE-S3 is what
every object here has, so it is reported, accepted and kept after a delete;
SSE-KMS is refused as not implemented; deleting the public access block
changes nothing (nothing here can be public). The AWS SDKs' own
integration suites call PutBucketEncryption and DeletePublicAccessBlock in
their set-up."""

from __future__ import annotations

import asyncio
from typing import Any

from s3_support import S3, code_of

from jointcloud.keys.caveats import KeyCaveat

SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


ROT13 = (
    b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"
    b"<SSEAlgorithm>ROT13</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
    b"</ServerSideEncryptionConfiguration>"
)


def replace_body(client: Any, body: bytes) -> None:
    """The next PutBucketEncryption sends ``body`` (its digests dropped)."""

    def hook(request: Any, **_: Any) -> None:
        request.data = body
        for name in list(request.headers.keys()):
            if name.lower() == "content-md5" or name.lower().startswith("x-amz-checksum-"):
                del request.headers[name]
        request.headers["Content-Length"] = str(len(body))
        client.meta.events.unregister("before-sign.s3.PutBucketEncryption", hook)

    client.meta.events.register("before-sign.s3.PutBucketEncryption", hook)


def default_rule(c: Any, bucket: str) -> dict[str, Any]:
    rules = c.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert len(rules) == 1
    return dict(rules[0])


async def test_sse_s3_is_reported_accepted_and_kept(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="enc")
        rule = default_rule(c, "enc")
        assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
        assert rule["BucketKeyEnabled"] is False
        c.put_bucket_encryption(Bucket="enc", ServerSideEncryptionConfiguration=SSE_S3)
        assert default_rule(c, "enc")["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == (
            "AES256"
        )
        c.delete_bucket_encryption(Bucket="enc")
        assert default_rule(c, "enc")["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == (
            "AES256"
        )
        # Objects say so too, as before.
        put = c.put_object(Bucket="enc", Key="k", Body=b"x")
        assert put["ServerSideEncryption"] == "AES256"

    await asyncio.to_thread(work)


async def test_kms_and_nonsense_are_refused(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="kms")
        for algorithm in ("aws:kms", "aws:kms:dsse"):
            config = {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm}}]
            }
            code, status, message = code_of(
                lambda config=config: c.put_bucket_encryption(
                    Bucket="kms", ServerSideEncryptionConfiguration=config
                )
            )
            assert (code, status) == ("NotImplemented", 501) and algorithm in message
        # Not a configuration botocore would build: its body replaced before signing.
        for body, named in ((ROT13, "ROT13"), (b"<ServerSideEncryptionConfiguration/>", "no Rule")):
            replace_body(c, body)
            code, status, message = code_of(
                lambda: c.put_bucket_encryption(
                    Bucket="kms", ServerSideEncryptionConfiguration=SSE_S3
                )
            )
            assert (code, status) == ("MalformedXML", 400) and named in message
        # Still SSE-S3.
        assert default_rule(c, "kms")["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == (
            "AES256"
        )

    await asyncio.to_thread(work)


async def test_missing_bucket_and_read_only_credentials(s3: S3) -> None:
    c = s3.client()
    s3.access_key_id, s3.secret_key = await s3.credentials(KeyCaveat.allowing(["read", "list"]))
    reader = s3.client()

    def work() -> None:
        code, status, _ = code_of(lambda: c.get_bucket_encryption(Bucket="nobucket"))
        assert (code, status) == ("NoSuchBucket", 404)
        c.create_bucket(Bucket="rdo")
        assert default_rule(reader, "rdo")["ApplyServerSideEncryptionByDefault"]
        for call in (
            lambda: reader.put_bucket_encryption(
                Bucket="rdo", ServerSideEncryptionConfiguration=SSE_S3
            ),
            lambda: reader.delete_bucket_encryption(Bucket="rdo"),
            lambda: reader.delete_public_access_block(Bucket="rdo"),
        ):
            assert code_of(call)[:2] == ("AccessDenied", 403)

    await asyncio.to_thread(work)


async def test_deleting_the_public_access_block_changes_nothing(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="pab")
        c.delete_public_access_block(Bucket="pab")
        # Still nothing can be made public, and the block cannot be read.
        code, status, _ = code_of(
            lambda: c.put_object(Bucket="pab", Key="k", Body=b"x", ACL="public-read")
        )
        assert (code, status) == ("AccessControlListNotSupported", 400)
        assert code_of(lambda: c.get_public_access_block(Bucket="pab"))[:2] == (
            "NotImplemented",
            501,
        )
        code, status, _ = code_of(lambda: c.delete_public_access_block(Bucket="absent"))
        assert (code, status) == ("NoSuchBucket", 404)

    await asyncio.to_thread(work)
