"""Object and bucket tagging and ACLs through boto3: AWS's XML, status
codes and error codes; only private ACLs are accepted."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from s3_support import S3

from jointcloud.core.commands import ByteRange, GetObject, ObjectAddress, PackageRef
from jointcloud.errors import BadArgument, InvalidRange


def _code(e: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = e.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _tags(pairs: dict[str, str]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs.items()]}


async def test_object_tagging(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="tags")
        c.put_object(Bucket="tags", Key="a/b.txt", Body=b"x", Tagging="k1=v1&k2=")
        got = c.get_object_tagging(Bucket="tags", Key="a/b.txt")["TagSet"]
        assert sorted((t["Key"], t["Value"]) for t in got) == [("k1", "v1"), ("k2", "")]
        put = c.put_object_tagging(
            Bucket="tags", Key="a/b.txt", Tagging=_tags({"colour": "blue", "size": "L"})
        )
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
        got = c.get_object_tagging(Bucket="tags", Key="a/b.txt")["TagSet"]
        assert {t["Key"]: t["Value"] for t in got} == {"colour": "blue", "size": "L"}
        assert (
            c.head_object(Bucket="tags", Key="a/b.txt")["ResponseMetadata"]["HTTPHeaders"][
                "x-amz-tagging-count"
            ]
            == "2"
        )
        assert c.get_object(Bucket="tags", Key="a/b.txt")["Body"].read() == b"x"

        with pytest.raises(ClientError) as e:
            c.put_object_tagging(
                Bucket="tags", Key="a/b.txt", Tagging=_tags({f"k{i}": "v" for i in range(11)})
            )
        assert _code(e) == ("InvalidTag", 400)
        assert "10" in e.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as e:
            c.put_object_tagging(
                Bucket="tags",
                Key="a/b.txt",
                Tagging={"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]},
            )
        assert _code(e) == ("InvalidTag", 400)
        with pytest.raises(ClientError) as e:
            c.put_object_tagging(Bucket="tags", Key="a/b.txt", Tagging=_tags({"k" * 129: "v"}))
        assert _code(e) == ("InvalidTag", 400)
        with pytest.raises(ClientError) as e:
            c.put_object_tagging(Bucket="tags", Key="a/b.txt", Tagging=_tags({"aws:x": "v"}))
        assert _code(e) == ("InvalidTag", 400)
        with pytest.raises(ClientError) as e:
            c.put_object_tagging(Bucket="tags", Key="missing", Tagging=_tags({"a": "b"}))
        assert _code(e) == ("NoSuchKey", 404)
        with pytest.raises(ClientError) as e:
            c.get_object_tagging(Bucket="nobucket", Key="x")
        assert _code(e) == ("NoSuchBucket", 404)

        deleted = c.delete_object_tagging(Bucket="tags", Key="a/b.txt")
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert c.get_object_tagging(Bucket="tags", Key="a/b.txt")["TagSet"] == []

    await asyncio.to_thread(work)


def signed_put(s3: S3, path: str, body: bytes, **headers: str) -> requests.Response:
    """A PUT signed with SigV4 by botocore, headers and body as given."""
    request = AWSRequest(method="PUT", url=s3.endpoint + path, data=body, headers=headers)
    request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    S3SigV4Auth(Credentials(s3.access_key_id, s3.secret_key), "s3", "us-east-1").add_auth(request)
    return requests.put(request.url, data=body, headers=dict(request.headers), timeout=10)


async def test_tagging_document_is_checked(s3: S3) -> None:
    c = s3.client()
    await asyncio.to_thread(c.create_bucket, Bucket="docs")
    await asyncio.to_thread(c.put_object, Bucket="docs", Key="k", Body=b"1")

    def send(body: bytes, **headers: str) -> requests.Response:
        return signed_put(s3, "/docs/k?tagging", body, **headers)

    bad = await asyncio.to_thread(send, b"<Tagging><Nope/></Tagging>")
    assert bad.status_code == 400 and b"<Code>MalformedXML</Code>" in bad.content
    doc = b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>"
    wrong = await asyncio.to_thread(send, doc, **{"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
    assert wrong.status_code == 400 and b"<Code>BadDigest</Code>" in wrong.content
    crc = await asyncio.to_thread(send, doc, **{"x-amz-checksum-crc32": "AAAAAA=="})
    assert crc.status_code == 400 and b"<Code>BadDigest</Code>" in crc.content
    ok = await asyncio.to_thread(send, doc)
    assert ok.status_code == 200
    got = await asyncio.to_thread(c.get_object_tagging, Bucket="docs", Key="k")
    assert got["TagSet"] == [{"Key": "a", "Value": "b"}]


async def test_bucket_tagging(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="btags")
        with pytest.raises(ClientError) as e:
            c.get_bucket_tagging(Bucket="btags")
        assert _code(e) == ("NoSuchTagSet", 404)
        put = c.put_bucket_tagging(Bucket="btags", Tagging=_tags({"team": "a", "env": "dev"}))
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 204
        got = c.get_bucket_tagging(Bucket="btags")["TagSet"]
        assert {t["Key"]: t["Value"] for t in got} == {"team": "a", "env": "dev"}
        many = {f"k{i}": "v" for i in range(50)}
        c.put_bucket_tagging(Bucket="btags", Tagging=_tags(many))
        assert len(c.get_bucket_tagging(Bucket="btags")["TagSet"]) == 50
        with pytest.raises(ClientError) as e:
            c.put_bucket_tagging(Bucket="btags", Tagging=_tags({**many, "one": "more"}))
        assert _code(e) == ("InvalidTag", 400)
        deleted = c.delete_bucket_tagging(Bucket="btags")
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ClientError) as e:
            c.get_bucket_tagging(Bucket="btags")
        assert _code(e) == ("NoSuchTagSet", 404)
        with pytest.raises(ClientError) as e:
            c.put_bucket_tagging(Bucket="nobucket", Tagging=_tags({"a": "b"}))
        assert _code(e) == ("NoSuchBucket", 404)

    await asyncio.to_thread(work)


async def test_acls_are_private(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="acl", ACL="private")
        c.put_object(Bucket="acl", Key="o", Body=b"data", ACL="private")
        assert c.get_object(Bucket="acl", Key="o")["Body"].read() == b"data"
        for got in (c.get_bucket_acl(Bucket="acl"), c.get_object_acl(Bucket="acl", Key="o")):
            owner = got["Owner"]
            assert len(owner["ID"]) == 64
            assert got["Grants"] == [
                {
                    "Grantee": {**owner, "Type": "CanonicalUser"},
                    "Permission": "FULL_CONTROL",
                }
            ]
        owner = c.get_bucket_acl(Bucket="acl")["Owner"]
        assert (
            c.put_bucket_acl(Bucket="acl", ACL="private")["ResponseMetadata"]["HTTPStatusCode"]
            == 200
        )
        c.put_object_acl(Bucket="acl", Key="o", ACL="private")
        mine = {
            "Owner": owner,
            "Grants": [
                {
                    "Grantee": {"ID": owner["ID"], "Type": "CanonicalUser"},
                    "Permission": "FULL_CONTROL",
                }
            ],
        }
        c.put_bucket_acl(Bucket="acl", AccessControlPolicy=mine)
        c.put_object_acl(Bucket="acl", Key="o", AccessControlPolicy=mine)
        c.put_object_acl(Bucket="acl", Key="o", GrantFullControl=f'id="{owner["ID"]}"')

        for call in (
            lambda: c.put_bucket_acl(Bucket="acl", ACL="public-read"),
            lambda: c.put_object_acl(Bucket="acl", Key="o", ACL="public-read-write"),
            lambda: c.put_object_acl(Bucket="acl", Key="o", GrantRead='id="someone"'),
            lambda: c.put_bucket_acl(
                Bucket="acl",
                AccessControlPolicy={
                    "Owner": owner,
                    "Grants": [
                        *mine["Grants"],
                        {
                            "Grantee": {
                                "Type": "Group",
                                "URI": "http://acs.amazonaws.com/groups/global/AllUsers",
                            },
                            "Permission": "READ",
                        },
                    ],
                },
            ),
        ):
            with pytest.raises(ClientError) as e:
                call()
            assert _code(e) == ("AccessControlListNotSupported", 400)
            assert "link sharing" in e.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as e:
            c.put_object_acl(Bucket="acl", Key="missing", ACL="private")
        assert _code(e) == ("NoSuchKey", 404)
        with pytest.raises(ClientError) as e:
            c.get_bucket_acl(Bucket="nobucket")
        assert _code(e) == ("NoSuchBucket", 404)

    await asyncio.to_thread(work)


async def test_part_ranges_of_a_multipart_object(s3: S3) -> None:
    """Core's head_part (for GetObject/HeadObject ?partNumber=N): a
    multipart object keeps its parts' boundaries; a single PUT is one part."""
    c = s3.client()
    sizes = [5 * 1024 * 1024, 5 * 1024 * 1024 + 3, 1000]
    data = [os.urandom(n) for n in sizes]

    def work() -> None:
        c.create_bucket(Bucket="parts")
        up = c.create_multipart_upload(Bucket="parts", Key="mp")["UploadId"]
        done = [
            {"PartNumber": i, "ETag": c.upload_part(
                Bucket="parts", Key="mp", UploadId=up, PartNumber=i, Body=d
            )["ETag"]}
            for i, d in enumerate(data, 1)
        ]  # fmt: skip
        c.complete_multipart_upload(
            Bucket="parts", Key="mp", UploadId=up, MultipartUpload={"Parts": done}
        )
        c.put_object(Bucket="parts", Key="one", Body=b"single")

    await asyncio.to_thread(work)
    user = await s3.ctx.access.resolve(s3.access_key_id)
    objects = s3.ctx.objects
    mp = ObjectAddress(PackageRef.by_name("parts"), "mp")
    assert (await objects.head_part(user.principal, mp, 1))[1][:4] == (0, sizes[0], 3, True)
    assert (await objects.head_part(user.principal, mp, 2))[1][:4] == (sizes[0], sizes[1], 3, True)
    assert (await objects.head_part(user.principal, mp, 3))[1][:4] == (
        sum(sizes[:2]),
        1000,
        3,
        True,
    )
    with pytest.raises(InvalidRange):
        await objects.head_part(user.principal, mp, 4)
    # A read by part number locates and reads the part in one snapshot.
    dl = await objects.get(user.principal, GetObject(mp, part_number=2))
    assert dl.part is not None and dl.part[:4] == (sizes[0], sizes[1], 3, True) and dl.partial
    assert b"".join([c async for c in dl.body]) == data[1]
    with pytest.raises(InvalidRange):
        await objects.get(user.principal, GetObject(mp, part_number=4))
    with pytest.raises(BadArgument):
        await objects.get(user.principal, GetObject(mp, range=ByteRange(0, 1), part_number=1))
    one = ObjectAddress(PackageRef.by_name("parts"), "one")
    assert (await objects.head_part(user.principal, one, 1))[1][:4] == (0, 6, 1, False)
    whole = await objects.get(user.principal, GetObject(one, part_number=1))
    assert not whole.partial and b"".join([c async for c in whole.body]) == b"single"
    with pytest.raises(InvalidRange):
        await objects.head_part(user.principal, one, 2)


