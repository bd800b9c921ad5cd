"""Hostile input on the S3 endpoint: NUL and '..' in keys, over-long keys,
absurd numbers, oversized and entity-laden XML, bucket names that try to
leave their place. Each is refused with an S3 error naming the problem, and
nothing is stored."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from jointcloud.api.s3.app import create_app
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.keys.grant import new_grant

HOST = "http://s3.test"


class Signed:
    def __init__(self, client: httpx.AsyncClient, key_id: str, secret: str) -> None:
        self.client = client
        self.creds = Credentials(key_id, secret)

    async def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        request = AWSRequest(method=method, url=HOST + path, data=body, headers=headers or {})
        request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
        S3SigV4Auth(self.creds, "s3", "us-east-1").add_auth(request)
        return await self.client.request(
            method, path, content=body, headers=dict(request.headers.items())
        )


@pytest.fixture
async def s3(ctx: Context) -> AsyncIterator[Signed]:
    admin = await ctx.accounts.user_named("admin")
    owner = Principal.user(admin.user_id)
    project = await ctx.buckets.create(owner, "hostile")
    _, key = await ctx.project_keys.create(owner, project.bucket_id, "k")
    grant = new_grant(ctx.settings.satellite_url(), key, "pw", project.project_id)
    made = await ctx.access.register(grant.serialize())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx)), base_url=HOST
    ) as client:
        signed = Signed(client, made.access_key_id, made.secret_key)
        assert (await signed.send("PUT", "/bkt")).status_code == 200
        yield signed


def code(r: httpx.Response) -> str:
    text = r.text
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""


async def _keys(s3: Signed) -> list[str]:
    r = await s3.send("GET", "/bkt?list-type=2")
    assert r.status_code == 200
    return [part.split("</Key>")[0] for part in r.text.split("<Key>")[1:]]


@pytest.mark.parametrize(
    ("path", "want"),
    [
        # NUL and C1 controls (AWS: InvalidURI), bytes that are not UTF-8.
        ("/bkt/a%00b", "InvalidURI"),
        ("/bkt/a%C2%85b", "InvalidURI"),
        ("/bkt/%AE%8A-", "InvalidURI"),
        ("/bkt/" + "k" * 1025, "KeyTooLongError"),
    ],
)
async def test_bad_keys_are_refused(s3: Signed, path: str, want: str) -> None:
    r = await s3.send("PUT", path, b"data")
    assert r.status_code == 400 and code(r) == want, r.text
    assert await _keys(s3) == []


# Keys are opaque on S3: what looks like a path trick is a name of its own,
# never normalised into another key (dot segments encoded, as a client that
# does not normalise sends them).
ODD_KEYS = ["a/%2E%2E/b", "%2E%2E", "%2E/x", "%2Flead", "a%5Cb", "asdf/", "x//y", "s" * 300]


async def test_odd_keys_are_distinct_objects(s3: Signed) -> None:
    plain = ["a/b", "b", "x", "lead", "x/y", "asdf"]
    for key in plain + ODD_KEYS:
        r = await s3.send("PUT", f"/bkt/{key}", key.encode())
        assert r.status_code == 200, (key, r.text)
    for key in plain + ODD_KEYS:
        r = await s3.send("GET", f"/bkt/{key}")
        assert r.status_code == 200 and r.content == key.encode(), key
    decoded = sorted(unquote(k) for k in plain + ODD_KEYS)
    assert await _keys(s3) == sorted(decoded, key=str.encode)


@pytest.mark.parametrize(
    ("query", "status", "want"),
    [
        ("list-type=2&max-keys=-1", 400, "InvalidArgument"),
        ("list-type=2&max-keys=abc", 400, "InvalidArgument"),
        ("list-type=2&max-keys=" + "9" * 40, 200, ""),  # served as 1000, as S3
        ("list-type=2&continuation-token=not-ours", 400, "InvalidArgument"),
        ("list-type=2&encoding-type=evil", 400, "InvalidArgument"),
    ],
)
async def test_listing_parameters(s3: Signed, query: str, status: int, want: str) -> None:
    r = await s3.send("GET", "/bkt?" + query)
    assert r.status_code == status and code(r) == want, r.text


@pytest.mark.parametrize("number", ["0", "10001", "-1", "9" * 40, "x"])
async def test_part_numbers_out_of_range(s3: Signed, number: str) -> None:
    r = await s3.send("POST", "/bkt/big?uploads")
    upload = r.text.split("<UploadId>")[1].split("</UploadId>")[0]
    r = await s3.send("PUT", f"/bkt/big?partNumber={number}&uploadId={upload}", b"x")
    assert r.status_code == 400 and code(r) == "InvalidArgument", r.text


def _md5(body: bytes) -> dict[str, Any]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


async def test_hostile_xml_is_refused(s3: Signed) -> None:
    await s3.send("PUT", "/bkt/keep", b"x")
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<Delete><Object><Key>&b;</Key></Object></Delete>"
    )
    huge = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 60_000 + b"</Delete>"
    for body in (laughs, huge, b"<Delete><Object><Key>k</Key>", b"not xml"):
        r = await s3.send("POST", "/bkt?delete", body, _md5(body))
        assert r.status_code == 400 and code(r) == "MalformedXML", (body[:40], r.text)
    assert await _keys(s3) == ["keep"]


async def test_hostile_encryption_configurations_are_refused(s3: Signed) -> None:
    """PutBucketEncryption parses a document like any other: capped,
    entities refused, and nothing but AES256 taken."""
    await s3.send("PUT", "/bkt/keep", b"x")
    rule = (
        b"<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm>"
        b"</ApplyServerSideEncryptionByDefault></Rule>"
    )
    huge = (
        b"<ServerSideEncryptionConfiguration>"
        + rule * 1000
        + b"</ServerSideEncryptionConfiguration>"
    )
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "AES256">]>'
        b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"
        b"<SSEAlgorithm>&a;</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule>"
        b"</ServerSideEncryptionConfiguration>"
    )
    for body in (huge, laughs, b"<ServerSideEncryptionConfiguration>", b"\x00" * 10):
        r = await s3.send("PUT", "/bkt?encryption", body, _md5(body))
        assert r.status_code == 400 and code(r) == "MalformedXML", (body[:40], r.text)
    assert await _keys(s3) == ["keep"]


@pytest.mark.parametrize(
    "name",
    [
        "%2E%2E",
        "a..b",
        "UPPER",
        "x" * 64,
        "a_b",
        "192.168.1.1",
        # AWS's reserved prefixes and suffixes; "--x-s3" is a directory
        # bucket to the AWS SDKs, which could never reach it here.
        "xn--abc",
        "sthree-abc",
        "amzn-s3-demo-bucket",
        "abc-s3alias",
        "abc--ol-s3",
        "abc.mrap",
        "abc--usw2-az1--x-s3",
        "abc--table-s3",
        "plain-an",
    ],
)
async def test_bucket_names_aws_would_refuse(s3: Signed, name: str) -> None:
    r = await s3.send("PUT", f"/{name}")
    assert r.status_code == 400 and code(r) == "InvalidBucketName", r.text
    assert (await s3.send("GET", "/")).text.count(f"<Name>{name}</Name>") == 0


async def test_bucket_namespace_header(s3: Signed) -> None:
    """``global`` is every bucket here; an account regional namespace (the
    AWS CLI asks for one for ``mb s3://name-an``) is not supported, and any
    other value is refused: neither is taken silently."""
    ok = await s3.send("PUT", "/in-global", headers={"x-amz-bucket-namespace": "global"})
    assert ok.status_code == 200, ok.text
    regional = await s3.send(
        "PUT",
        "/pre-111122223333-us-east-1-an",
        headers={"x-amz-bucket-namespace": "account-regional"},
    )
    assert regional.status_code == 501 and code(regional) == "NotImplemented", regional.text
    # A name that cannot be one: AWS's refusal (the AWS CLI's own suite).
    short = await s3.send("PUT", "/xyz-an", headers={"x-amz-bucket-namespace": "account-regional"})
    assert short.status_code == 400 and code(short) == "InvalidBucketNamespace", short.text
    bogus = await s3.send("PUT", "/bogus-ns", headers={"x-amz-bucket-namespace": "bogus"})
    assert bogus.status_code == 400 and code(bogus) == "InvalidArgument", bogus.text
    listed = (await s3.send("GET", "/")).text
    assert "<Name>in-global</Name>" in listed and "bogus-ns" not in listed


async def test_copy_source_cannot_climb_out(s3: Signed) -> None:
    await s3.send("PUT", "/bkt/src", b"x")
    for source in ("/bkt/%2E%2E/etc/passwd", "bkt/%2e%2e/x", "/bkt/a%00b"):
        r = await s3.send("PUT", "/bkt/dst", headers={"x-amz-copy-source": source})
        assert r.status_code in (400, 404), (source, r.text)
    assert await _keys(s3) == ["src"]


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        ({}, "InvalidRequest"),  # no attributes asked for
        ({"x-amz-object-attributes": "ETag,Evil"}, "InvalidArgument"),
        ({"x-amz-object-attributes": "ETag", "x-amz-max-parts": "-1"}, "InvalidArgument"),
        ({"x-amz-object-attributes": "ETag", "x-amz-max-parts": "0x10"}, "InvalidArgument"),
        ({"x-amz-object-attributes": "ETag", "x-amz-part-number-marker": "9" * 5000},
         "InvalidArgument"),
    ],
)  # fmt: skip
async def test_object_attributes_headers(s3: Signed, headers: dict[str, str], want: str) -> None:
    assert (await s3.send("PUT", "/bkt/k", b"data")).status_code == 200
    r = await s3.send("GET", "/bkt/k?attributes", headers=headers)
    assert r.status_code == 400 and code(r) == want, r.text


@pytest.mark.parametrize("value", ["0", "10001", "-1", "²", "9" * 5000])
async def test_list_buckets_page_sizes(s3: Signed, value: str) -> None:
    r = await s3.send("GET", "/?max-buckets=" + quote(value))
    assert r.status_code == 400 and code(r) == "InvalidArgument", r.text


async def test_an_unsigned_chunked_encoding_does_not_skip_the_payload_hash(s3: Signed) -> None:
    """Found by fuzzing: a SigV4 request signed with the SHA-256 of one body,
    sent with ``Content-Encoding: aws-chunked`` added after signing and
    another body framed in chunks, was stored (and a DeleteObjects document
    run) without the signed hash being checked."""

    async def forged(method: str, path: str, signed_body: bytes, sent: bytes) -> httpx.Response:
        request = AWSRequest(method=method, url=HOST + path, data=signed_body)
        request.headers["x-amz-content-sha256"] = hashlib.sha256(signed_body).hexdigest()
        request.headers["x-amz-decoded-content-length"] = str(len(sent))
        S3SigV4Auth(s3.creds, "s3", "us-east-1").add_auth(request)
        headers = dict(request.headers.items())
        headers["Content-Encoding"] = "aws-chunked"  # not signed
        framed = b"%x\r\n" % len(sent) + sent + b"\r\n0\r\n\r\n"
        return await s3.client.request(method, path, content=framed, headers=headers)

    r = await forged("PUT", "/bkt/k", b"expected", b"forged!")
    assert r.status_code == 400 and code(r) == "XAmzContentSHA256Mismatch", r.text
    assert (await s3.send("GET", "/bkt/k")).status_code == 404

    assert (await s3.send("PUT", "/bkt/victim", b"keep me")).status_code == 200
    meant = b"<Delete><Object><Key>other</Key></Object></Delete>"
    sent = b"<Delete><Object><Key>victim</Key></Object></Delete>"
    r = await forged("POST", "/bkt?delete", meant, sent)
    assert r.status_code == 400 and code(r) == "XAmzContentSHA256Mismatch", r.text
    assert (await s3.send("GET", "/bkt/victim")).content == b"keep me"
    # Signed for what is sent, the same framing is taken.
    r = await forged("PUT", "/bkt/k", b"honest!", b"honest!")
    assert r.status_code == 200, r.text
    assert (await s3.send("GET", "/bkt/k")).content == b"honest!"
