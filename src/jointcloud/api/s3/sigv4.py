"""AWS Signature Version 4 verification for S3 (header and presigned query).

Why hand-written: botocore and awscrt *sign* requests but offer no verifier,
and no maintained Python library verifies SigV4 server-side (S3 flavour:
no double URI encoding, no path normalisation, ``x-amz-content-sha256``
payload modes, chunk signatures). The algorithm is small and published; the
tests check it against AWS's own examples and against botocore's signers.

Plain data in, plain data out; no web framework. A request is a
:class:`SignedRequest` (method, raw path, raw query pairs, headers). Strings
are the received bytes decoded as UTF-8 with ``surrogateescape``
(:meth:`SignedRequest.from_asgi` does it), so canonical requests are rebuilt
byte for byte.

Two steps, so the caller can look up the secret between them::

    auth = parse_v4(req)                      # no secret needed
    secret = lookup(auth.access_key_id)       # unknown id -> InvalidAccessKeyId (caller)
    ctx = verify_v4(req, auth, secret, now)   # raises on any mismatch
    # ctx.signing_key / ctx.seed_signature drive chunked.ChunkedDecoder

Errors: every failure raises an :class:`S3AuthError`, which is also the
matching domain error (``SignatureDoesNotMatch`` is a ``SignatureMismatch``,
``ExpiredRequest`` an ``AccessDenied``, ``XAmzContentSHA256Mismatch`` a
``BadDigest``...). Each carries ``s3_code``, the AWS error code to put in the
XML, so the S3 error table can map ``s3_code`` to a status:

================================  ======  =====================================
s3_code                           status  raised for
================================  ======  =====================================
AuthorizationHeaderMalformed      400     bad Authorization header / credential
AuthorizationQueryParametersError 400     bad or missing X-Amz-* query params
InvalidArgument                   400     bad x-amz-content-sha256, two auth kinds
InvalidRequest                    400     unsupported algorithm (SigV4a), framing
SignatureDoesNotMatch             403     any signature (request, chunk, trailer)
RequestTimeTooSkewed              403     header auth more than 15 min off
AccessDenied                      403     presign expired / not yet valid,
                                          unsigned x-amz-* headers, bad policy
XAmzContentSHA256Mismatch         400     body hash differs from the header
IncompleteBody                    400     body shorter than announced
MalformedTrailerError             400     bad trailer section
InvalidPolicyDocument             400     POST policy not parseable
================================  ======  =====================================

``InvalidAccessKeyId`` is the caller's: these modules never see the key store.

Leniency (documented, cheap, never weaker): the canonical URI is tried as AWS
builds it (decoded path re-encoded) and, if different, exactly as received; a
raw ``+`` in the query is tried as ``%2B`` and, if that fails, as a space.

Where it lives: the request view and the parsing that needs no secret
(``SignedRequest``, ``detect_auth``, ``parse_v4``...) are in
:mod:`~jointcloud.api.s3.sigv4_parse`, the errors in
:mod:`~jointcloud.api.s3.auth_errors`; this module builds the canonical
request and string to sign and verifies. It re-exports both, so callers
import everything from here.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote_to_bytes

from jointcloud.api.s3.auth_errors import (
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    ExpiredRequest,
    HeadersNotSigned,
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    InvalidToken,
    MalformedTrailer,
    RequestTimeTooSkewed,
    S3AccessDenied,
    S3AuthError,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
    check_no_session_token,
)
from jointcloud.api.s3.sigv4_parse import (
    ALGORITHM,
    AMZ_DATE_FORMAT,
    MAX_PRESIGN_EXPIRES,
    SERVICE,
    SIGV4A_ALGORITHM,
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    TERMINATOR,
    UNSIGNED_PAYLOAD,
    AuthKind,
    PayloadMode,
    Scope,
    SignedRequest,
    V4Auth,
    detect_auth,
    encode_raw,
    parse_amz_date,
    parse_credential,
    parse_http_date,
    parse_v4,
    payload_mode,
    split_query,
    unquote_text,
)

# The whole SigV4 surface, parsing and errors included: callers import it from here.
__all__ = [
    "ALGORITHM",
    "AMZ_DATE_FORMAT",
    "EMPTY_SHA256",
    "MAX_CLOCK_SKEW",
    "MAX_PRESIGN_EXPIRES",
    "SERVICE",
    "SIGV4A_ALGORITHM",
    "STREAMING_SIGNED",
    "STREAMING_SIGNED_TRAILER",
    "STREAMING_UNSIGNED_TRAILER",
    "TERMINATOR",
    "UNSIGNED_PAYLOAD",
    "AuthKind",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "ExpiredRequest",
    "HeadersNotSigned",
    "IncompleteBody",
    "InvalidArgument",
    "InvalidRequest",
    "InvalidToken",
    "MalformedTrailer",
    "PayloadMode",
    "RequestTimeTooSkewed",
    "S3AccessDenied",
    "S3AuthError",
    "Scope",
    "SignatureDoesNotMatch",
    "SignedRequest",
    "SigningContext",
    "V4Auth",
    "XAmzContentSHA256Mismatch",
    "canonical_header_value",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_requests",
    "canonical_uri_candidates",
    "check_no_session_token",
    "derive_signing_key",
    "detect_auth",
    "parse_amz_date",
    "parse_credential",
    "parse_http_date",
    "parse_v4",
    "payload_mode",
    "sign",
    "split_query",
    "string_to_sign",
    "unquote_text",
    "uri_encode",
    "verify_v4",
]

MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_WS = re.compile(r"[ \t]+")


# --- canonical request, string to sign, signing key ---------------------------


def uri_encode(raw_decoded: bytes, *, slash: bool) -> str:
    """AWS ``UriEncode``: every byte but ``A-Za-z0-9-._~`` (and ``/`` if
    ``slash``) as ``%XY`` with upper-case hex."""
    return quote(raw_decoded, safe="/" if slash else "")


def canonical_uri_candidates(raw_path: str) -> list[str]:
    """AWS's form (decoded path, each byte but unreserved and ``/``
    re-encoded once; S3 neither double-encodes nor normalises), then the
    path exactly as received if that differs."""
    raw_path = raw_path or "/"
    aws = uri_encode(unquote_to_bytes(encode_raw(raw_path)), slash=True)
    return [aws] if aws == raw_path else [aws, raw_path]


def canonical_query(
    pairs: Iterable[tuple[str, str]], *, exclude: str | None = None, plus_is_space: bool = False
) -> str:
    """Pairs decoded and re-encoded with ``UriEncode``, sorted by encoded
    key then value, joined ``k=v&k=v``; ``exclude`` drops a parameter."""
    encoded: list[tuple[str, str]] = []
    for key, value in pairs:
        if plus_is_space:
            key, value = key.replace("+", "%20"), value.replace("+", "%20")
        k = uri_encode(unquote_to_bytes(encode_raw(key)), slash=False)
        if exclude is not None and k == exclude:
            continue
        encoded.append((k, uri_encode(unquote_to_bytes(encode_raw(value)), slash=False)))
    encoded.sort()
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_header_value(value: str) -> str:
    """Trimmed, runs of spaces and tabs collapsed to one space."""
    return _WS.sub(" ", value.strip(" \t"))


def canonical_headers(req: SignedRequest, signed_headers: Sequence[str]) -> str:
    """``name:value\\n`` per signed header (repeated headers joined by ``,``)."""
    lines = []
    for name in signed_headers:
        values = req.header_values(name)
        lines.append(f"{name}:{','.join(canonical_header_value(v) for v in values)}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers: str,
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    return "\n".join([method, uri, query, headers, ";".join(signed_headers), payload_hash])


def string_to_sign(amz_date: str, scope: Scope | str, canonical: str) -> str:
    digest = hashlib.sha256(encode_raw(canonical)).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, encode_raw(msg), hashlib.sha256).digest()


def derive_signing_key(secret: str, scope: Scope) -> bytes:
    """``kSigning`` = HMAC chain of date, region, service, ``aws4_request``
    (the same for a day: remembered, as the SDKs do)."""
    return _signing_key(secret, scope.date, scope.region, scope.service)


@functools.lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    scope = Scope(date, region, service)
    k_date = _hmac(encode_raw("AWS4" + secret), scope.date)
    k_region = _hmac(k_date, scope.region)
    k_service = _hmac(k_region, scope.service)
    return _hmac(k_service, TERMINATOR)


def sign(signing_key: bytes, text: str) -> str:
    return hmac.new(signing_key, encode_raw(text), hashlib.sha256).hexdigest()


def canonical_requests(req: SignedRequest, auth: V4Auth) -> list[str]:
    """The canonical requests a client may have signed: the AWS form first."""
    return [canonical for canonical, _ in _candidates(req, auth)]


def _candidates(req: SignedRequest, auth: V4Auth) -> list[tuple[str, bool]]:
    """``canonical_requests``, each with whether it read a raw ``+`` of the
    query as a space (the request must then run with the reading that was
    signed: a review turned a URL signed for ``a%2Bb`` into one for ``a b``
    by writing the ``+`` raw)."""
    exclude = "X-Amz-Signature" if auth.presigned else None
    queries = [(canonical_query(req.query, exclude=exclude), False)]
    if any("+" in key or "+" in value for key, value in req.query):
        spaced = canonical_query(req.query, exclude=exclude, plus_is_space=True)
        if spaced != queries[0][0]:
            queries.append((spaced, True))
    headers = canonical_headers(req, auth.signed_headers)
    return [
        (
            canonical_request(
                req.method.upper(), uri, query, headers, auth.signed_headers, auth.payload_hash
            ),
            plus_is_space,
        )
        for uri in canonical_uri_candidates(req.path)
        for query, plus_is_space in queries
    ]


# --- verification --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningContext:
    """A verified SigV4 request: what the body checks need."""

    access_key_id: str
    scope: Scope
    amz_date: str
    seed_signature: str
    payload: PayloadMode
    payload_hash: str
    signing_key: bytes = field(repr=False)
    # Whether the signed query read a raw "+" as a space (else as a "+").
    plus_is_space: bool = True

    def chunk_string_to_sign(self, previous_signature: str, chunk_sha256: str) -> str:
        return (
            f"{ALGORITHM}-PAYLOAD\n{self.amz_date}\n{self.scope}\n"
            f"{previous_signature}\n{EMPTY_SHA256}\n{chunk_sha256}"
        )

    def chunk_signature(self, previous_signature: str, chunk_sha256: str) -> str:
        return sign(self.signing_key, self.chunk_string_to_sign(previous_signature, chunk_sha256))

    def trailer_signature(self, previous_signature: str, canonical_trailers: str) -> str:
        digest = hashlib.sha256(encode_raw(canonical_trailers)).hexdigest()
        text = f"{ALGORITHM}-TRAILER\n{self.amz_date}\n{self.scope}\n{previous_signature}\n{digest}"
        return sign(self.signing_key, text)

    def check_payload_sha256(self, actual_hex: str) -> None:
        """For ``PayloadMode.SHA256``: the received body's digest must be the
        signed one (call before committing anything)."""
        if self.payload is PayloadMode.SHA256 and not hmac.compare_digest(
            actual_hex.lower(), self.payload_hash
        ):
            raise XAmzContentSHA256Mismatch(
                "The provided 'x-amz-content-sha256' header does not match what was computed."
            )


def _check_signed_amz_headers(req: SignedRequest, auth: V4Auth) -> None:
    signed = set(auth.signed_headers)
    unsigned = sorted(
        {name for name in req.header_names() if name.startswith("x-amz-") and name not in signed}
        - ({"x-amz-content-sha256"} if auth.presigned else set())
    )
    if unsigned:
        raise HeadersNotSigned(
            "There were headers present in the request which were not signed: "
            + ", ".join(unsigned),
            headers=unsigned,
        )


def verify_v4(
    req: SignedRequest,
    auth: V4Auth,
    secret: str,
    now: dt.datetime,
    *,
    region: str | None = None,
) -> SigningContext:
    """Check a parsed SigV4 request against the secret of its access key.

    ``now`` is an aware datetime. ``region``, if given, must be the
    credential's (else any region is accepted, as most S3-compatible services
    do). Raises an :class:`S3AuthError`; returns the signing context."""
    if region is not None and auth.scope.region != region:
        error: type[S3AuthError] = AuthorizationHeaderMalformed
        if auth.presigned:
            error = AuthorizationQueryParametersError
        raise error(f"the region {auth.scope.region!r} is wrong; expecting {region!r}")
    if auth.presigned:
        assert auth.expires is not None
        # The arithmetic is on ``now``: the request's time may be any date
        # from the year 1 to 9999, and moving it by the skew or the expiry
        # could fall off the calendar (500 instead of 403).
        if now + MAX_CLOCK_SKEW < auth.request_time:
            raise ExpiredRequest("Request is not valid yet")
        if now - dt.timedelta(seconds=auth.expires) > auth.request_time:
            raise ExpiredRequest("Request has expired")
    elif abs(now - auth.request_time) > MAX_CLOCK_SKEW:
        raise RequestTimeTooSkewed(
            "The difference between the request time and the current time is too large."
        )
    _check_signed_amz_headers(req, auth)

    signing_key = derive_signing_key(secret, auth.scope)
    candidates = _candidates(req, auth)
    first_sts = ""
    for canonical, plus_is_space in candidates:
        sts = string_to_sign(auth.amz_date, auth.scope, canonical)
        first_sts = first_sts or sts
        if hmac.compare_digest(sign(signing_key, sts), auth.signature):
            return SigningContext(
                access_key_id=auth.access_key_id,
                scope=auth.scope,
                amz_date=auth.amz_date,
                seed_signature=auth.signature,
                payload=auth.payload,
                payload_hash=auth.payload_hash,
                signing_key=signing_key,
                plus_is_space=plus_is_space,
            )
    raise SignatureDoesNotMatch(
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        string_to_sign=first_sts,
        canonical_request=candidates[0][0],
    )
