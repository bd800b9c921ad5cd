"""What S3 answers when the bucket, key or upload does not exist: AWS's
code, AWS's message (clients print it: the AWS CLI's own suite matches
"The specified bucket does not exist") and the element naming the missing
thing, which for a copy is the source's."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from s3_support import S3

NO_BUCKET = "The specified bucket does not exist"
NO_KEY = "The specified key does not exist."
NO_UPLOAD = (
    "The specified upload does not exist. The upload ID may be invalid, "
    "or the upload may have been aborted or completed."
)


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as e:
        call()
    return dict(e.value.response["Error"])


async def test_missing_bucket_key_and_upload(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        err = error_of(lambda: c.list_objects_v2(Bucket="nothere"))
        assert (err["Code"], err["Message"], err["BucketName"]) == (
            "NoSuchBucket",
            NO_BUCKET,
            "nothere",
        )
        err = error_of(lambda: c.put_object(Bucket="nothere", Key="k", Body=b"x"))
        assert (err["Code"], err["BucketName"]) == ("NoSuchBucket", "nothere")
        c.create_bucket(Bucket="here")
        err = error_of(lambda: c.get_object(Bucket="here", Key="dir/absent.txt"))
        assert (err["Code"], err["Message"], err["Key"]) == ("NoSuchKey", NO_KEY, "dir/absent.txt")
        err = error_of(
            lambda: c.upload_part(
                Bucket="here", Key="k", UploadId="no-such-upload", PartNumber=1, Body=b"x"
            )
        )
        assert (err["Code"], err["Message"], err["UploadId"]) == (
            "NoSuchUpload",
            NO_UPLOAD,
            "no-such-upload",
        )
        err = error_of(
            lambda: c.abort_multipart_upload(Bucket="here", Key="k", UploadId="gone-upload")
        )
        assert (err["Code"], err["UploadId"]) == ("NoSuchUpload", "gone-upload")

    await asyncio.to_thread(work)


async def test_a_copy_names_its_missing_source(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="dest")
        err = error_of(
            lambda: c.copy_object(
                Bucket="dest", Key="copy", CopySource={"Bucket": "dest", "Key": "src/missing"}
            )
        )
        assert (err["Code"], err["Key"]) == ("NoSuchKey", "src/missing")
        err = error_of(
            lambda: c.copy_object(
                Bucket="dest", Key="copy", CopySource={"Bucket": "nosrc", "Key": "k"}
            )
        )
        assert (err["Code"], err["BucketName"]) == ("NoSuchBucket", "nosrc")
        up = c.create_multipart_upload(Bucket="dest", Key="parts")
        err = error_of(
            lambda: c.upload_part_copy(
                Bucket="dest",
                Key="parts",
                UploadId=up["UploadId"],
                PartNumber=1,
                CopySource={"Bucket": "dest", "Key": "also/missing"},
            )
        )
        assert (err["Code"], err["Key"]) == ("NoSuchKey", "also/missing")

    await asyncio.to_thread(work)


async def test_head_of_a_missing_key_has_no_body(s3: S3) -> None:
    """HEAD carries no error document (AWS): only the status says it."""
    c = s3.client()

    def work() -> Any:
        c.create_bucket(Bucket="heads")
        url = c.generate_presigned_url("head_object", Params={"Bucket": "heads", "Key": "nope"})
        return httpx.head(url)

    r = await asyncio.to_thread(work)
    assert r.status_code == 404 and r.content == b""


async def test_the_document_is_aws_shaped(s3: S3) -> None:
    """Code, Message, BucketName, Resource and RequestId, as one XML error."""
    c = s3.client()

    def work() -> Any:
        url = c.generate_presigned_url("list_objects_v2", Params={"Bucket": "absent"})
        return httpx.get(url)

    r = await asyncio.to_thread(work)
    root = ET.fromstring(r.content)
    fields = {child.tag: child.text for child in root}
    assert r.status_code == 404 and root.tag == "Error"
    assert fields["Code"] == "NoSuchBucket" and fields["Message"] == NO_BUCKET
    assert fields["BucketName"] == "absent" and fields["Resource"] == "/absent"
    assert fields["RequestId"] == r.headers["x-amz-request-id"]
