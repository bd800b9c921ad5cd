"""CopyObject and DeleteObjects through the S3 endpoint with boto3's
current defaults: metadata and tagging directives, copy-source conditions,
copies onto themselves, across buckets and outside a grant's caveats;
batch deletes in quiet and verbose mode, conditional per key, and the
refusals AWS answers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from s3_support import S3, code_of, multipart_object

from jointcloud.api.s3 import ops_copy
from jointcloud.core import copy_checksum
from jointcloud.core import objects as objects_module
from jointcloud.core.authz import Operation, Principal
from jointcloud.core.commands import DeleteObject, ObjectAddress, PackageRef
from jointcloud.keys.caveats import CaveatPath, KeyCaveat


def rewrite(client: Any, operation: str, change: Callable[[Any], None]) -> None:
    """Change the next ``operation`` request before it is signed."""

    def hook(request: Any, **_: Any) -> None:
        change(request)
        client.meta.events.unregister(f"before-sign.s3.{operation}", hook)

    client.meta.events.register(f"before-sign.s3.{operation}", hook)


def drop_headers(*names: str) -> Callable[[Any], None]:
    def change(request: Any) -> None:
        for name in names:
            if name in request.headers:
                del request.headers[name]

    return change


async def test_copy_directives(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="src")
        c.create_bucket(Bucket="dst")
        put = c.put_object(
            Bucket="src",
            Key="a.txt",
            Body=b"hello world",
            ContentType="text/plain",
            Metadata={"colour": "blue"},
            Tagging="k=v",
        )

        def head(bucket: str, key: str) -> tuple[str, dict[str, str], dict[str, str], str]:
            h = c.head_object(Bucket=bucket, Key=key)
            tags = c.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            return (
                h["ContentType"],
                h["Metadata"],
                {t["Key"]: t["Value"] for t in tags},
                h["ETag"],
            )

        src = {"Bucket": "src", "Key": "a.txt"}
        # COPY (the default): metadata and tags come along, the ETag too.
        done = c.copy_object(Bucket="dst", Key="b.txt", CopySource=src)
        assert done["CopyObjectResult"]["ETag"] == put["ETag"]
        assert done["CopyObjectResult"]["LastModified"]
        assert head("dst", "b.txt") == ("text/plain", {"colour": "blue"}, {"k": "v"}, put["ETag"])
        assert c.get_object(Bucket="dst", Key="b.txt")["Body"].read() == b"hello world"
        # REPLACE: the request's metadata; tags still copied.
        c.copy_object(
            Bucket="dst",
            Key="c.txt",
            CopySource=src,
            MetadataDirective="REPLACE",
            ContentType="application/json",
            Metadata={"size": "small"},
        )
        assert head("dst", "c.txt")[:3] == ("application/json", {"size": "small"}, {"k": "v"})
        # Tagging REPLACE with metadata COPY.
        c.copy_object(
            Bucket="dst",
            Key="d.txt",
            CopySource=src,
            TaggingDirective="REPLACE",
            Tagging="new=1&other=2",
        )
        assert head("dst", "d.txt")[:3] == (
            "text/plain",
            {"colour": "blue"},
            {"new": "1", "other": "2"},
        )
        # Keys that need encoding, a source named as a string with versionId=null.
        odd = "dir/ü ñ+%?&=.txt"
        c.put_object(Bucket="src", Key=odd, Body=b"odd")
        c.copy_object(Bucket="dst", Key=odd, CopySource={"Bucket": "src", "Key": odd})
        c.copy_object(Bucket="dst", Key="e.txt", CopySource=f"src/{odd}?versionId=null")
        assert c.get_object(Bucket="dst", Key=odd)["Body"].read() == b"odd"
        assert c.get_object(Bucket="dst", Key="e.txt")["Body"].read() == b"odd"
        # Refusals: unknown directives, a malformed source, a version id,
        # a missing source object or bucket.
        for extra in ({"MetadataDirective": "MOVE"}, {"TaggingDirective": "KEEP"}):
            assert (
                code_of(
                    lambda e=extra: c.copy_object(  # type: ignore[misc]
                        Bucket="dst", Key="x", CopySource=src, **e
                    )
                )[:2]
                == ("InvalidArgument", 400)
            )
        for source in ("srconly", "/src/", "src/a.txt?versionId=3HL4kqtJlcpXroDTDmJ"):
            assert (
                code_of(
                    lambda s=source: c.copy_object(  # type: ignore[misc]
                        Bucket="dst", Key="x", CopySource=s
                    )
                )[:2]
                == ("InvalidArgument", 400)
            )
        missing = c.copy_object
        assert code_of(
            lambda: missing(Bucket="dst", Key="x", CopySource={"Bucket": "src", "Key": "no"})
        )[:2] == ("NoSuchKey", 404)
        assert code_of(
            lambda: missing(Bucket="dst", Key="x", CopySource={"Bucket": "nob", "Key": "a"})
        )[:2] == ("NoSuchBucket", 404)
        assert code_of(lambda: missing(Bucket="nob", Key="x", CopySource=src))[:2] == (
            "NoSuchBucket",
            404,
        )
        assert code_of(lambda: c.head_object(Bucket="dst", Key="x"))[1] == 404

    await asyncio.to_thread(work)


async def test_copy_onto_itself_and_conditions(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="bkt")
        put = c.put_object(Bucket="bkt", Key="k", Body=b"data", Metadata={"a": "1"})
        me = {"Bucket": "bkt", "Key": "k"}
        code, status, message = code_of(lambda: c.copy_object(Bucket="bkt", Key="k", CopySource=me))
        assert (code, status) == ("InvalidRequest", 400)
        assert message.startswith("This copy request is illegal because it is trying to copy")
        assert code_of(
            lambda: c.copy_object(
                Bucket="bkt", Key="k", CopySource=me, TaggingDirective="REPLACE", Tagging="a=b"
            )
        )[:2] == ("InvalidRequest", 400)
        c.copy_object(
            Bucket="bkt", Key="k", CopySource=me, MetadataDirective="REPLACE", Metadata={"a": "2"}
        )
        head = c.head_object(Bucket="bkt", Key="k")
        assert head["Metadata"] == {"a": "2"} and head["ETag"] == put["ETag"]
        assert c.get_object(Bucket="bkt", Key="k")["Body"].read() == b"data"

        def copy(**extra: Any) -> Any:
            return c.copy_object(Bucket="bkt", Key="dst", CopySource=me, **extra)

        # Copy-source conditions: every failure is 412 PreconditionFailed.
        for cond in (
            {"CopySourceIfMatch": '"00000000000000000000000000000000"'},
            {"CopySourceIfNoneMatch": put["ETag"]},
            {"CopySourceIfUnmodifiedSince": "2000-01-01T00:00:00Z"},
            {"CopySourceIfModifiedSince": "2999-01-01T00:00:00Z"},
            # If-None-Match fails and If-Modified-Since holds: still 412 (AWS).
            {"CopySourceIfNoneMatch": put["ETag"], "CopySourceIfModifiedSince": "2000-01-01"},
        ):
            assert code_of(lambda k=cond: copy(**k))[:2] == (  # type: ignore[misc]
                "PreconditionFailed",
                412,
            )
        assert code_of(lambda: c.head_object(Bucket="bkt", Key="dst"))[1] == 404
        # If-Match holds and If-Unmodified-Since fails: the copy goes ahead (AWS).
        copy(CopySourceIfMatch=put["ETag"], CopySourceIfUnmodifiedSince="2000-01-01T00:00:00Z")
        copy(CopySourceIfNoneMatch='"other"', CopySourceIfModifiedSince="2000-01-01T00:00:00Z")
        # The destination's own conditions.
        assert code_of(lambda: copy(IfNoneMatch="*"))[:2] == ("PreconditionFailed", 412)
        assert code_of(lambda: copy(IfMatch='"nope"'))[:2] == ("PreconditionFailed", 412)
        copy(IfMatch=put["ETag"])
        fresh = c.copy_object(Bucket="bkt", Key="new", CopySource=me, IfNoneMatch="*")
        assert fresh["CopyObjectResult"]["ETag"] == put["ETag"]

    await asyncio.to_thread(work)


async def test_copy_outside_caveats_is_refused(s3: S3) -> None:
    owner = s3.client()
    await asyncio.to_thread(owner.create_bucket, Bucket="open")
    await asyncio.to_thread(owner.create_bucket, Bucket="secret")
    await asyncio.to_thread(owner.put_object, Bucket="secret", Key="s", Body=b"s")
    await asyncio.to_thread(owner.put_object, Bucket="open", Key="o", Body=b"o")
    key_id, secret = await s3.credentials(KeyCaveat(paths=(CaveatPath("open"),)))
    s3.access_key_id, s3.secret_key = key_id, secret
    c = s3.client()

    def work() -> None:
        c.copy_object(Bucket="open", Key="o2", CopySource={"Bucket": "open", "Key": "o"})
        assert c.get_object(Bucket="open", Key="o2")["Body"].read() == b"o"
        for call in (
            lambda: c.copy_object(
                Bucket="open", Key="x", CopySource={"Bucket": "secret", "Key": "s"}
            ),
            lambda: c.copy_object(
                Bucket="secret", Key="x", CopySource={"Bucket": "open", "Key": "o"}
            ),
        ):
            assert code_of(call)[:2] == ("AccessDenied", 403)
        uid = c.create_multipart_upload(Bucket="open", Key="m")["UploadId"]
        assert code_of(
            lambda: c.upload_part_copy(
                Bucket="open",
                Key="m",
                UploadId=uid,
                PartNumber=1,
                CopySource={"Bucket": "secret", "Key": "s"},
                CopySourceRange="bytes=0-0",
            )
        )[:2] == ("AccessDenied", 403)
        deleted = c.delete_objects(Bucket="open", Delete={"Objects": [{"Key": "o2"}]})
        assert [d["Key"] for d in deleted["Deleted"]] == ["o2"]
        # Per key, as AWS answers a delete the caller may not do.
        refused = c.delete_objects(Bucket="secret", Delete={"Objects": [{"Key": "s"}]})
        assert [(e["Key"], e["Code"]) for e in refused["Errors"]] == [("s", "AccessDenied")]

    await asyncio.to_thread(work)
    assert (await asyncio.to_thread(owner.get_object, Bucket="secret", Key="s"))["ContentLength"]


async def test_delete_objects(s3: S3) -> None:
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="del")
        etags = {
            k: c.put_object(Bucket="del", Key=k, Body=k.encode())["ETag"]
            for k in ("a", "b", "c", "d", "e f")
        }
        verbose = c.delete_objects(
            Bucket="del",
            Delete={
                "Objects": [
                    {"Key": "a"},
                    {"Key": "missing"},
                    {"Key": "b", "ETag": etags["b"]},
                    {"Key": "c", "ETag": '"0123456789abcdef0123456789abcdef"'},
                    {"Key": "d", "VersionId": "3HL4kqtJlcpXroDTDmJ"},
                    {"Key": "e f", "VersionId": "null"},
                ]
            },
        )
        assert sorted(d["Key"] for d in verbose["Deleted"]) == ["a", "b", "e f", "missing"]
        errors = {e["Key"]: e["Code"] for e in verbose["Errors"]}
        assert errors == {"c": "PreconditionFailed", "d": "NoSuchVersion"}
        assert all(e["Message"] for e in verbose["Errors"])
        left = [o["Key"] for o in c.list_objects_v2(Bucket="del")["Contents"]]
        assert left == ["c", "d"]
        quiet = c.delete_objects(
            Bucket="del", Delete={"Objects": [{"Key": "c"}, {"Key": "d"}], "Quiet": True}
        )
        assert "Deleted" not in quiet and "Errors" not in quiet
        assert c.list_objects_v2(Bucket="del").get("Contents") is None
        assert code_of(
            lambda: c.delete_objects(Bucket="nobucket", Delete={"Objects": [{"Key": "a"}]})
        )[:2] == ("NoSuchBucket", 404)

    await asyncio.to_thread(work)


async def test_delete_objects_of_a_thousand_keys_is_one_commit(s3: S3) -> None:
    """``aws s3 rm --recursive`` and rclone delete in batches of 1,000. One
    commit each made a batch cost 1,000 syncs of the metadata log (3.5 s,
    found by review); the batch is one transaction now."""
    if not s3.ctx.db.is_sqlite:
        pytest.skip("PostgreSQL syncs its own commits: there is no sync of ours to count")
    c = s3.client()
    keys = [f"d/{i:04d}" for i in range(1000)]

    async def files() -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        async def one() -> AsyncIterator[bytes]:
            yield b"x"

        for key in keys:
            yield key, one()

    await asyncio.to_thread(c.create_bucket, Bucket="thousand")
    owner = Principal.user((await s3.ctx.accounts.user_named("admin")).user_id)
    pkg = await s3.ctx.packages.resolve(
        owner, PackageRef.by_name("thousand", s3.project_id), Operation.WRITE
    )
    await s3.ctx.objects.upload(owner, pkg.package_id, files())  # one multi-file upload
    syncs = s3.ctx.db.syncs
    done = await asyncio.to_thread(
        c.delete_objects, Bucket="thousand", Delete={"Objects": [{"Key": k} for k in keys]}
    )
    assert sorted(d["Key"] for d in done["Deleted"]) == keys and "Errors" not in done
    assert s3.ctx.db.syncs - syncs <= 2  # the batch's commit (and a request log's, if any)
    listed = await asyncio.to_thread(c.list_objects_v2, Bucket="thousand")
    assert "Contents" not in listed


async def test_delete_objects_refusals(s3: S3) -> None:
    c = s3.client()
    one = {"Objects": [{"Key": "a"}]}

    def delete() -> Any:
        return c.delete_objects(Bucket="del", Delete=one)

    def work() -> None:
        c.create_bucket(Bucket="del")
        c.put_object(Bucket="del", Key="a", Body=b"a")
        # Neither Content-MD5 nor a checksum: InvalidRequest naming both.
        rewrite(
            c,
            "DeleteObjects",
            drop_headers("Content-MD5", "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm"),
        )
        code, status, message = code_of(delete)
        assert (code, status) == ("InvalidRequest", 400)
        assert "Content-MD5" in message and "x-amz-checksum" in message

        def body(data: bytes, digest: str | None = None) -> Callable[[Any], None]:
            def change(request: Any) -> None:
                request.data = data
                drop_headers("Content-MD5", "x-amz-checksum-crc32")(request)
                request.headers["Content-MD5"] = (
                    digest or base64.b64encode(hashlib.md5(data).digest()).decode()
                )

            return change

        # A Content-MD5 alone is accepted; a wrong one is BadDigest.
        xml = b"<Delete><Object><Key>a</Key></Object></Delete>"
        rewrite(c, "DeleteObjects", body(xml))
        assert [d["Key"] for d in delete()["Deleted"]] == ["a"]
        rewrite(c, "DeleteObjects", body(xml, base64.b64encode(b"0" * 16).decode()))
        assert code_of(delete)[:2] == ("BadDigest", 400)
        # A wrong checksum header is BadDigest too.

        def wrong_crc(request: Any) -> None:
            del request.headers["x-amz-checksum-crc32"]
            request.headers["x-amz-checksum-crc32"] = "AAAAAA=="

        rewrite(c, "DeleteObjects", wrong_crc)
        assert code_of(delete)[:2] == ("BadDigest", 400)
        # Malformed documents.
        too_many = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>"
        for bad in (
            b"<Delete><Object><Key>a</Key></Object>",
            b"<Delete></Delete>",
            b"<Delete><Object><VersionId>x</VersionId></Object></Delete>",
            b"<Remove><Object><Key>a</Key></Object></Remove>",
            b'<!DOCTYPE d [<!ENTITY e "x">]><Delete><Object><Key>&e;</Key></Object></Delete>',
            too_many,
        ):
            rewrite(c, "DeleteObjects", body(bad))
            assert code_of(delete)[:2] == ("MalformedXML", 400), bad[:60]

    await asyncio.to_thread(work)


async def test_conditional_delete_object(s3: S3) -> None:
    """DeleteObject's If-Match as AWS evaluates it in a general purpose bucket;
    the directory-bucket conditions (size, last-modified time) are refused and
    delete nothing."""
    c = s3.client()

    def exists(key: str) -> bool:
        return any(o["Key"] == key for o in c.list_objects_v2(Bucket="cond").get("Contents", []))

    def work() -> None:
        c.create_bucket(Bucket="cond")
        etag = c.put_object(Bucket="cond", Key="k", Body=b"data")["ETag"]
        wrong = '"0123456789abcdef0123456789abcdef"'
        assert code_of(lambda: c.delete_object(Bucket="cond", Key="k", IfMatch=wrong))[:2] == (
            "PreconditionFailed",
            412,
        )
        assert exists("k")
        for size, when in ((4, None), (9999, None), (None, "2015-01-01T00:00:00Z")):
            kwargs: dict[str, Any] = {"Bucket": "cond", "Key": "k"}
            if size is not None:
                kwargs["IfMatchSize"] = size
            if when is not None:
                kwargs["IfMatchLastModifiedTime"] = when
            with pytest.raises(ClientError) as e:
                c.delete_object(**kwargs)
            err = e.value.response
            assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (
                "NotImplemented",
                501,
            )
            header = (
                "x-amz-if-match-size" if size is not None else "x-amz-if-match-last-modified-time"
            )
            assert err["Error"]["Header"] == header
            assert exists("k")
        done = c.delete_object(Bucket="cond", Key="k", IfMatch=etag)
        assert done["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert not exists("k")
        # No object: If-Match (an ETag or *) is 404, as AWS answers.
        for value in (etag, "*"):
            missing = code_of(lambda v=value: c.delete_object(Bucket="cond", Key="k", IfMatch=v))
            assert missing[:2] == ("NoSuchKey", 404)
        c.put_object(Bucket="cond", Key="k", Body=b"again")
        c.delete_object(Bucket="cond", Key="k", IfMatch="*")
        assert not exists("k")

    await asyncio.to_thread(work)


async def test_delete_objects_directory_bucket_conditions(s3: S3) -> None:
    """<Size> and <LastModifiedTime> of an <Object> are directory-bucket
    conditions: the whole document is refused and nothing is deleted."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="dconds")
        for key in ("a", "b"):
            c.put_object(Bucket="dconds", Key=key, Body=b"")
        for extra in ({"Size": 0}, {"LastModifiedTime": "2015-01-01T00:00:00Z"}):
            objects: list[dict[str, Any]] = [{"Key": "a"}, {"Key": "b", **extra}]
            assert code_of(
                lambda o=objects: c.delete_objects(Bucket="dconds", Delete={"Objects": o})
            )[:2] == ("MalformedXML", 400)
        left = [o["Key"] for o in c.list_objects_v2(Bucket="dconds")["Contents"]]
        assert left == ["a", "b"]
        # The ETag condition is evaluated per object.
        etag = c.head_object(Bucket="dconds", Key="a")["ETag"]
        result = c.delete_objects(
            Bucket="dconds",
            Delete={"Objects": [{"Key": "a", "ETag": etag}, {"Key": "b", "ETag": '"00"'}]},
        )
        assert [d["Key"] for d in result["Deleted"]] == ["a"]
        assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("b", "PreconditionFailed")]

    await asyncio.to_thread(work)


