"""AWS behaviour that ceph's s3-tests check and our first reading missed:
304s carry the validators, lenient x-amz-tagging, checksum types and
malformed checksum values, re-creating one's own bucket, POST forms
without a key, with a loose expiration, or with a checksum field."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import urllib.request
import zlib
from typing import Any

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from s3_support import S3


def _code(e: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


async def test_not_modified_repeats_the_validators(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="cond")
        put = c.put_object(Bucket="cond", Key="k", Body=b"data")
        head = c.head_object(Bucket="cond", Key="k")
        for kwargs in (
            {"IfNoneMatch": put["ETag"]},
            {"IfModifiedSince": head["LastModified"] + dt.timedelta(seconds=1)},
        ):
            with pytest.raises(ClientError) as e:
                c.get_object(Bucket="cond", Key="k", **kwargs)
            assert _code(e)[1] == 304
            headers = e.value.response["ResponseMetadata"]["HTTPHeaders"]
            assert headers["etag"] == put["ETag"]
            assert (
                headers["last-modified"] == head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]
            )

    await asyncio.to_thread(work)


async def test_tagging_header_takes_a_bare_key_as_an_empty_value(s3: S3) -> None:
    c = s3.client()

    def add_header(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-amz-tagging"] = "foo=bar&bar"

    def work() -> None:
        c.create_bucket(Bucket="tags")
        c.meta.events.register("before-call.s3.PutObject", add_header)
        try:
            c.put_object(Bucket="tags", Key="k", Body=b"x")
        finally:
            c.meta.events.unregister("before-call.s3.PutObject", add_header)
        tags = c.get_object_tagging(Bucket="tags", Key="k")["TagSet"]
        assert tags == [{"Key": "bar", "Value": ""}, {"Key": "foo", "Value": "bar"}]

    await asyncio.to_thread(work)


async def test_checksum_type_and_malformed_values(s3: S3) -> None:
    c = s3.client()
    body = b"A" * 1024
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()

    def work() -> None:
        c.create_bucket(Bucket="sums")
        put = c.put_object(Bucket="sums", Key="k", Body=body, ChecksumSHA256=sha)
        assert put["ChecksumSHA256"] == sha and put["ChecksumType"] == "FULL_OBJECT"
        head = c.head_object(Bucket="sums", Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == sha and head["ChecksumType"] == "FULL_OBJECT"
        with pytest.raises(ClientError) as e:
            c.put_object(Bucket="sums", Key="k", Body=body, ChecksumSHA256="bad")
        assert _code(e) == ("BadDigest", 400)
        assert c.get_object(Bucket="sums", Key="k")["Body"].read() == body

    await asyncio.to_thread(work)


async def test_creating_ones_own_bucket_again_keeps_it(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="again")
        c.put_object(Bucket="again", Key="k", Body=b"kept")
        c.create_bucket(Bucket="again")  # 200, as AWS in us-east-1
        assert c.get_object(Bucket="again", Key="k")["Body"].read() == b"kept"

    await asyncio.to_thread(work)


def _signed_form(s3: S3, bucket: str, policy: dict[str, Any]) -> dict[str, str]:
    """A SigV2 POST form, written by hand (as ceph's tests do) so that the
    policy may say what boto3 would not."""
    encoded = base64.b64encode(json.dumps(policy).encode())
    signature = base64.b64encode(
        hmac.new(s3.secret_key.encode(), encoded, hashlib.sha1).digest()
    ).decode()
    return {
        "AWSAccessKeyId": s3.access_key_id,
        "policy": encoded.decode(),
        "signature": signature,
    }


def _expires(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(**delta)


async def test_post_forms(s3: S3) -> None:
    c = s3.client()
    url = f"{s3.endpoint}/posts"
    data = b"x" * 2048
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()

    def policy(expiration: str) -> dict[str, Any]:
        return {
            "expiration": expiration,
            "conditions": [
                {"bucket": "posts"},
                ["starts-with", "$key", "up/"],
                ["content-length-range", 0, 1 << 20],
            ],
        }

    def post(form: dict[str, str]) -> requests.Response:
        return requests.post(url, data=form, files={"file": ("f.bin", data)}, timeout=30)

    def work() -> None:
        c.create_bucket(Bucket="posts")
        fine = _signed_form(s3, "posts", policy(_expires(minutes=5).strftime("%Y-%m-%dT%H:%M:%SZ")))
        # A checksum field needs no condition; it is verified against the file.
        sent = post({**fine, "key": "up/a", "x-amz-checksum-sha256": good})
        assert sent.status_code == 204, sent.text
        assert c.get_object(Bucket="posts", Key="up/a")["Body"].read() == data
        sent = post({**fine, "key": "up/b", "x-amz-checksum-sha256": "sailorjerry"})
        assert sent.status_code == 400 and "<Code>BadDigest</Code>" in sent.text, sent.text
        # No key at all: 400 naming it, before the policy is looked at.
        sent = post(fine)
        assert sent.status_code == 400 and "<Code>InvalidArgument</Code>" in sent.text
        assert "key" in sent.text
        # An expiration not in AWS's ISO 8601 form is refused.
        loose = _signed_form(s3, "posts", policy(str(_expires(minutes=5))))
        sent = post({**loose, "key": "up/c"})
        assert sent.status_code == 400 and "expiration" in sent.text, sent.text
        listed = c.list_objects_v2(Bucket="posts")
        assert [o["Key"] for o in listed.get("Contents", [])] == ["up/a"]

    await asyncio.to_thread(work)


async def test_complete_again_answers_the_same(s3: S3) -> None:
    """An SDK retries a completion whose answer it lost: the second one
    answers as the first; a completion of other parts is still refused."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="mpu")
        up = c.create_multipart_upload(Bucket="mpu", Key="k")["UploadId"]
        etag = c.upload_part(Bucket="mpu", Key="k", UploadId=up, PartNumber=1, Body=b"p" * 100)
        parts = {"Parts": [{"PartNumber": 1, "ETag": etag["ETag"]}]}
        first = c.complete_multipart_upload(
            Bucket="mpu", Key="k", UploadId=up, MultipartUpload=parts
        )
        again = c.complete_multipart_upload(
            Bucket="mpu", Key="k", UploadId=up, MultipartUpload=parts
        )
        assert again["ETag"] == first["ETag"]
        other = {"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]}
        with pytest.raises(ClientError) as e:
            c.complete_multipart_upload(Bucket="mpu", Key="k", UploadId=up, MultipartUpload=other)
        assert _code(e) == ("NoSuchUpload", 404)
        assert c.get_object(Bucket="mpu", Key="k")["Body"].read() == b"p" * 100

    await asyncio.to_thread(work)


async def test_complete_checks_the_objects_checksum(s3: S3) -> None:
    c = s3.client()
    body = b"A" * 1024
    digest = hashlib.sha256(body).digest()
    part_sum = base64.b64encode(digest).decode()
    whole = base64.b64encode(hashlib.sha256(digest).digest()).decode() + "-1"

    def work() -> None:
        c.create_bucket(Bucket="mpsum")
        other = ("B" if whole[0] == "A" else "A") + whole[1:]
        for value, good in (("bad", False), (other, False), (whole, True)):
            up = c.create_multipart_upload(Bucket="mpsum", Key="k", ChecksumAlgorithm="SHA256")
            part = c.upload_part(
                Bucket="mpsum", Key="k", UploadId=up["UploadId"], PartNumber=1, Body=body,
                ChecksumSHA256=part_sum,
            )  # fmt: skip
            assert part["ChecksumSHA256"] == part_sum
            listed = {"PartNumber": 1, "ETag": part["ETag"], "ChecksumSHA256": part_sum}
            parts = {"Parts": [listed]}
            kwargs: dict[str, Any] = {
                "Bucket": "mpsum",
                "Key": "k",
                "UploadId": up["UploadId"],
                "MultipartUpload": parts,
                "ChecksumSHA256": value,
            }
            if not good:
                with pytest.raises(ClientError) as e:
                    c.complete_multipart_upload(**kwargs)
                assert _code(e) == ("BadDigest", 400)
                with pytest.raises(ClientError):
                    c.head_object(Bucket="mpsum", Key="k")
                c.abort_multipart_upload(Bucket="mpsum", Key="k", UploadId=up["UploadId"])
                continue
            done = c.complete_multipart_upload(**kwargs)
            assert done["ChecksumSHA256"] == whole
            head = c.head_object(Bucket="mpsum", Key="k", ChecksumMode="ENABLED")
            assert head["ChecksumSHA256"] == whole and head["ChecksumType"] == "COMPOSITE"

    await asyncio.to_thread(work)


async def test_bucket_pages_and_an_empty_continuation_token(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        assert c.list_buckets(MaxBuckets=1)["Buckets"] == []
        for name in ("bkt-c", "bkt-a", "bkt-b", "other"):
            c.create_bucket(Bucket=name)
        seen: list[str] = []
        kwargs: dict[str, Any] = {"MaxBuckets": 2, "Prefix": "bkt-"}
        while True:
            page = c.list_buckets(**kwargs)
            seen += [b["Name"] for b in page["Buckets"]]
            if "ContinuationToken" not in page:
                break
            kwargs["ContinuationToken"] = page["ContinuationToken"]
        assert seen == ["bkt-a", "bkt-b", "bkt-c"]
        c.put_object(Bucket="bkt-a", Key="k", Body=b"x")
        listed = c.list_objects_v2(Bucket="bkt-a", ContinuationToken="")
        assert listed["ContinuationToken"] == "" and [o["Key"] for o in listed["Contents"]] == ["k"]

    await asyncio.to_thread(work)


async def test_encryption_and_grant_headers(s3: S3) -> None:
    """Objects are encrypted at rest (SSE-S3, reported on every object);
    customer keys, KMS and explicit grants are refused, not ignored."""
    c = s3.client()
    key = base64.b64encode(b"k" * 32).decode()
    key_md5 = base64.b64encode(hashlib.md5(b"k" * 32).digest()).decode()

    def work() -> None:
        c.create_bucket(Bucket="sse")
        put = c.put_object(Bucket="sse", Key="k", Body=b"x", ServerSideEncryption="AES256")
        assert put["ServerSideEncryption"] == "AES256"
        assert c.get_object(Bucket="sse", Key="k")["ServerSideEncryption"] == "AES256"
        assert c.head_object(Bucket="sse", Key="k")["ServerSideEncryption"] == "AES256"
        refused: list[tuple[dict[str, Any], tuple[str, int]]] = [
            (
                {
                    "SSECustomerAlgorithm": "AES256",
                    "SSECustomerKey": key,
                    "SSECustomerKeyMD5": key_md5,
                },
                ("NotImplemented", 501),
            ),
            ({"ServerSideEncryption": "aws:kms"}, ("NotImplemented", 501)),
            (
                {"GrantRead": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
                ("AccessControlListNotSupported", 400),
            ),
        ]
        for extra, answer in refused:
            with pytest.raises(ClientError) as e:
                c.put_object(Bucket="sse", Key="no", Body=b"x", **extra)
            assert _code(e) == answer, extra
        malformed: list[dict[str, Any]] = [
            # SSE-C with SSE-S3, without its algorithm, with a wrong key MD5
            {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key,
             "SSECustomerKeyMD5": key_md5, "ServerSideEncryption": "AES256"},
            {"SSECustomerKey": key, "SSECustomerKeyMD5": key_md5},
            {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key,
             "SSECustomerKeyMD5": base64.b64encode(b"0" * 16).decode()},
            # a KMS key with SSE-S3, or with no encryption named
            {"ServerSideEncryption": "AES256", "SSEKMSKeyId": "k1"},
            {"SSEKMSKeyId": "k1"},
        ]  # fmt: skip
        for extra in malformed:
            with pytest.raises(ClientError) as e:
                c.put_object(Bucket="sse", Key="no", Body=b"x", **extra)
            assert _code(e) == ("InvalidArgument", 400), extra
        with pytest.raises(ClientError) as e:
            c.head_object(Bucket="sse", Key="no")
        assert _code(e)[1] == 404
        # A read names no encryption; a copy reports the copy's.
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket="sse", Key="k", SSECustomerAlgorithm="AES256",
                         SSECustomerKey=key, SSECustomerKeyMD5=key_md5)  # fmt: skip
        assert _code(e) == ("InvalidRequest", 400)
        # ...but where there is no object, that comes first (s3transfer's
        # download waits on 404s with the SSE-C parameters of the object).
        for read in (c.get_object, c.head_object):
            with pytest.raises(ClientError) as e:
                read(Bucket="sse", Key="absent", SSECustomerAlgorithm="AES256",
                     SSECustomerKey=key, SSECustomerKeyMD5=key_md5)  # fmt: skip
            assert _code(e)[1] == 404
        copied = c.copy_object(Bucket="sse", Key="k2", CopySource={"Bucket": "sse", "Key": "k"})
        assert copied["ServerSideEncryption"] == "AES256"
        # every step of a multipart upload reports it too (ceph's test_copy_part_enc)
        up = c.create_multipart_upload(Bucket="sse", Key="mp", ServerSideEncryption="AES256")
        assert up["ServerSideEncryption"] == "AES256"
        part = c.upload_part(
            Bucket="sse", Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"p" * (5 << 20)
        )
        copy = c.upload_part_copy(
            Bucket="sse", Key="mp", UploadId=up["UploadId"], PartNumber=2, CopySource="sse/k"
        )
        assert part["ServerSideEncryption"] == copy["ServerSideEncryption"] == "AES256"
        done = c.complete_multipart_upload(
            Bucket="sse", Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": [
                {"PartNumber": 1, "ETag": part["ETag"]},
                {"PartNumber": 2, "ETag": copy["CopyPartResult"]["ETag"]},
            ]},
        )  # fmt: skip
        assert done["ServerSideEncryption"] == "AES256"

    await asyncio.to_thread(work)


async def test_undecodable_keys_and_expired_presigned_urls(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="uri")
        c.put_object(Bucket="uri", Key="k", Body=b"x")
        # A control character (here U+008A) in a key: AWS's InvalidURI.
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket="uri", Key="\xae\x8a-")
        assert _code(e) == ("InvalidURI", 400)
        assert e.value.response["Error"]["Message"] == "Couldn't parse the specified URI."
        v4 = s3.client(signature_version="s3v4")
        params = {"Bucket": "uri", "Key": "k"}
        beyond = v4.generate_presigned_url("get_object", Params=params, ExpiresIn=609901)
        answer = requests.get(beyond, timeout=10)
        assert answer.status_code == 403 and "less than a week" in answer.text
        # The SDK signs no expiry below 1 s: the URL is edited (refused as
        # expired before its signature is looked at).
        url = v4.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
        answer = requests.get(url.replace("X-Amz-Expires=60", "X-Amz-Expires=-7"), timeout=10)
        assert answer.status_code == 403 and "non-negative" in answer.text
        url = c.generate_presigned_url("get_object", Params={"Bucket": "uri", "Key": "k"})
        assert requests.get(url, timeout=10).content == b"x"

    await asyncio.to_thread(work)


