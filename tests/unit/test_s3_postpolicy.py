"""Browser POST policies: botocore's generate_presigned_post (SigV4 and
SigV2) verifies; conditions, case rules, expiry and tampering."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import boto3
import pytest
from botocore.config import Config

from jointcloud.api.s3.postpolicy import (
    InvalidPolicyDocument,
    PolicyConditionFailed,
    check_policy,
    parse_post_form,
    verify_post,
)
from jointcloud.api.s3.sigv4 import ExpiredRequest, InvalidArgument, SignatureDoesNotMatch
from jointcloud.errors import AccessDenied

NOW = dt.datetime.now(dt.UTC)


def presigned_post(
    version: str, key: str = "up/${filename}", **kwargs: Any
) -> list[tuple[str, str]]:
    client = boto3.client(
        "s3",
        aws_access_key_id="AKID",
        aws_secret_access_key="SECRET",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:7891",
        config=Config(signature_version=version),
    )
    post = client.generate_presigned_post("bkt", key, ExpiresIn=600, **kwargs)
    return list(post["fields"].items())


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_botocore_presigned_post_verifies(version: str) -> None:
    fields = presigned_post(
        version,
        Fields={"Content-Type": "text/plain", "success_action_status": "201"},
        Conditions=[
            {"Content-Type": "text/plain"},
            {"success_action_status": "201"},
            ["content-length-range", 10, 1000],
        ],
    )
    auth = parse_post_form(fields)
    assert auth is not None and auth.access_key_id == "AKID"
    assert auth.version == ("v4" if version == "s3v4" else "v2")
    result = verify_post(auth, "SECRET", fields, bucket="bkt", now=NOW, filename="a.txt")
    assert result.key == "up/a.txt"
    assert result.content_length_range == (10, 1000)

    with pytest.raises(SignatureDoesNotMatch):
        verify_post(auth, "WRONG", fields, bucket="bkt", now=NOW)
    with pytest.raises(PolicyConditionFailed, match="bucket"):
        verify_post(auth, "SECRET", fields, bucket="other", now=NOW)
    with pytest.raises(ExpiredRequest, match="Policy expired"):
        verify_post(auth, "SECRET", fields, bucket="bkt", now=NOW + dt.timedelta(hours=1))
    changed = [(k, "text/html" if k == "Content-Type" else v) for k, v in fields]
    with pytest.raises(PolicyConditionFailed, match="Content-Type") as caught:
        verify_post(auth, "SECRET", changed, bucket="bkt", now=NOW)
    assert isinstance(caught.value, AccessDenied)
    # Field names are case-insensitive; values are not.
    upper = [(k.upper() if k == "Content-Type" else k, v) for k, v in fields]
    verify_post(auth, "SECRET", upper, bucket="bkt", now=NOW)
    extra = [*fields, ("x-amz-meta-sneaky", "1")]
    with pytest.raises(PolicyConditionFailed, match="Extra input fields: x-amz-meta-sneaky"):
        verify_post(auth, "SECRET", extra, bucket="bkt", now=NOW)
    verify_post(auth, "SECRET", [*fields, ("x-ignore-me", "1")], bucket="bkt", now=NOW)
    # A forged policy does not carry the signature over.
    forged = [(k, base64.b64encode(b'{"expiration": "2099-01-01T00:00:00Z", "conditions": []}')
               .decode() if k == "policy" else v) for k, v in fields]  # fmt: skip
    forged_auth = parse_post_form(forged)
    assert forged_auth is not None
    with pytest.raises(SignatureDoesNotMatch):
        verify_post(forged_auth, "SECRET", forged, bucket="bkt", now=NOW)


def policy(conditions: list[Any], expiration: str = "2099-12-01T12:00:00.000Z") -> str:
    return base64.b64encode(
        json.dumps({"expiration": expiration, "conditions": conditions}).encode()
    ).decode()


def test_conditions() -> None:
    fields = [("key", "user/eric/photo.jpg"), ("Content-Type", "image/jpeg"), ("acl", "private")]
    good = [
        {"bucket": "bkt"},
        ["starts-with", "$key", "user/eric/"],
        ["eq", "$Content-Type", "image/jpeg"],
        ["starts-with", "$acl", ""],
    ]
    result = check_policy(policy(good), fields, bucket="bkt", now=NOW)
    assert result.content_length_range is None
    for bad in (
        [good[0], ["starts-with", "$key", "user/bob/"], good[2], good[3]],
        [good[0], good[1], ["eq", "$Content-Type", "image/JPEG"], good[3]],
        [good[0], {"key": "user/eric/"}, good[2], good[3]],
        [{"bucket": "BKT"}, *good[1:]],
    ):
        with pytest.raises(PolicyConditionFailed):
            check_policy(policy(bad), fields, bucket="bkt", now=NOW)
    ranges = [*good, ["content-length-range", 1, 100], ["content-length-range", "5", "200"]]
    assert check_policy(policy(ranges), fields, bucket="bkt", now=NOW).content_length_range == (
        5,
        100,
    )


@pytest.mark.parametrize(
    "document",
    [
        "not base64!",
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(b'{"conditions": []}').decode(),
        base64.b64encode(b'{"expiration": "soon", "conditions": []}').decode(),
        policy([["content-length-range", 5, 1]]),
        policy([["content-length-range", -1, 1]]),
        policy([["in", "$key", "x"]]),
        policy([["eq", "key", "x"]]),
        policy([{"a": "1", "b": "2"}]),
        policy([{"a": 1}]),
    ],
)
def test_invalid_policy_documents(document: str) -> None:
    with pytest.raises(InvalidPolicyDocument):
        check_policy(document, [], bucket="b", now=NOW)


def test_form_parsing() -> None:
    assert parse_post_form([("key", "k"), ("file", "x")]) is None
    with pytest.raises(InvalidArgument, match="policy"):
        parse_post_form([("x-amz-signature", "s")])
    with pytest.raises(InvalidArgument, match="more than once"):
        parse_post_form([("Policy", "p"), ("policy", "q")])
    with pytest.raises(InvalidArgument, match="x-amz-date"):
        parse_post_form(
            [
                ("policy", "p"),
                ("x-amz-algorithm", "AWS4-HMAC-SHA256"),
                ("x-amz-credential", "AKID/20130524/us-east-1/s3/aws4_request"),
                ("x-amz-signature", "s"),
            ]
        )
    with pytest.raises(InvalidArgument, match="either SigV4 or SigV2"):
        parse_post_form([("policy", "p"), ("x-amz-signature", "s"), ("signature", "t")])
