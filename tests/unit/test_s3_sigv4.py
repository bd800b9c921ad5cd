"""SigV4 verification: AWS's published examples are the authority; requests
signed by botocore (and awscrt) must verify; tampering with any signed part
must not."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from jointcloud.api.s3.sigv4 import (
    EMPTY_SHA256,
    AuthKind,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    ExpiredRequest,
    HeadersNotSigned,
    InvalidArgument,
    InvalidRequest,
    PayloadMode,
    RequestTimeTooSkewed,
    S3AuthError,
    Scope,
    SignatureDoesNotMatch,
    SignedRequest,
    V4Auth,
    XAmzContentSHA256Mismatch,
    canonical_requests,
    derive_signing_key,
    detect_auth,
    parse_v4,
    sign,
    split_query,
    string_to_sign,
    verify_v4,
)
from jointcloud.errors import AccessDenied, BadDigest, SignatureMismatch

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_TIME = dt.datetime(2013, 5, 24, tzinfo=dt.UTC)


def doc_request(
    method: str, path: str, query: str, headers: list[tuple[str, str]]
) -> SignedRequest:
    return SignedRequest(method, path, split_query(query), headers)


# --- AWS documentation examples (S3 API reference, SigV4) ---------------------
# "Signature Calculations for the Authorization Header: Transferring Payload in
# a Single Chunk" and "Authenticating Requests: Using Query Parameters".

DOC_EXAMPLES = {
    "GET object (range)": doc_request(
        "GET",
        "/test.txt",
        "",
        [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            ),
        ],
    ),
    "PUT object": doc_request(
        "PUT",
        "/test$file.text",
        "",
        [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "x-amz-content-sha256",
                hashlib.sha256(b"Welcome to Amazon S3.").hexdigest(),
            ),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request, "
                "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
                "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            ),
        ],
    ),
    "GET bucket lifecycle": doc_request(
        "GET",
        "/",
        "lifecycle",
        [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
        ],
    ),
    "GET bucket (list objects)": doc_request(
        "GET",
        "/",
        "max-keys=2&prefix=J",
        [
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ],
    ),
    "presigned GET": doc_request(
        "GET",
        "/test.txt",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={AKID}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        [("Host", "examplebucket.s3.amazonaws.com")],
    ),
    # "Transferring Payload in Multiple Chunks": the seed request.
    "chunked PUT seed": doc_request(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        [
            ("Host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("Content-Length", "66824"),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request, "
                "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;"
                "x-amz-date;x-amz-decoded-content-length;x-amz-storage-class, "
                "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
def test_aws_documentation_examples_verify(name: str) -> None:
    req = DOC_EXAMPLES[name]
    auth = parse_v4(req)
    assert auth.access_key_id == AKID
    assert auth.scope == Scope("20130524", "us-east-1")
    ctx = verify_v4(req, auth, SECRET, DOC_TIME + dt.timedelta(minutes=5), region="us-east-1")
    assert ctx.seed_signature == auth.signature
    assert ctx.signing_key == derive_signing_key(SECRET, auth.scope)


def test_documented_payload_modes() -> None:
    assert parse_v4(DOC_EXAMPLES["chunked PUT seed"]).payload is PayloadMode.STREAMING_SIGNED
    assert parse_v4(DOC_EXAMPLES["presigned GET"]).payload is PayloadMode.UNSIGNED
    put = parse_v4(DOC_EXAMPLES["PUT object"])
    assert put.payload is PayloadMode.SHA256
    assert put.request_time == DOC_TIME


def test_documented_canonical_request_of_get_object() -> None:
    req = DOC_EXAMPLES["GET object (range)"]
    assert canonical_requests(req, parse_v4(req))[0] == (
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        f"x-amz-content-sha256:{EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\n"
        f"host;range;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256}"
    )


def test_wrong_secret_fails_every_doc_example() -> None:
    for req in DOC_EXAMPLES.values():
        with pytest.raises(SignatureDoesNotMatch) as caught:
            verify_v4(req, parse_v4(req), SECRET + "x", DOC_TIME)
        assert caught.value.canonical_request.startswith(req.method)
        assert isinstance(caught.value, SignatureMismatch)


# --- the AWS signing test suite (aws-c-auth/tests/aws-signing-test-suite/v4) --
# Generic (non-S3) vectors whose paths need no encoding, so S3's rules
# coincide: (request line, headers, signature of the header-signed form).

SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_SCOPE = Scope("20150830", "us-east-1", "service")
SUITE = {
    "get-vanilla": (
        "GET",
        "/",
        "",
        [],
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    "get-unreserved": (
        "GET",
        "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        "",
        [],
        "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    ),
    "get-utf8": ("GET", "/ሴ", "", [], None),
    "get-vanilla-query-order-key-case": (
        "GET",
        "/",
        "Param2=value2&Param1=value1",
        [],
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    "get-vanilla-query-unreserved": (
        "GET",
        "/",
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        [],
        "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    ),
    "get-vanilla-empty-query-key": (
        "GET",
        "/",
        "Param1=value1",
        [],
        "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    ),
    "get-vanilla-utf8-query": (
        "GET",
        "/",
        "ሴ=bar",
        [],
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    "get-header-value-trim": (
        "GET",
        "/",
        "",
        [("My-Header1", " value1"), ("My-Header2", ' "a   b   c"')],
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    "get-header-key-duplicate": (
        "GET",
        "/",
        "",
        [("My-Header1", "value2"), ("My-Header1", "value2"), ("My-Header1", "value1")],
        "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    ),
    "get-header-value-order": (
        "GET",
        "/",
        "",
        [
            ("My-Header1", "value4"),
            ("My-Header1", "value1"),
            ("My-Header1", "value3"),
            ("My-Header1", "value2"),
        ],
        "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    ),
    "post-vanilla-query": (
        "POST",
        "/",
        "Param1=value1",
        [],
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    ),
    "post-header-key-sort": (
        "POST",
        "/",
        "",
        [("My-Header1", "value1")],
        "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    ),
}


@pytest.mark.parametrize("name", sorted(SUITE))
def test_aws_signing_test_suite(name: str) -> None:
    method, path, query, extra, signature = SUITE[name]
    headers = [("Host", "example.amazonaws.com"), *extra, ("X-Amz-Date", "20150830T123600Z")]
    names = tuple(sorted({key.lower() for key, _ in headers}))
    req = SignedRequest(method, path, split_query(query), headers)
    auth = V4Auth(
        access_key_id="AKIDEXAMPLE",
        scope=SUITE_SCOPE,
        signed_headers=names,
        signature="0" * 64,
        presigned=False,
        amz_date="20150830T123600Z",
        request_time=dt.datetime(2015, 8, 30, 12, 36, tzinfo=dt.UTC),
        expires=None,
        payload_hash=EMPTY_SHA256,
        payload=PayloadMode.SHA256,
        security_token=None,
    )
    canonical = canonical_requests(req, auth)[0]
    if name == "get-utf8":  # the suite's expected canonical URI
        assert canonical.split("\n")[1] == "/%E1%88%B4"
        return
    if name == "get-vanilla-utf8-query":
        assert canonical.split("\n")[2] == "%E1%88%B4=bar"
    sts = string_to_sign(auth.amz_date, SUITE_SCOPE, canonical)
    assert sign(derive_signing_key(SUITE_SECRET, SUITE_SCOPE), sts) == signature


# --- botocore signs, we verify ------------------------------------------------

CREDS = Credentials(AKID, SECRET)


def to_signed(request: Any) -> SignedRequest:
    """A botocore AWSRequest / AWSPreparedRequest as the server receives it."""
    prepared = request.prepare() if isinstance(request, AWSRequest) else request
    parts = urlsplit(prepared.url)
    headers = [
        (key, value.decode() if isinstance(value, bytes) else value)
        for key, value in prepared.headers.items()
    ]
    if not any(key.lower() == "host" for key, _ in headers):
        headers.append(("Host", parts.netloc))
    return SignedRequest(prepared.method, parts.path, split_query(parts.query), headers)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


SIGNERS: dict[str, Callable[[AWSRequest], None]] = {
    "SigV4Auth": lambda r: SigV4Auth(CREDS, "s3", "eu-west-1").add_auth(r),
    "S3SigV4Auth": lambda r: S3SigV4Auth(CREDS, "s3", "eu-west-1").add_auth(r),
    "S3SigV4QueryAuth": lambda r: S3SigV4QueryAuth(CREDS, "s3", "eu-west-1", 900).add_auth(r),
}

PATHS = [
    "/bucket/plain.txt",
    "/bucket/a%20b%2Bc%26d%3De%21%27%28%29%2A",
    "/bucket/%E4%B8%AD%E6%96%87/%C3%A9t%C3%A9",
    "/bucket/dir//double/./dot/../x",
    "/bucket/tilde~and-_.",
]


def botocore_request(path: str, method: str = "PUT", body: bytes | None = None) -> AWSRequest:
    return AWSRequest(
        method=method,
        url=f"https://s3.example.test{path}?uploadId=abc%2F%3D&partNumber=3&acl&x=a%20b",
        headers={
            "Content-Type": "text/plain",
            "x-amz-meta-note": "  spaced   out  ",
            "x-amz-content-sha256": hashlib.sha256(b"hello").hexdigest(),
        },
        data=body,
    )


# The generic SigV4Auth double-encodes and normalises the path, which S3 does
# not: it is checked on the plain path only; the S3 signers on every path.
@pytest.mark.parametrize(
    ("signer", "path"),
    [
        (signer, path)
        for signer in sorted(SIGNERS)
        for path in PATHS
        if signer != "SigV4Auth" or path == PATHS[0]
    ],
)
def test_botocore_signed_requests_verify(signer: str, path: str) -> None:
    request = botocore_request(path, body=None if "Query" in signer else b"hello")
    SIGNERS[signer](request)
    req = to_signed(request)
    kind = detect_auth(req)
    assert kind is (AuthKind.V4_QUERY if "Query" in signer else AuthKind.V4_HEADER)
    auth = parse_v4(req)
    ctx = verify_v4(req, auth, SECRET, now(), region="eu-west-1")
    assert ctx.access_key_id == AKID
    assert ctx.payload is PayloadMode.SHA256  # botocore signed the header we set
    if "Query" not in signer:
        ctx.check_payload_sha256(hashlib.sha256(b"hello").hexdigest())
        with pytest.raises(XAmzContentSHA256Mismatch) as caught:
            ctx.check_payload_sha256(hashlib.sha256(b"hellO").hexdigest())
        assert isinstance(caught.value, BadDigest)


def _replace_header(req: SignedRequest, name: str, value: str) -> SignedRequest:
    headers = [(k, value if k.lower() == name else v) for k, v in req.headers]
    return dataclasses.replace(req, headers=headers)


def _replace_query(req: SignedRequest, name: str, value: str) -> SignedRequest:
    query = [(k, value if k == name else v) for k, v in req.query]
    return dataclasses.replace(req, query=query)


TAMPERS: dict[str, Callable[[SignedRequest], SignedRequest]] = {
    "method": lambda r: dataclasses.replace(r, method="POST"),
    "path": lambda r: dataclasses.replace(r, path=r.path + "x"),
    "path case": lambda r: dataclasses.replace(r, path=r.path.upper()),
    "query value": lambda r: _replace_query(r, "partNumber", "4"),
    "query added": lambda r: dataclasses.replace(r, query=[*r.query, ("versionId", "1")]),
    "query dropped": lambda r: dataclasses.replace(
        r, query=[(k, v) for k, v in r.query if k != "acl"]
    ),
    "signed header": lambda r: _replace_header(r, "content-type", "text/html"),
    "host": lambda r: _replace_header(r, "host", "evil.example.test"),
    "amz meta": lambda r: _replace_header(r, "x-amz-meta-note", "other"),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
@pytest.mark.parametrize("signer", sorted(SIGNERS))
def test_tampering_fails(signer: str, tamper: str) -> None:
    request = botocore_request("/bucket/key")
    SIGNERS[signer](request)
    req = TAMPERS[tamper](to_signed(request))
    with pytest.raises(SignatureDoesNotMatch):
        verify_v4(req, parse_v4(req), SECRET, now())


def test_tampered_payload_hash_and_date_fail() -> None:
    request = botocore_request("/bucket/key")
    SIGNERS["S3SigV4Auth"](request)
    req = to_signed(request)
    other = hashlib.sha256(b"other").hexdigest()
    for bad in (
        _replace_header(req, "x-amz-content-sha256", other),
        _replace_header(req, "x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ):
        with pytest.raises(SignatureDoesNotMatch):
            verify_v4(bad, parse_v4(bad), SECRET, now())
    amz_date = req.header("x-amz-date")
    assert amz_date is not None
    seconds = (int(amz_date[13:15]) + 1) % 60
    bad = _replace_header(req, "x-amz-date", f"{amz_date[:13]}{seconds:02d}Z")
    with pytest.raises(SignatureDoesNotMatch):
        verify_v4(bad, parse_v4(bad), SECRET, now())


def test_presigned_tampering_and_expiry() -> None:
    request = botocore_request("/bucket/key", method="GET")
    SIGNERS["S3SigV4QueryAuth"](request)
    req = to_signed(request)
    auth = parse_v4(req)
    assert auth.expires == 900
    verify_v4(req, auth, SECRET, now())
    other_date = f"{auth.amz_date[:13]}{(int(auth.amz_date[13:15]) + 1) % 60:02d}Z"
    for name, value in (("X-Amz-Expires", "901"), ("X-Amz-Date", other_date)):
        bad = _replace_query(req, name, value)
        with pytest.raises(SignatureDoesNotMatch):
            verify_v4(bad, parse_v4(bad), SECRET, auth.request_time)
    with pytest.raises(ExpiredRequest) as expired:
        verify_v4(req, auth, SECRET, auth.request_time + dt.timedelta(seconds=901))
    assert isinstance(expired.value, AccessDenied)
    assert expired.value.s3_code == "AccessDenied"
    with pytest.raises(ExpiredRequest, match="not valid yet"):
        verify_v4(req, auth, SECRET, auth.request_time - dt.timedelta(minutes=16))
    # Exactly at the end is still valid.
    verify_v4(req, auth, SECRET, auth.request_time + dt.timedelta(seconds=900))


def test_presigned_dates_at_the_ends_of_the_calendar_are_refused() -> None:
    """Found by the time review: an X-Amz-Date in the first 15 minutes of
    the year 1 made "request time minus the skew" fall before any datetime:
    500 and a traceback, not 403. The last second of 9999 plus the expiry
    would overflow the same way."""
    request = botocore_request("/bucket/key", method="GET")
    SIGNERS["S3SigV4QueryAuth"](request)
    req = to_signed(request)
    for amz_date, why in (("00010101T000000Z", "expired"), ("99991231T235959Z", "not valid yet")):
        bad = _replace_query(req, "X-Amz-Date", amz_date)
        credential = req.query_values("X-Amz-Credential")[0].replace(
            req.query_values("X-Amz-Date")[0][:8], amz_date[:8]
        )
        bad = _replace_query(bad, "X-Amz-Credential", credential)
        with pytest.raises(ExpiredRequest, match=why):
            verify_v4(bad, parse_v4(bad), SECRET, now())


def test_presign_expiry_limit() -> None:
    def presigned(expires: int) -> SignedRequest:
        request = AWSRequest(method="GET", url="https://s3.example.test/b/k")
        S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires).add_auth(request)
        return to_signed(request)

    parse_v4(presigned(604800))
    # Out of range is refused as expired (403), as ceph's s3-tests expect of AWS.
    with pytest.raises(ExpiredRequest, match="less than a week"):
        parse_v4(presigned(604801))
    req = _replace_query(presigned(60), "X-Amz-Expires", "-1")
    with pytest.raises(ExpiredRequest, match="non-negative"):
        parse_v4(req)
    req = _replace_query(presigned(60), "X-Amz-Expires", "soon")
    with pytest.raises(AuthorizationQueryParametersError, match="number"):
        parse_v4(req)


def test_clock_skew_for_header_auth() -> None:
    request = botocore_request("/bucket/key")
    SIGNERS["S3SigV4Auth"](request)
    req = to_signed(request)
    auth = parse_v4(req)
    verify_v4(req, auth, SECRET, auth.request_time + dt.timedelta(minutes=15))
    verify_v4(req, auth, SECRET, auth.request_time - dt.timedelta(minutes=15))
    for delta in (dt.timedelta(minutes=15, seconds=1), -dt.timedelta(minutes=15, seconds=1)):
        with pytest.raises(RequestTimeTooSkewed) as caught:
            verify_v4(req, auth, SECRET, auth.request_time + delta)
        assert caught.value.s3_code == "RequestTimeTooSkewed"


def test_wrong_region_is_named() -> None:
    req = DOC_EXAMPLES["GET object (range)"]
    with pytest.raises(AuthorizationHeaderMalformed, match="'us-east-1' is wrong; expecting"):
        verify_v4(req, parse_v4(req), SECRET, DOC_TIME, region="eu-central-1")


def test_unsigned_amz_headers_are_refused() -> None:
    request = botocore_request("/bucket/key")
    SIGNERS["S3SigV4Auth"](request)
    req = to_signed(request)
    req = dataclasses.replace(req, headers=[*req.headers, ("x-amz-copy-source", "/b/secret")])
    with pytest.raises(HeadersNotSigned) as caught:
        verify_v4(req, parse_v4(req), SECRET, now())
    assert caught.value.headers == ("x-amz-copy-source",)
    # A presigned URL may not gain x-amz-* headers either (but may carry
    # an unsigned x-amz-content-sha256, which it does not use).
    request = botocore_request("/bucket/key", method="GET")
    SIGNERS["S3SigV4QueryAuth"](request)
    req = to_signed(request)
    verify_v4(req, parse_v4(req), SECRET, now())
    bad = dataclasses.replace(req, headers=[*req.headers, ("X-Amz-Meta-Added", "1")])
    with pytest.raises(HeadersNotSigned):
        verify_v4(bad, parse_v4(bad), SECRET, now())


# --- boto3 clients as users run them ------------------------------------------


class Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


def capture(config: Config, call: Callable[[Any], object], endpoint: str) -> Any:
    import boto3

    client = boto3.client(
        "s3",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        endpoint_url=endpoint,
        config=config,
    )

    def grab(request: Any, **_: object) -> None:
        raise Captured(request)

    client.meta.events.register("before-send.s3", grab)
    with pytest.raises(Captured) as caught:
        call(client)
    return caught.value.request


# Virtual-host addressing needs a host name: not with an IP endpoint.
@pytest.mark.parametrize(
    ("endpoint", "addressing"),
    [
        ("http://127.0.0.1:7891", "path"),
        ("https://s3.example.test", "path"),
        ("https://s3.example.test", "virtual"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.put_object(Bucket="bkt", Key="a b/ü+x?", Body=b"data" * 100),
        lambda c: c.list_objects_v2(Bucket="bkt", Prefix="a b/", Delimiter="/", MaxKeys=5),
        lambda c: c.get_object(Bucket="bkt", Key="k", Range="bytes=0-1", VersionId="v+1"),
        lambda c: c.put_object_tagging(
            Bucket="bkt", Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}
        ),
        lambda c: c.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "k"}]}),
    ],
)
def test_boto3_client_requests_verify(
    call: Callable[[Any], object], endpoint: str, addressing: str
) -> None:
    config = Config(signature_version="s3v4", s3={"addressing_style": addressing})
    request = capture(config, call, endpoint)
    req = to_signed(request)
    auth = parse_v4(req)
    ctx = verify_v4(req, auth, SECRET, now(), region="us-east-1")
    assert ctx.payload is auth.payload


def test_boto3_presigned_urls_verify() -> None:
    import boto3

    client = boto3.client(
        "s3",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:7891",
        config=Config(signature_version="s3v4"),
    )
    for method, params in (
        ("get_object", {"Bucket": "b", "Key": "dir/ä b+c", "ResponseContentType": "a/b c"}),
        ("put_object", {"Bucket": "b", "Key": "k", "ContentType": "text/plain"}),
        ("upload_part", {"Bucket": "b", "Key": "k", "UploadId": "u/1=", "PartNumber": 2}),
    ):
        url = client.generate_presigned_url(method, Params=params, ExpiresIn=3600)
        parts = urlsplit(url)
        headers = [("Host", parts.netloc)]
        if method == "put_object":
            headers.append(("Content-Type", "text/plain"))
        req = SignedRequest(
            "PUT" if method != "get_object" else "GET",
            parts.path,
            split_query(parts.query),
            headers,
        )
        ctx = verify_v4(req, parse_v4(req), SECRET, now())
        assert ctx.payload is PayloadMode.UNSIGNED


def test_awscrt_signed_request_verifies() -> None:
    from awscrt import auth as crt_auth
    from awscrt.http import HttpHeaders, HttpRequest

    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    request = HttpRequest(
        "PUT",
        "/bucket/k%20ey%2B1?tagging=&x=y%2Fz",
        HttpHeaders([("Host", "s3.example.test"), ("x-amz-meta-a", "b")]),
    )
    config = crt_auth.AwsSigningConfig(
        algorithm=crt_auth.AwsSigningAlgorithm.V4,
        signature_type=crt_auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
        credentials_provider=crt_auth.AwsCredentialsProvider.new_static(AKID, SECRET),
        region="us-east-1",
        service="s3",
        date=when,
        use_double_uri_encode=False,
        should_normalize_uri_path=False,
        signed_body_value=crt_auth.AwsSignedBodyValue.UNSIGNED_PAYLOAD,
        signed_body_header_type=crt_auth.AwsSignedBodyHeaderType.X_AMZ_CONTENT_SHA_256,
    )
    signed = crt_auth.aws_sign_request(request, config).result(10)
    path, _, query = signed.path.partition("?")
    req = SignedRequest("PUT", path, split_query(query), list(signed.headers))
    ctx = verify_v4(req, parse_v4(req), SECRET, when)
    assert ctx.payload is PayloadMode.UNSIGNED


# --- malformed input ----------------------------------------------------------


def _with_authorization(value: str) -> SignedRequest:
    base = DOC_EXAMPLES["GET object (range)"]
    return _replace_header(base, "authorization", value)


GOOD_CREDENTIAL = f"Credential={AKID}/20130524/us-east-1/s3/aws4_request"
GOOD_REST = "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=" + "a" * 64


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("AWS4-HMAC-SHA512 " + GOOD_CREDENTIAL, AuthorizationHeaderMalformed, "algorithm"),
        ("AWS4-HMAC-SHA256 " + GOOD_REST, AuthorizationHeaderMalformed, "no Credential"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, Signature={'a' * 64}", S3AuthError, "SignedH"),
        (
            f"AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/ec2/aws4_request, {GOOD_REST}",
            AuthorizationHeaderMalformed,
            "service 'ec2'",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={AKID}/20130525/us-east-1/s3/aws4_request, {GOOD_REST}",
            AuthorizationHeaderMalformed,
            "not the date",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={AKID}/2013/us-east-1/s3/aws4_request, {GOOD_REST}",
            AuthorizationHeaderMalformed,
            "YYYYMMDD",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, {GOOD_REST}",
            AuthorizationHeaderMalformed,
            "mal-formed",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=range, Signature={'a' * 64}",
            AuthorizationHeaderMalformed,
            "include 'host'",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=Host, Signature={'a' * 64}",
            AuthorizationHeaderMalformed,
            "lower-case",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=xyz",
            AuthorizationHeaderMalformed,
            "64 hexadecimal",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, {GOOD_CREDENTIAL}, {GOOD_REST}",
            AuthorizationHeaderMalformed,
            "twice",
        ),
        ("AWS4-ECDSA-P256-SHA256 " + GOOD_CREDENTIAL, InvalidRequest, "SigV4a"),
    ],
)
def test_malformed_authorization_header(value: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_v4(_with_authorization(value))


def test_missing_or_bad_content_sha256() -> None:
    base = DOC_EXAMPLES["GET object (range)"]
    missing = dataclasses.replace(
        base, headers=[(k, v) for k, v in base.headers if k != "x-amz-content-sha256"]
    )
    with pytest.raises(InvalidRequest, match="x-amz-content-sha256"):
        parse_v4(missing)
    with pytest.raises(InvalidArgument, match="x-amz-content-sha256"):
        parse_v4(_replace_header(base, "x-amz-content-sha256", "nope"))
    with pytest.raises(InvalidRequest, match="SigV4a"):
        parse_v4(
            _replace_header(
                base, "x-amz-content-sha256", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
            )
        )


def test_missing_query_parameters_are_named() -> None:
    req = DOC_EXAMPLES["presigned GET"]
    for name in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"):
        bad = dataclasses.replace(req, query=[(k, v) for k, v in req.query if k != name])
        with pytest.raises(AuthorizationQueryParametersError, match=name):
            parse_v4(bad)


def test_detect_auth() -> None:
    assert detect_auth(SignedRequest("GET", "/")) is AuthKind.ANONYMOUS
    assert detect_auth(DOC_EXAMPLES["presigned GET"]) is AuthKind.V4_QUERY
    v2 = SignedRequest("GET", "/", [], [("Authorization", "AWS AKID:c2ln")])
    assert detect_auth(v2) is AuthKind.V2_HEADER
    v2q = SignedRequest("GET", "/", split_query("AWSAccessKeyId=a&Expires=1&Signature=x"))
    assert detect_auth(v2q) is AuthKind.V2_QUERY
    both = dataclasses.replace(
        DOC_EXAMPLES["presigned GET"], headers=[("Authorization", "AWS AKID:c2ln")]
    )
    with pytest.raises(InvalidArgument, match="Only one auth mechanism"):
        detect_auth(both)
    with pytest.raises(InvalidArgument, match="Unsupported Authorization Type"):
        detect_auth(SignedRequest("GET", "/", [], [("Authorization", "Bearer x")]))


def test_from_asgi_keeps_raw_bytes() -> None:
    req = SignedRequest.from_asgi(
        "GET",
        b"/b/%E4%B8%AD\xff",
        b"a=1&&b=%20&c",
        [(b"host", b"h"), (b"x-amz-meta-x", "é".encode())],
    )
    assert req.query == (("a", "1"), ("b", "%20"), ("c", ""))
    assert req.query_param("b") == " "
    assert req.header("X-AMZ-META-X") == "é"
    assert req.path.encode("utf-8", "surrogateescape") == b"/b/%E4%B8%AD\xff"