async def test_full_object_checksum_of_a_multipart_upload(s3: S3) -> None:
    """ChecksumType FULL_OBJECT: the object's CRC is of all its bytes (from
    the parts' CRCs, not re-read), not a checksum of checksums."""
    c = s3.client()
    parts = [os.urandom(5 * 1024 * 1024), os.urandom(1234)]
    whole = zlib.crc32(b"".join(parts)).to_bytes(4, "big")
    expected = base64.b64encode(whole).decode()

    def work() -> None:
        c.create_bucket(Bucket="full")
        up = c.create_multipart_upload(
            Bucket="full", Key="k", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
        )
        assert up["ChecksumType"] == "FULL_OBJECT"
        done = [
            {"PartNumber": i, "ETag": c.upload_part(
                Bucket="full", Key="k", UploadId=up["UploadId"], PartNumber=i, Body=data,
                ChecksumAlgorithm="CRC32",
            )["ETag"]}
            for i, data in enumerate(parts, 1)
        ]  # fmt: skip
        listed = c.list_parts(Bucket="full", Key="k", UploadId=up["UploadId"])
        assert listed["ChecksumType"] == "FULL_OBJECT"
        result = c.complete_multipart_upload(
            Bucket="full", Key="k", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
        )
        assert result["ChecksumCRC32"] == expected and result["ChecksumType"] == "FULL_OBJECT"
        head = c.head_object(Bucket="full", Key="k", ChecksumMode="ENABLED")
        assert head["ChecksumCRC32"] == expected and head["ChecksumType"] == "FULL_OBJECT"
        with pytest.raises(ClientError) as e:
            c.create_multipart_upload(
                Bucket="full", Key="s", ChecksumAlgorithm="SHA256", ChecksumType="FULL_OBJECT"
            )
        assert _code(e) == ("InvalidRequest", 400)

    await asyncio.to_thread(work)