async def test_bucket_owner_full_control_is_the_private_acl(s3: S3) -> None:
    """``bucket-owner-full-control`` is what AWS takes on a bucket whose ACLs
    are disabled (every new bucket since 2023, and every bucket here: the
    writer is the owner), and what cross-account pipelines send on every
    write (``aws s3 cp --acl``, ``rclone --s3-acl``, Hadoop's s3a). It was
    answered 501, so each such upload failed. ``bucket-owner-read`` stays
    refused, as AWS refuses it with ACLs disabled."""
    c = s3.client()
    acl = "bucket-owner-full-control"

    def work() -> None:
        c.create_bucket(Bucket="bofc")
        c.put_object(Bucket="bofc", Key="o", Body=b"data", ACL=acl)
        c.copy_object(Bucket="bofc", Key="copy", CopySource="bofc/o", ACL=acl)
        upload = c.create_multipart_upload(Bucket="bofc", Key="mp", ACL=acl)["UploadId"]
        c.abort_multipart_upload(Bucket="bofc", Key="mp", UploadId=upload)
        c.put_object_acl(Bucket="bofc", Key="o", ACL=acl)
        assert c.get_object(Bucket="bofc", Key="copy")["Body"].read() == b"data"
        owner = c.get_object_acl(Bucket="bofc", Key="o")["Owner"]
        assert c.get_object_acl(Bucket="bofc", Key="o")["Grants"] == [
            {"Grantee": {**owner, "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}
        ]
        with pytest.raises(ClientError) as e:
            c.put_object(Bucket="bofc", Key="r", Body=b"x", ACL="bucket-owner-read")
        assert _code(e) == ("AccessControlListNotSupported", 400)

    await asyncio.to_thread(work)
