"""Browser-based POST uploads: the signed policy document.

A POST form carries ``policy`` (base64 JSON) and either SigV4 fields
(``x-amz-algorithm``, ``x-amz-credential``, ``x-amz-date``,
``x-amz-signature`` = hex HMAC-SHA256 of the base64 policy under the SigV4
signing key) or SigV2 fields (``AWSAccessKeyId``, ``signature`` = base64
HMAC-SHA1 of the base64 policy under the secret).

The policy: ``{"expiration": "2007-12-01T12:00:00.000Z", "conditions": [...]}``
with conditions

* ``{"field": "value"}`` and ``["eq", "$field", "value"]`` - exact match;
* ``["starts-with", "$field", "prefix"]`` - ``""`` allows any value;
* ``["content-length-range", min, max]`` - returned to the caller, who
  enforces it while streaming the file (:attr:`PostPolicy.content_length_range`).

Case rules as AWS: form field names and condition field names are
case-insensitive, values case-sensitive; ``bucket`` is matched against the
bucket the request addresses. Every form field needs a condition except
``policy``, ``x-amz-signature``, ``signature``, ``AWSAccessKeyId``, ``file``
and ``x-ignore-*``. ``${filename}`` in ``key`` is replaced by the uploaded
file's name before the checks (so a condition on ``$key`` sees the final key).

Two steps, as for headers: ``parse_post_form(fields)`` (no secret) then
``verify_post(auth, secret, fields, bucket=..., now=...)``. Errors are the
:class:`~jointcloud.api.s3.sigv4.S3AuthError` family plus
:class:`InvalidPolicyDocument`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jointcloud.api.s3.sigv2 import sign_v2
from jointcloud.api.s3.sigv4 import (
    ALGORITHM,
    AuthorizationQueryParametersError,
    ExpiredRequest,
    InvalidArgument,
    S3AccessDenied,
    S3AuthError,
    Scope,
    SignatureDoesNotMatch,
    derive_signing_key,
    parse_amz_date,
    parse_credential,
    sign,
)
from jointcloud.errors import BadArgument

MAX_POLICY_BYTES = 64 * 1024
# Checksums of the file, verified against its bytes (AWS needs no condition).
CHECKSUM_FIELD = "x-amz-checksum-"
EXEMPT_FIELDS = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})


class InvalidPolicyDocument(S3AuthError, BadArgument):
    s3_code = "InvalidPolicyDocument"


class PolicyConditionFailed(S3AccessDenied):
    """The form breaks a condition (``AccessDenied``, "Invalid according to
    Policy: ...")."""


@dataclass(frozen=True, slots=True)
class PostAuth:
    version: Literal["v4", "v2"]
    access_key_id: str
    policy: str  # base64, exactly as sent (that is what is signed)
    signature: str
    scope: Scope | None  # v4
    amz_date: str | None  # v4
    security_token: str | None


@dataclass(frozen=True, slots=True)
class PostPolicy:
    expiration: dt.datetime
    key: str  # the form's key, ${filename} replaced
    content_length_range: tuple[int, int] | None  # inclusive bounds


def form_fields(fields: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Form fields by lower-case name; a repeated field is refused."""
    out: dict[str, str] = {}
    for name, value in fields:
        lname = name.lower()
        if lname in out:
            raise InvalidArgument(f"the POST form field {name} appears more than once")
        out[lname] = value
    return out


def parse_post_form(fields: Sequence[tuple[str, str]]) -> PostAuth | None:
    """The credentials of a POST form, or ``None`` for an anonymous form
    (no policy and no signature: the bucket must allow anonymous writes)."""
    form = form_fields(fields)
    has_v4 = "x-amz-signature" in form or "x-amz-credential" in form
    has_v2 = "signature" in form or "awsaccesskeyid" in form
    if "policy" not in form and not has_v4 and not has_v2:
        return None
    if "policy" not in form:
        raise InvalidArgument("a signed POST form needs a policy field")
    if has_v4 and has_v2:
        raise InvalidArgument("a POST form carries either SigV4 or SigV2 fields, not both")
    token = form.get("x-amz-security-token")
    if has_v4:
        for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
            if not form.get(name):
                raise InvalidArgument(f"the POST form has no {name} field")
        if form["x-amz-algorithm"] != ALGORITHM:
            raise InvalidArgument("x-amz-algorithm must be AWS4-HMAC-SHA256")
        access_key_id, scope = parse_credential(form["x-amz-credential"], InvalidArgument)
        amz_date = form["x-amz-date"]
        parse_amz_date(amz_date, InvalidArgument)
        if amz_date[:8] != scope.date:
            raise InvalidArgument("the x-amz-credential date is not the date of x-amz-date")
        return PostAuth("v4", access_key_id, form["policy"], form["x-amz-signature"], scope,
                        amz_date, token)  # fmt: skip
    for name in ("awsaccesskeyid", "signature"):
        if not form.get(name):
            raise InvalidArgument(f"the POST form has no {name} field")
    return PostAuth("v2", form["awsaccesskeyid"], form["policy"], form["signature"], None, None,
                    token)  # fmt: skip


def _decode_policy(policy_b64: str) -> dict[str, Any]:
    compact = "".join(policy_b64.split())  # some encoders wrap lines
    if len(compact) > MAX_POLICY_BYTES * 4 // 3 + 4:
        raise InvalidPolicyDocument(f"the policy is larger than {MAX_POLICY_BYTES} bytes")
    try:
        raw = base64.b64decode(compact, validate=True)
        document = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: deep nesting
        raise InvalidPolicyDocument(
            "Invalid Policy: the policy is not base64-encoded JSON"
        ) from None
    if not isinstance(document, dict):
        raise InvalidPolicyDocument("Invalid Policy: the policy is not a JSON object")
    return document


_EXPIRATION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


def _expiration(document: dict[str, Any]) -> dt.datetime:
    value = document.get("expiration")
    if not isinstance(value, str):
        raise InvalidPolicyDocument("Invalid Policy: Policy missing expiration.")
    # ISO 8601 in UTC as AWS documents it (2007-12-01T12:00:00.000Z); other
    # spellings fromisoformat would take are refused, as AWS does.
    if _EXPIRATION.fullmatch(value) is None:
        raise InvalidPolicyDocument(f"Invalid Policy: Invalid 'expiration' value: {value!r}")
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidPolicyDocument(
            f"Invalid Policy: Invalid 'expiration' value: {value!r}"
        ) from None


def _length(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError


def check_policy(
    policy_b64: str,
    fields: Sequence[tuple[str, str]],
    *,
    bucket: str,
    now: dt.datetime,
    filename: str | None = None,
) -> PostPolicy:
    """Evaluate a (signature-checked) policy against the form."""
    document = _decode_policy(policy_b64)
    expiration = _expiration(document)
    if now > expiration:
        raise ExpiredRequest("Invalid according to Policy: Policy expired.")
    conditions = document.get("conditions")
    if not isinstance(conditions, list):
        raise InvalidPolicyDocument("Invalid Policy: Policy missing conditions.")

    form = form_fields(fields)
    key = form.get("key", "")
    if filename is not None and "key" in form:
        key = key.replace("${filename}", filename)
        form["key"] = key
    values = dict(form)
    values["bucket"] = bucket

    covered: set[str] = set()
    length_range: tuple[int, int] | None = None

    def failed(condition: Any) -> PolicyConditionFailed:
        return PolicyConditionFailed(
            f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}"
        )

    for condition in conditions:
        if isinstance(condition, dict):
            if len(condition) != 1:
                raise InvalidPolicyDocument(
                    f"Invalid Policy: an object condition names one field: {json.dumps(condition)}"
                )
            ((name, expected),) = condition.items()
            if not isinstance(name, str) or not isinstance(expected, str):
                raise InvalidPolicyDocument(
                    f"Invalid Policy: bad condition {json.dumps(condition)}"
                )
            field = name.lower().removeprefix("$")
            covered.add(field)
            if values.get(field, "") != expected:
                raise failed(condition)
            continue
        if not isinstance(condition, list) or len(condition) != 3:
            raise InvalidPolicyDocument(f"Invalid Policy: bad condition {json.dumps(condition)}")
        op = condition[0].lower() if isinstance(condition[0], str) else None
        if op == "content-length-range":
            try:
                low, high = _length(condition[1]), _length(condition[2])
            except ValueError:
                raise InvalidPolicyDocument(
                    "Invalid Policy: content-length-range takes two non-negative integers"
                ) from None
            if low > high:
                raise InvalidPolicyDocument("Invalid Policy: content-length-range min > max")
            if length_range is not None:
                low, high = max(low, length_range[0]), min(high, length_range[1])
            length_range = (low, high)
            continue
        name, expected = condition[1], condition[2]
        if op not in ("eq", "starts-with") or not isinstance(name, str):
            raise InvalidPolicyDocument(f"Invalid Policy: bad condition {json.dumps(condition)}")
        if not name.startswith("$") or not isinstance(expected, str):
            raise InvalidPolicyDocument(f"Invalid Policy: bad condition {json.dumps(condition)}")
        field = name[1:].lower()
        covered.add(field)
        actual = values.get(field, "")
        if op == "eq" and actual != expected:
            raise failed(condition)
        if op == "starts-with" and not actual.startswith(expected):
            raise failed(condition)

    extra = sorted(
        name
        for name in form
        if name not in covered
        and name not in EXEMPT_FIELDS
        and not name.startswith(("x-ignore-", CHECKSUM_FIELD))
    )
    if extra:
        raise PolicyConditionFailed(
            "Invalid according to Policy: Extra input fields: " + ", ".join(extra)
        )
    return PostPolicy(expiration=expiration, key=key, content_length_range=length_range)


def verify_post_signature(auth: PostAuth, secret: str, *, region: str | None = None) -> None:
    if auth.version == "v4":
        assert auth.scope is not None
        if region is not None and auth.scope.region != region:
            raise AuthorizationQueryParametersError(
                f"the region {auth.scope.region!r} is wrong; expecting {region!r}"
            )
        expected = sign(derive_signing_key(secret, auth.scope), auth.policy)
        given = auth.signature.lower()
    else:
        expected = sign_v2(secret, auth.policy)
        given = auth.signature.replace(" ", "+")
    if not hmac.compare_digest(expected.encode(), given.encode("ascii", "replace")):
        raise SignatureDoesNotMatch(
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            string_to_sign=auth.policy,
        )


def verify_post(
    auth: PostAuth,
    secret: str,
    fields: Sequence[tuple[str, str]],
    *,
    bucket: str,
    now: dt.datetime,
    region: str | None = None,
    filename: str | None = None,
) -> PostPolicy:
    """Signature first, then the policy's expiry and conditions."""
    verify_post_signature(auth, secret, region=region)
    return check_policy(auth.policy, fields, bucket=bucket, now=now, filename=filename)