async def test_post_forms_refuse_customer_keys(s3: S3) -> None:
    c = s3.client()
    fields = {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(b"k" * 32).decode(),
    }

    def work() -> None:
        c.create_bucket(Bucket="postsse")
        post = c.generate_presigned_post(
            "postsse",
            "up/x",
            Fields=fields,
            Conditions=[{name: value} for name, value in fields.items()],
        )
        sent = requests.post(post["url"], data=post["fields"], files={"file": b"x"}, timeout=30)
        assert sent.status_code == 501 and "<Code>NotImplemented</Code>" in sent.text, sent.text
        assert "Contents" not in c.list_objects_v2(Bucket="postsse")
        plain = c.generate_presigned_post("postsse", "up/y")
        sent = requests.post(plain["url"], data=plain["fields"], files={"file": b"y"}, timeout=30)
        assert sent.status_code == 204 and sent.headers["x-amz-server-side-encryption"] == "AES256"

    await asyncio.to_thread(work)


async def test_get_object_attributes(s3: S3) -> None:
    c = s3.client()
    asked = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    sizes = [5 * 1024 * 1024] * 3 + [1000]

    def work() -> None:
        c.create_bucket(Bucket="attrs")
        put = c.put_object(Bucket="attrs", Key="one", Body=b"foo", ChecksumAlgorithm="SHA256")
        one = c.get_object_attributes(Bucket="attrs", Key="one", ObjectAttributes=asked)
        assert one["ETag"] == put["ETag"].strip('"') and one["ObjectSize"] == 3
        assert one["StorageClass"] == "STANDARD" and "ObjectParts" not in one
        assert one["Checksum"]["ChecksumSHA256"] == put["ChecksumSHA256"]
        assert one["Checksum"]["ChecksumType"] == "FULL_OBJECT"

        up = c.create_multipart_upload(Bucket="attrs", Key="mp")["UploadId"]
        done = [
            {"PartNumber": i, "ETag": c.upload_part(
                Bucket="attrs", Key="mp", UploadId=up, PartNumber=i, Body=b"p" * n
            )["ETag"]}
            for i, n in enumerate(sizes, 1)
        ]  # fmt: skip
        result = c.complete_multipart_upload(
            Bucket="attrs", Key="mp", UploadId=up, MultipartUpload={"Parts": done}
        )
        whole = c.get_object_attributes(Bucket="attrs", Key="mp", ObjectAttributes=asked)
        assert whole["ETag"] == result["ETag"].strip('"') and whole["ObjectSize"] == sum(sizes)
        parts = whole["ObjectParts"]
        assert parts["TotalPartsCount"] == 4 and parts["IsTruncated"] is False
        assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == list(enumerate(sizes, 1))
        page = c.get_object_attributes(
            Bucket="attrs", Key="mp", ObjectAttributes=["ObjectParts"],
            MaxParts=2, PartNumberMarker=1,
        )["ObjectParts"]  # fmt: skip
        assert [p["PartNumber"] for p in page["Parts"]] == [2, 3]
        assert page["IsTruncated"] is True and page["NextPartNumberMarker"] == 3
        with pytest.raises(ClientError) as e:
            c.get_object_attributes(Bucket="attrs", Key="nope", ObjectAttributes=asked)
        assert _code(e) == ("NoSuchKey", 404)

    await asyncio.to_thread(work)