async def test_copy_with_a_checksum_algorithm_computes_it(s3: S3) -> None:
    """``x-amz-checksum-algorithm`` on CopyObject: the copy carries a
    checksum of that algorithm of the whole object — the source's own if it
    is one, else made (as AWS; the copy then has that one alone,
    FULL_OBJECT). A copy onto itself with REPLACE may add one this way."""
    c = s3.client()
    body = os.urandom(70_000)
    one, two = os.urandom(5 * 1024 * 1024), os.urandom(1234)

    def b64(digest: bytes) -> str:
        return base64.b64encode(digest).decode()

    def work() -> None:
        c.create_bucket(Bucket="sums")
        put = c.put_object(Bucket="sums", Key="src", Body=body)  # CRC32 by default
        copy = c.copy_object(
            Bucket="sums", Key="sha", CopySource="sums/src", ChecksumAlgorithm="SHA256"
        )["CopyObjectResult"]
        assert copy["ChecksumSHA256"] == b64(hashlib.sha256(body).digest())
        assert copy["ChecksumType"] == "FULL_OBJECT" and "ChecksumCRC32" not in copy
        head = c.head_object(Bucket="sums", Key="sha", ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == copy["ChecksumSHA256"] and "ChecksumCRC32" not in head
        assert head["ETag"] == put["ETag"]
        assert c.get_object(Bucket="sums", Key="sha")["Body"].read() == body
        # The source's own value of the algorithm is copied.
        same = c.copy_object(
            Bucket="sums", Key="crc", CopySource="sums/src", ChecksumAlgorithm="CRC32"
        )["CopyObjectResult"]
        assert same["ChecksumCRC32"] == put["ChecksumCRC32"]

        # A multipart source: the copy's value is of the whole object.
        up = c.create_multipart_upload(Bucket="sums", Key="mp", ChecksumAlgorithm="CRC32")
        uid = up["UploadId"]
        parts = [
            c.upload_part(Bucket="sums", Key="mp", UploadId=uid, PartNumber=n, Body=data)
            for n, data in ((1, one), (2, two))
        ]
        listed = [
            {"PartNumber": n, "ETag": p["ETag"], "ChecksumCRC32": p["ChecksumCRC32"]}
            for n, p in enumerate(parts, 1)
        ]
        c.complete_multipart_upload(
            Bucket="sums", Key="mp", UploadId=uid, MultipartUpload={"Parts": listed}
        )
        whole = c.copy_object(
            Bucket="sums", Key="mp-sha1", CopySource="sums/mp", ChecksumAlgorithm="SHA1"
        )["CopyObjectResult"]
        assert whole["ChecksumSHA1"] == b64(hashlib.sha1(one + two).digest())
        # A CopyObject is a new object of one piece (AWS): the MD5 of its
        # bytes as ETag, one part — read once, for the MD5 and the SHA-1.
        assert whole["ETag"] == f'"{hashlib.md5(one + two).hexdigest()}"'
        first = c.get_object(Bucket="sums", Key="mp-sha1", PartNumber=1)
        assert first["Body"].read() == one + two and "PartsCount" not in first
        code = code_of(lambda: c.get_object(Bucket="sums", Key="mp-sha1", PartNumber=2))
        assert code[:2] == ("InvalidPart", 400)  # beyond the last part, as AWS
        # The source keeps its parts.
        assert c.get_object(Bucket="sums", Key="mp", PartNumber=2)["Body"].read() == two
        # Its own algorithm asked for: the whole object's value, not the
        # COMPOSITE one (a CRC made of the parts' CRCs, no byte read).
        again = c.copy_object(
            Bucket="sums", Key="mp-crc", CopySource="sums/mp", ChecksumAlgorithm="CRC32"
        )["CopyObjectResult"]
        assert again["ChecksumCRC32"] == b64(zlib.crc32(one + two).to_bytes(4, "big"))
        assert again["ChecksumType"] == "FULL_OBJECT"

        # Onto itself with REPLACE, to add a checksum; without REPLACE a
        # checksum alone is no change and is refused, as AWS does.
        c.put_object(Bucket="sums", Key="self", Body=b"tiny", Metadata={"colour": "red"})
        code = code_of(
            lambda: c.copy_object(
                Bucket="sums", Key="self", CopySource="sums/self", ChecksumAlgorithm="SHA1"
            )
        )
        assert code[:2] == ("InvalidRequest", 400)
        c.copy_object(
            Bucket="sums",
            Key="self",
            CopySource="sums/self",
            ChecksumAlgorithm="SHA1",
            MetadataDirective="REPLACE",
            Metadata={"colour": "red"},
        )
        head = c.head_object(Bucket="sums", Key="self", ChecksumMode="ENABLED")
        assert head["ChecksumSHA1"] == b64(hashlib.sha1(b"tiny").digest())
        assert head["Metadata"] == {"colour": "red"}
        assert c.get_object(Bucket="sums", Key="self")["Body"].read() == b"tiny"
        bad = code_of(
            lambda: c.copy_object(
                Bucket="sums", Key="x", CopySource="sums/src", ChecksumAlgorithm="MD4"
            )
        )
        assert bad[:2] == ("InvalidArgument", 400)

    await asyncio.to_thread(work)


async def test_a_copy_onto_itself_naming_a_storage_class_or_encryption_is_a_change(
    s3: S3,
) -> None:
    """AWS's refusal of a copy onto itself names metadata, storage class,
    website redirect and encryption: giving a storage class or an
    encryption (what AWS's users do to add a checksum in place) makes it a
    change, though neither can differ here. A checksum alone does not."""
    c = s3.client()

    def work() -> None:
        c.create_bucket(Bucket="inplace")
        c.put_object(Bucket="inplace", Key="k", Body=b"data", Metadata={"a": "1"})
        for extra in ({"StorageClass": "STANDARD"}, {"ServerSideEncryption": "AES256"}):
            c.copy_object(
                Bucket="inplace", Key="k", CopySource="inplace/k", ChecksumAlgorithm="SHA256",
                **extra,
            )  # fmt: skip
            head = c.head_object(Bucket="inplace", Key="k", ChecksumMode="ENABLED")
            assert (
                head["ChecksumSHA256"]
                == base64.b64encode(hashlib.sha256(b"data").digest()).decode()
            )
            assert head["Metadata"] == {"a": "1"}
        code = code_of(
            lambda: c.copy_object(
                Bucket="inplace", Key="k", CopySource="inplace/k", ChecksumAlgorithm="CRC32"
            )
        )
        assert code[:2] == ("InvalidRequest", 400)
        # A storage class this store cannot give is no restatement: AWS moves
        # the object to it, so a success that changed nothing would mislead
        # (the third review caught a first version answering 200).
        for other in ("GLACIER", "BOGUS"):
            code = code_of(
                lambda o=other: c.copy_object(
                    Bucket="inplace", Key="k", CopySource="inplace/k", StorageClass=o
                )
            )
            assert code[:2] == ("InvalidRequest", 400), other

    await asyncio.to_thread(work)


async def test_copy_object_of_a_multipart_source_is_one_piece_as_aws(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS answers a CopyObject of an object uploaded in parts with a new
    object of one piece: the MD5 of its bytes as ETag (rclone and others
    take a 32-digit ETag for it), not the source's ``<md5>-N``. A source over
    5 GiB is refused with AWS's message (it is copied in parts)."""
    c = s3.client()
    one, two = os.urandom(5 * 1024 * 1024), os.urandom(1000)

    def work() -> None:
        c.create_bucket(Bucket="mpc")
        done = multipart_object(c, "mpc", "src", one, two)
        assert done["ETag"].endswith('-2"')
        copy = c.copy_object(Bucket="mpc", Key="dst", CopySource="mpc/src")["CopyObjectResult"]
        md5 = f'"{hashlib.md5(one + two).hexdigest()}"'
        assert copy["ETag"] == md5
        head = c.head_object(Bucket="mpc", Key="dst")
        assert head["ETag"] == md5 and head["ContentLength"] == len(one + two)
        assert c.get_object(Bucket="mpc", Key="dst")["Body"].read() == one + two
        # Onto itself to replace its metadata: the same (a new object).
        c.copy_object(
            Bucket="mpc",
            Key="src",
            CopySource="mpc/src",
            MetadataDirective="REPLACE",
            Metadata={"k": "v"},
        )
        assert c.head_object(Bucket="mpc", Key="src")["ETag"] == md5
        listed = c.list_objects_v2(Bucket="mpc")["Contents"]
        assert [o["ETag"] for o in listed] == [md5, md5]
        monkeypatch.setattr(copy_checksum, "MAX_READ_FOR_COPY", 1000)
        code, status, message = code_of(
            lambda: c.copy_object(Bucket="mpc", Key="big", CopySource="mpc/dst")
        )
        assert (code, status) == ("InvalidRequest", 400)
        assert "larger than the maximum allowable size for a copy source: 1000" in message
        assert "Contents" not in c.list_objects_v2(Bucket="mpc", Prefix="big")

    await asyncio.to_thread(work)


async def test_a_long_copy_answers_200_at_once_then_its_result_or_error(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy that reads its source (a multipart one, for its MD5) can take
    minutes: as AWS, the 200 goes at once, spaces keep the connection alive,
    then the result, or an <Error> inside the 200 that botocore raises."""
    c = s3.client()
    one, two = os.urandom(5 * 1024 * 1024), b"end"
    spaces: list[bytes] = []
    kept_alive = asyncio.Event()
    patience = ops_copy._patience

    async def observed(task: Any, every: float) -> AsyncIterator[bytes]:
        async for space in patience(task, every):
            spaces.append(space)
            kept_alive.set()
            yield space

    real_read = objects_module.read_digests
    delete_meanwhile: list[bool] = []

    async def slow_read(*args: Any, **kwargs: Any) -> Any:
        await kept_alive.wait()  # the read "takes long": spaces went out meanwhile
        digest = await real_read(*args, **kwargs)
        if delete_meanwhile:
            principal = Principal.user((await s3.ctx.accounts.user_named("admin")).user_id)
            src = ObjectAddress(PackageRef.by_name("slowcopy", s3.project_id), "src")
            await s3.ctx.objects.delete(principal, DeleteObject(src))
        return digest

    def work() -> None:
        c.create_bucket(Bucket="slowcopy")
        multipart_object(c, "slowcopy", "src", one, two)

    await asyncio.to_thread(work)
    monkeypatch.setattr(ops_copy, "PATIENCE", 0.0)
    monkeypatch.setattr(ops_copy, "KEEPALIVE_EVERY", 0.001)
    monkeypatch.setattr(ops_copy, "_patience", observed)
    monkeypatch.setattr(objects_module, "read_digests", slow_read)
    copy = await asyncio.to_thread(
        c.copy_object, Bucket="slowcopy", Key="dst", CopySource="slowcopy/src"
    )
    assert spaces and copy["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert copy["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(one + two).hexdigest()}"'
    # The source deleted while it was read: the error comes inside the 200.
    kept_alive.clear()
    spaces.clear()
    delete_meanwhile.append(True)
    code, _, message = await asyncio.to_thread(
        code_of, lambda: c.copy_object(Bucket="slowcopy", Key="dst2", CopySource="slowcopy/src")
    )
    assert spaces and code == "NoSuchKey", (code, message)
    listed = await asyncio.to_thread(c.list_objects_v2, Bucket="slowcopy")
    assert [o["Key"] for o in listed["Contents"]] == ["dst"]
