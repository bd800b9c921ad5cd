"""AWS Signature Version 2 (``HmacV1``) verification for S3: the header
``Authorization: AWS AKID:signature`` and presigned URLs (``AWSAccessKeyId``,
``Expires``, ``Signature``).

String to sign::

    VERB \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
    CanonicalizedAmzHeaders CanonicalizedResource

* the date line is the ``Date`` header, empty when ``x-amz-date`` is sent
  (AWS's rule; the ``Date`` value is also tried, as some clients sign it),
  or ``Expires`` for a presigned URL;
* ``x-amz-*`` headers lower-cased, sorted, repeated values joined by ``,``,
  ``name:value\\n`` each (for a presigned URL, ``x-amz-*`` query parameters
  count as headers, as botocore's presigner moves them there);
* the resource is ``/bucket`` (virtual-host style only, passed by the caller)
  + the path as received + the sub-resources in :data:`SUBRESOURCES`, sorted,
  values decoded.

Same two steps and errors as :mod:`~jointcloud.api.s3.sigv4`:
``parse_v2(req)`` then ``verify_v2(req, auth, secret, now)``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from jointcloud.api.s3.sigv4 import (
    MAX_CLOCK_SKEW,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    ExpiredRequest,
    RequestTimeTooSkewed,
    S3AccessDenied,
    SignatureDoesNotMatch,
    SignedRequest,
    parse_http_date,
    unquote_text,
    uri_encode,
)

EPOCH_YEAR = 1970  # an earlier Date is refused as invalid, not as skewed (AWS)

# Query parameters that are part of the signed resource: AWS's list, the
# response-* overrides, and what botocore's HmacV1Auth adds.
SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "encryption",
        "inventory",
        "legal-hold",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "retention",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)


@dataclass(frozen=True, slots=True)
class V2Auth:
    access_key_id: str
    signature: str  # base64, as sent
    presigned: bool
    expires: int | None  # presigned only, epoch seconds
    security_token: str | None


def parse_v2(req: SignedRequest) -> V2Auth:
    authorization = req.header("authorization")
    if authorization is not None:
        scheme, _, rest = authorization.strip().partition(" ")
        access_key_id, colon, signature = rest.strip().rpartition(":")
        if scheme != "AWS" or not colon or not access_key_id or not signature:
            raise AuthorizationHeaderMalformed(
                "the Authorization header must be 'AWS AccessKeyId:Signature'"
            )
        return V2Auth(
            access_key_id=access_key_id,
            signature=signature,
            presigned=False,
            expires=None,
            security_token=req.header("x-amz-security-token"),
        )
    values = {}
    for name in ("AWSAccessKeyId", "Signature", "Expires"):
        found = req.query_values(name)
        if len(found) != 1 or not found[0]:
            raise AuthorizationQueryParametersError(
                f"Query-string authentication requires exactly one {name} parameter"
            )
        values[name] = found[0]
    expires = values["Expires"]
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        raise AuthorizationQueryParametersError("Expires must be a number of seconds since 1970")
    token = req.query_values("x-amz-security-token")
    return V2Auth(
        access_key_id=values["AWSAccessKeyId"],
        # A '+' of base64 sent unencoded arrives as ' ' in some stacks.
        signature=values["Signature"].replace(" ", "+"),
        presigned=True,
        expires=int(expires),
        security_token=token[0] if token else req.header("x-amz-security-token"),
    )


def _amz_headers(req: SignedRequest, presigned: bool) -> str:
    grouped: dict[str, list[str]] = {}
    for name, value in req.headers:
        lname = name.lower()
        if lname.startswith("x-amz-"):
            grouped.setdefault(lname, []).append(value.strip())
    if presigned:
        for key, value in req.query:
            lname = unquote_text(key).lower()
            if lname.startswith("x-amz-") and lname not in grouped:
                grouped[lname] = [unquote_text(value).strip()]
    return "".join(f"{name}:{','.join(grouped[name])}\n" for name in sorted(grouped))


def _subresources(req: SignedRequest) -> str:
    found: list[tuple[str, str]] = []
    for key, value in req.query:
        name = unquote_text(key)
        if name in SUBRESOURCES:
            found.append((name, unquote_text(value)))
    found.sort(key=lambda pair: pair[0])
    if not found:
        return ""
    return "?" + "&".join(f"{name}={value}" if value else name for name, value in found)


def resource_candidates(req: SignedRequest, virtual_host_bucket: str | None = None) -> list[str]:
    prefix = f"/{virtual_host_bucket}" if virtual_host_bucket else ""
    raw = req.path or "/"
    paths = [raw]
    encoded = uri_encode(unquote_to_bytes(raw.encode("utf-8", "surrogateescape")), slash=True)
    if encoded != raw:
        paths.append(encoded)
    if not prefix and raw.count("/") == 1 and raw != "/":
        # A bucket alone, path style: AWS's resource is "/bucket/" (botocore
        # signs it so), whatever the URL's path says.
        paths.append(raw + "/")
    sub = _subresources(req)
    return [prefix + path + sub for path in paths]


def strings_to_sign(
    req: SignedRequest, auth: V2Auth, virtual_host_bucket: str | None = None
) -> list[str]:
    """The strings a client may have signed, AWS's form first."""
    content_md5 = (req.header("content-md5") or "").strip()
    content_type = (req.header("content-type") or "").strip()
    if auth.presigned:
        content_md5 = content_md5 or (req.query_param("content-md5") or "").strip()
        content_type = content_type or (req.query_param("content-type") or "").strip()
        dates = [str(auth.expires)]
    else:
        date = (req.header("date") or "").strip()
        dates = ["", date] if req.header("x-amz-date") is not None and date else [date]
    head = f"{req.method.upper()}\n{content_md5}\n{content_type}\n"
    amz = _amz_headers(req, auth.presigned)
    return [
        f"{head}{date}\n{amz}{resource}"
        for date in dates
        for resource in resource_candidates(req, virtual_host_bucket)
    ]


def sign_v2(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(
        secret.encode("utf-8"), string_to_sign.encode("utf-8", "surrogateescape"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_v2(
    req: SignedRequest,
    auth: V2Auth,
    secret: str,
    now: dt.datetime,
    *,
    virtual_host_bucket: str | None = None,
) -> None:
    """Check a SigV2 request; ``virtual_host_bucket`` is the bucket named by
    the Host header in virtual-host addressing (it heads the resource)."""
    if auth.presigned:
        assert auth.expires is not None
        if now.timestamp() > auth.expires:
            raise ExpiredRequest("Request has expired")
    else:
        # x-amz-date, when sent, is the request's date even if empty or bad
        # (AWS answers AccessDenied then; ceph's s3-tests check it), and a
        # date before 1970 is no valid date either.
        raw = req.header("x-amz-date")
        if raw is None:
            raw = req.header("date")
        when = parse_http_date(raw) if raw is not None else None
        if when is None or when.year < EPOCH_YEAR:
            raise S3AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
        if abs(now - when) > MAX_CLOCK_SKEW:
            raise RequestTimeTooSkewed(
                "The difference between the request time and the current time is too large."
            )
    candidates = strings_to_sign(req, auth, virtual_host_bucket)
    given = auth.signature.encode("ascii", "replace")
    for candidate in candidates:
        if hmac.compare_digest(sign_v2(secret, candidate).encode("ascii"), given):
            return
    raise SignatureDoesNotMatch(
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        string_to_sign=candidates[0],
    )