async def test_review_edges(s3: S3) -> None:
    """An empty one-part multipart object read by part; numbers that are
    digits to str.isdigit but not to int(); a retried completion that
    names another checksum."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="edges")
        up = c.create_multipart_upload(Bucket="edges", Key="empty")["UploadId"]
        etag = c.upload_part(Bucket="edges", Key="empty", UploadId=up, PartNumber=1, Body=b"")
        parts = {"Parts": [{"PartNumber": 1, "ETag": etag["ETag"]}]}
        c.complete_multipart_upload(Bucket="edges", Key="empty", UploadId=up, MultipartUpload=parts)
        got = c.get_object(Bucket="edges", Key="empty", PartNumber=1)
        assert got["Body"].read() == b"" and got["ResponseMetadata"]["HTTPStatusCode"] == 200
        head = c.head_object(Bucket="edges", Key="empty", PartNumber=1)
        assert head["ContentLength"] == 0 and "ContentRange" not in head
        with pytest.raises(ClientError) as e:
            c.complete_multipart_upload(
                Bucket="edges", Key="empty", UploadId=up, MultipartUpload=parts,
                ChecksumCRC32="AAAAAA==",
            )  # fmt: skip
        assert _code(e) == ("BadDigest", 400)

    await asyncio.to_thread(work)
    for query in ("max-buckets=%C2%B2", "max-buckets=" + "9" * 5000):
        url = f"{s3.endpoint}/?{query}"
        request = AWSRequest(method="GET", url=url, headers={})
        request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        S3SigV4Auth(Credentials(s3.access_key_id, s3.secret_key), "s3", "us-east-1").add_auth(
            request
        )
        answer = await asyncio.to_thread(
            requests.get, url, headers=dict(request.headers.items()), timeout=10
        )
        assert answer.status_code == 400 and "InvalidArgument" in answer.text, answer.text


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


async def test_parts_keep_their_own_checksums(s3: S3) -> None:
    """A part read (``partNumber``) and GetObjectAttributes answer each
    part's own checksum, with the object's checksum type; a CopyObject is
    one piece with a direct checksum of its bytes, as on AWS."""
    c = s3.client()
    bodies = [b"A" * (5 * 1024 * 1024), b"B" * (5 * 1024 * 1024), b"C" * 777]
    sums = [_b64(hashlib.sha256(b).digest()) for b in bodies]
    composite = _b64(hashlib.sha256(b"".join(base64.b64decode(s) for s in sums)).digest())

    def work() -> None:
        c.create_bucket(Bucket="psums")
        up = c.create_multipart_upload(
            Bucket="psums", Key="mp", ChecksumAlgorithm="SHA256", ChecksumType="COMPOSITE"
        )["UploadId"]
        done = []
        for i, (body, want) in enumerate(zip(bodies, sums, strict=True), 1):
            got = c.upload_part(
                Bucket="psums", Key="mp", UploadId=up, PartNumber=i, Body=body,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=want,
            )  # fmt: skip
            done.append({"PartNumber": i, "ETag": got["ETag"], "ChecksumSHA256": want})
        result = c.complete_multipart_upload(
            Bucket="psums", Key="mp", UploadId=up, MultipartUpload={"Parts": done}
        )
        assert result["ChecksumSHA256"] == f"{composite}-3"
        for n, (body, want) in enumerate(zip(bodies, sums, strict=True), 1):
            part = c.get_object(Bucket="psums", Key="mp", PartNumber=n, ChecksumMode="ENABLED")
            assert part["Body"].read() == body
            assert part["ChecksumSHA256"] == want and part["ChecksumType"] == "COMPOSITE"
            head = c.head_object(Bucket="psums", Key="mp", PartNumber=n, ChecksumMode="ENABLED")
            assert head["ChecksumSHA256"] == want and head["ChecksumType"] == "COMPOSITE"
            assert head["ContentLength"] == len(body)
        attrs = c.get_object_attributes(
            Bucket="psums", Key="mp", ObjectAttributes=["Checksum", "ObjectParts"]
        )
        assert attrs["Checksum"]["ChecksumSHA256"] == f"{composite}-3"
        assert [p["ChecksumSHA256"] for p in attrs["ObjectParts"]["Parts"]] == sums
        whole = c.head_object(Bucket="psums", Key="mp", ChecksumMode="ENABLED")
        assert whole["ChecksumSHA256"] == f"{composite}-3"

        # A CopyObject is one piece (AWS: "with a copy command, the checksum
        # of the object is a direct checksum of the full object"): the
        # SHA-256 and MD5 of its bytes, one part.
        everything = b"".join(bodies)
        direct = _b64(hashlib.sha256(everything).digest())
        copy = c.copy_object(
            Bucket="psums", Key="copy", CopySource={"Bucket": "psums", "Key": "mp"}
        )["CopyObjectResult"]
        assert copy["ChecksumSHA256"] == direct and copy["ChecksumType"] == "FULL_OBJECT"
        assert copy["ETag"] == f'"{hashlib.md5(everything).hexdigest()}"'
        one = c.get_object(Bucket="psums", Key="copy", PartNumber=1, ChecksumMode="ENABLED")
        assert one["Body"].read() == everything and one["ChecksumSHA256"] == direct
        attrs = c.get_object_attributes(
            Bucket="psums", Key="copy", ObjectAttributes=["Checksum", "ObjectParts"]
        )
        assert attrs["Checksum"] == {"ChecksumSHA256": direct, "ChecksumType": "FULL_OBJECT"}
        assert "ObjectParts" not in attrs

    await asyncio.to_thread(work)


async def test_a_part_of_a_full_object_crc_reads_with_its_own(s3: S3) -> None:
    """A part of a FULL_OBJECT upload answers the part's CRC (the SDK checks
    the part's bytes against it), not the whole object's."""
    c = s3.client()
    bodies = [os.urandom(5 * 1024 * 1024), os.urandom(4321)]

    def work() -> None:
        c.create_bucket(Bucket="fullparts")
        up = c.create_multipart_upload(
            Bucket="fullparts", Key="k", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
        )["UploadId"]
        done = [
            {"PartNumber": i, "ETag": c.upload_part(
                Bucket="fullparts", Key="k", UploadId=up, PartNumber=i, Body=body,
                ChecksumAlgorithm="CRC32",
            )["ETag"]}
            for i, body in enumerate(bodies, 1)
        ]  # fmt: skip
        c.complete_multipart_upload(
            Bucket="fullparts", Key="k", UploadId=up, MultipartUpload={"Parts": done}
        )
        for n, body in enumerate(bodies, 1):
            part = c.get_object(Bucket="fullparts", Key="k", PartNumber=n, ChecksumMode="ENABLED")
            assert part["Body"].read() == body
            assert part["ChecksumCRC32"] == _b64(zlib.crc32(body).to_bytes(4, "big"))
            assert part["ChecksumType"] == "FULL_OBJECT"

    await asyncio.to_thread(work)


async def test_list_objects_v1_answers_its_prefix_unencoded(s3: S3) -> None:
    """boto3 asks every listing for ``encoding-type=url`` and decodes the
    keys, but ListObjects' ``Prefix`` only in V2: AWS leaves V1's as sent
    (ceph's test_bucket_list_prefix_unreadable)."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="prefixes")
        c.put_object(Bucket="prefixes", Key="a b+c/é 1", Body=b"x")
        for prefix in ("\n", "a b+c/é"):
            v1 = c.list_objects(Bucket="prefixes", Prefix=prefix)
            v2 = c.list_objects_v2(Bucket="prefixes", Prefix=prefix)
            assert v1["Prefix"] == v2["Prefix"] == prefix
            keys = [o["Key"] for o in v1.get("Contents", [])]
            assert keys == [o["Key"] for o in v2.get("Contents", [])]
            assert keys == ([] if prefix == "\n" else ["a b+c/é 1"])
        # An ASCII control (a key may hold one) is answered as AWS writes
        # it, a character reference (``&#x1;``) that XML 1.0 parsers refuse:
        # V1 echoes its Prefix unencoded, so the client fails loudly, while
        # V2 encodes it and lists the key.
        c.put_object(Bucket="prefixes", Key="\x01ctl", Body=b"x")
        v2 = c.list_objects_v2(Bucket="prefixes", Prefix="\x01")
        assert [o["Key"] for o in v2["Contents"]] == ["\x01ctl"]
        url = c.generate_presigned_url(
            "list_objects", Params={"Bucket": "prefixes", "Prefix": "\x01"}
        )
        with urllib.request.urlopen(url) as answer:
            assert b"<Prefix>&#x1;</Prefix>" in answer.read()
        # one that not even a reference can carry is refused, naming it
        with pytest.raises(ClientError) as e:
            c.list_objects(Bucket="prefixes", Prefix="\ufffe")
        assert _code(e) == ("InvalidArgument", 400)
        assert "prefix holds U+FFFE" in e.value.response["Error"]["Message"]

    await asyncio.to_thread(work)
