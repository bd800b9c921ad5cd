"""SigV2: AWS's published RESTAuthentication examples, botocore's HmacV1
signers, tampering."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from jointcloud.api.s3.sigv2 import parse_v2, sign_v2, strings_to_sign, verify_v2
from jointcloud.api.s3.sigv4 import (
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    ExpiredRequest,
    RequestTimeTooSkewed,
    S3AccessDenied,
    SignatureDoesNotMatch,
    SignedRequest,
    split_query,
)

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def at(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%a, %d %b %Y %H:%M:%S %z")


# Amazon S3 developer guide, "Signing and authenticating REST requests" (SigV2).
DOC = [
    ("GET", "/photos/puppy.jpg", "", "Tue, 27 Mar 2007 19:36:42 +0000", [],
     "bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
    ("PUT", "/photos/puppy.jpg", "", "Tue, 27 Mar 2007 21:15:45 +0000",
     [("Content-Type", "image/jpeg"), ("Content-Length", "94328")],
     "MyyxeRY7whkBe+bq8fHCL/2kKUg="),
    ("GET", "/", "prefix=photos&max-keys=50&marker=puppy", "Tue, 27 Mar 2007 19:42:41 +0000",
     [("User-Agent", "Mozilla/5.0")], "htDYFYduRNen8P9ZfE/s9SuKy0U="),
    ("GET", "/", "acl", "Tue, 27 Mar 2007 19:44:46 +0000", [], "c2WLPFtWHVgbEmeEG93a4cG37dM="),
    ("DELETE", "/photos/puppy.jpg", "", "Tue, 27 Mar 2007 21:20:26 +0000",
     [("User-Agent", "dotnet")], "lx3byBScXR6KzyMaifNkardMwNk="),
]  # fmt: skip


@pytest.mark.parametrize("example", range(len(DOC)))
def test_aws_documentation_examples(example: int) -> None:
    method, path, query, date, extra, signature = DOC[example]
    req = SignedRequest(
        method,
        path,
        split_query(query),
        [
            ("Host", "johnsmith.s3.amazonaws.com"),
            ("Date", date),
            *extra,
            ("Authorization", f"AWS {AKID}:{signature}"),
        ],
    )
    auth = parse_v2(req)
    assert auth.access_key_id == AKID
    verify_v2(req, auth, SECRET, at(date), virtual_host_bucket="johnsmith")
    with pytest.raises(SignatureDoesNotMatch):
        verify_v2(req, auth, SECRET, at(date))  # the bucket is part of the resource


def test_aws_documentation_query_example() -> None:
    req = SignedRequest(
        "GET",
        "/photos/puppy.jpg",
        split_query(
            f"AWSAccessKeyId={AKID}&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
        ),
        [("Host", "johnsmith.s3.amazonaws.com")],
    )
    auth = parse_v2(req)
    assert auth.presigned and auth.expires == 1175139620
    when = dt.datetime.fromtimestamp(1175139620, dt.UTC)
    verify_v2(req, auth, SECRET, when, virtual_host_bucket="johnsmith")
    with pytest.raises(ExpiredRequest):
        verify_v2(
            req, auth, SECRET, when + dt.timedelta(seconds=1), virtual_host_bucket="johnsmith"
        )


def test_documented_string_to_sign() -> None:
    req = SignedRequest(
        "GET", "/", split_query("acl"), [("Date", "Tue, 27 Mar 2007 19:44:46 +0000")]
    )
    auth = parse_v2(dataclasses.replace(req, headers=[*req.headers, ("Authorization", "AWS a:b")]))
    assert strings_to_sign(req, auth, "johnsmith")[0] == (
        "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/johnsmith/?acl"
    )
    assert sign_v2(SECRET, strings_to_sign(req, auth, "johnsmith")[0]) == (
        "c2WLPFtWHVgbEmeEG93a4cG37dM="
    )


CREDS = Credentials(AKID, SECRET)


def to_signed(request: AWSRequest) -> SignedRequest:
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers: list[tuple[str, str]] = [
        (k, v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()
    ]
    headers.append(("Host", parts.netloc))
    return SignedRequest(prepared.method, parts.path, split_query(parts.query), headers)


def botocore_request(**extra: Any) -> AWSRequest:
    return AWSRequest(
        method="PUT",
        url="https://s3.example.test/bucket/a%20b%2Bc/%C3%A9?partNumber=2&uploadId=x%2By&foo=bar",
        headers={
            "Content-Type": "text/plain",
            "Content-MD5": "XUFAKrxLKna5cZ2REBfFkg==",
            "x-amz-meta-Note": " hi ",
            "X-Amz-Acl": "private",
            **extra,
        },
    )


def test_botocore_hmacv1_header() -> None:
    request = botocore_request()
    HmacV1Auth(CREDS).add_auth(request)
    req = to_signed(request)
    auth = parse_v2(req)
    verify_v2(req, auth, SECRET, dt.datetime.now(dt.UTC))
    tampers = {
        "method": dataclasses.replace(req, method="POST"),
        "path": dataclasses.replace(req, path=req.path + "x"),
        "subresource": dataclasses.replace(
            req, query=[(k, "3" if k == "partNumber" else v) for k, v in req.query]
        ),
        "amz header": dataclasses.replace(
            req, headers=[(k, "public" if k == "X-Amz-Acl" else v) for k, v in req.headers]
        ),
        "amz header added": dataclasses.replace(
            req, headers=[*req.headers, ("x-amz-copy-source", "/b/k")]
        ),
        "content type": dataclasses.replace(
            req, headers=[(k, "a/b" if k == "Content-Type" else v) for k, v in req.headers]
        ),
    }
    for name, bad in tampers.items():
        with pytest.raises(SignatureDoesNotMatch):
            verify_v2(bad, parse_v2(bad), SECRET, dt.datetime.now(dt.UTC))
        assert name
    # Non-subresource query parameters are not signed in SigV2 (as AWS).
    other = dataclasses.replace(req, query=[(k, "baz" if k == "foo" else v) for k, v in req.query])
    verify_v2(other, parse_v2(other), SECRET, dt.datetime.now(dt.UTC))
    with pytest.raises(RequestTimeTooSkewed):
        verify_v2(req, auth, SECRET, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16))


def test_botocore_hmacv1_query() -> None:
    request = botocore_request(**{"x-amz-security-token": "tok"})
    HmacV1QueryAuth(CREDS, expires=600).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    # A presigned URL is used without the signed headers, which now ride in the query.
    req = SignedRequest("PUT", parts.path, split_query(parts.query), [("Host", parts.netloc)])
    auth = parse_v2(req)
    assert auth.presigned and auth.security_token == "tok"
    now = dt.datetime.now(dt.UTC)
    verify_v2(req, auth, SECRET, now)
    with pytest.raises(ExpiredRequest):
        verify_v2(req, auth, SECRET, now + dt.timedelta(seconds=700))
    bad = dataclasses.replace(
        req, query=[(k, "9" if k == "partNumber" else v) for k, v in req.query]
    )
    with pytest.raises(SignatureDoesNotMatch):
        verify_v2(bad, parse_v2(bad), SECRET, now)


def test_x_amz_date_empties_the_date_line() -> None:
    date = "Tue, 27 Mar 2007 21:20:26 +0000"
    sts = f"GET\n\n\n\nx-amz-date:{date}\n/bucket/key"
    req = SignedRequest(
        "GET",
        "/bucket/key",
        [],
        [("x-amz-date", date), ("Authorization", f"AWS {AKID}:{sign_v2(SECRET, sts)}")],
    )
    verify_v2(req, parse_v2(req), SECRET, at(date))


def test_malformed() -> None:
    for value in ("AWS nocolon", "AWS :sig", "AWS akid:"):
        req = SignedRequest("GET", "/", [], [("Authorization", value)])
        with pytest.raises(AuthorizationHeaderMalformed):
            parse_v2(req)
    with pytest.raises(AuthorizationQueryParametersError, match="Expires"):
        parse_v2(SignedRequest("GET", "/", split_query("AWSAccessKeyId=a&Signature=b")))
    with pytest.raises(AuthorizationQueryParametersError, match="Expires"):
        parse_v2(SignedRequest("GET", "/", split_query("AWSAccessKeyId=a&Signature=b&Expires=x")))
    no_date = SignedRequest("GET", "/", [], [("Authorization", "AWS a:b")])
    with pytest.raises(S3AccessDenied, match="Date"):
        verify_v2(no_date, parse_v2(no_date), SECRET, dt.datetime.now(dt.UTC))


@pytest.mark.parametrize(
    ("amz_date", "refused"),
    [
        ("", S3AccessDenied),  # sent empty: not replaced by Date
        ("Bad Date", S3AccessDenied),
        ("Tue, 07 Jul 1950 21:53:04 GMT", S3AccessDenied),  # before 1970: invalid
        ("Tue, 07 Jul 2010 21:53:04 GMT", RequestTimeTooSkewed),
        ("Tue, 07 Jul 9999 21:53:04 GMT", RequestTimeTooSkewed),
    ],
)
def test_bad_x_amz_date_beside_a_good_date(amz_date: str, refused: type[Exception]) -> None:
    """ceph's s3-tests (test_headers.py, ``*_bad_date_*_aws2``): x-amz-date
    is the request's date whenever it is sent, whatever Date says."""
    now = dt.datetime(2026, 12, 4, 17, 0, tzinfo=dt.UTC)
    date = now.strftime("%a, %d %b %Y %H:%M:%S GMT")
    sts = f"PUT\n\n\n\nx-amz-date:{amz_date}\n/bucket/key"
    req = SignedRequest(
        "PUT",
        "/bucket/key",
        [],
        [
            ("Date", date),
            ("x-amz-date", amz_date),
            ("Authorization", f"AWS {AKID}:{sign_v2(SECRET, sts)}"),
        ],
    )
    with pytest.raises(refused):
        verify_v2(req, parse_v2(req), SECRET, now)
