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
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import ClassVar
from urllib.parse import quote, unquote_to_bytes

from jointcloud.errors import (
    AccessDenied,
    BadArgument,
    BadDigest,
    DomainError,
    SignatureMismatch,
    Unauthorized,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4A_ALGORITHM = "AWS4-ECDSA-P256-SHA256"
TERMINATOR = "aws4_request"
SERVICE = "s3"
MAX_PRESIGN_EXPIRES = 604800  # seven days, AWS's limit
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE = re.compile(r"\d{8}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # lower-case HTTP header name
_WS = re.compile(r"[ \t]+")


# --- errors -------------------------------------------------------------------


class S3AuthError(DomainError):
    """An authentication failure with the AWS error code it answers as."""

    s3_code: ClassVar[str] = "AccessDenied"


class InvalidToken(S3AuthError, BadArgument):
    s3_code = "InvalidToken"


def check_no_session_token(token: str | None) -> None:
    """This server gives out no session credentials, so a session token
    (``x-amz-security-token``) can only be a stale or foreign one: AWS
    refuses a token it cannot use rather than ignore it."""
    if token:
        raise InvalidToken(
            "The provided token is malformed or otherwise invalid: these credentials "
            "take no session token (x-amz-security-token)"
        )


class AuthorizationHeaderMalformed(S3AuthError, BadArgument):
    s3_code = "AuthorizationHeaderMalformed"


class AuthorizationQueryParametersError(S3AuthError, BadArgument):
    s3_code = "AuthorizationQueryParametersError"


class InvalidArgument(S3AuthError, BadArgument):
    s3_code = "InvalidArgument"


class InvalidRequest(S3AuthError, BadArgument):
    s3_code = "InvalidRequest"


class SignatureDoesNotMatch(S3AuthError, SignatureMismatch):
    """A signature does not verify. ``string_to_sign`` and
    ``canonical_request`` (never secret) are what the server computed, which
    AWS echoes in the error XML to help a client debug."""

    s3_code = "SignatureDoesNotMatch"

    def __init__(
        self, message: str, *, string_to_sign: str = "", canonical_request: str = ""
    ) -> None:
        super().__init__(message)
        self.string_to_sign = string_to_sign
        self.canonical_request = canonical_request


class RequestTimeTooSkewed(S3AuthError, Unauthorized):
    s3_code = "RequestTimeTooSkewed"


class S3AccessDenied(S3AuthError, AccessDenied):
    """Plain ``AccessDenied`` (a missing date, a refused POST policy...)."""

    s3_code = "AccessDenied"


class ExpiredRequest(S3AccessDenied):
    """A presigned URL (or POST policy) past its expiry, or not valid yet."""


class HeadersNotSigned(S3AccessDenied):
    def __init__(self, message: str, *, headers: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.headers = tuple(headers)


class XAmzContentSHA256Mismatch(S3AuthError, BadDigest):
    s3_code = "XAmzContentSHA256Mismatch"


class IncompleteBody(S3AuthError, BadArgument):
    s3_code = "IncompleteBody"


class MalformedTrailer(S3AuthError, BadArgument):
    s3_code = "MalformedTrailerError"


# --- the request --------------------------------------------------------------


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def split_query(query_string: str) -> list[tuple[str, str]]:
    """Raw ``key=value`` pairs of a query string, still percent-encoded;
    empty segments (``a=1&&b=2``) are skipped, ``acl`` gives ``("acl", "")``."""
    pairs: list[tuple[str, str]] = []
    for segment in query_string.split("&"):
        if segment:
            key, _, value = segment.partition("=")
            pairs.append((key, value))
    return pairs


def unquote_text(raw: str) -> str:
    """Percent-decode (``+`` stays ``+``), keeping undecodable bytes."""
    return _decode(unquote_to_bytes(_encode(raw)))


def uri_encode(raw_decoded: bytes, *, slash: bool) -> str:
    """AWS ``UriEncode``: every byte but ``A-Za-z0-9-._~`` (and ``/`` if
    ``slash``) as ``%XY`` with upper-case hex."""
    return quote(raw_decoded, safe="/" if slash else "")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What authentication needs of an HTTP request.

    ``path`` is the raw request path as received (percent-encoded, not
    normalised); ``query`` the raw ``(key, value)`` pairs in received order,
    still percent-encoded; ``headers`` every header line in order (names in
    any case; a repeated header appears repeatedly). HTTP/2's ``:authority``
    must be given as ``host``."""

    method: str
    path: str
    query: Sequence[tuple[str, str]] = ()
    headers: Sequence[tuple[str, str]] = ()
    # Lower-case name -> values in order: a request is asked for a header
    # a dozen times, and a scan of every line each time showed in profiles.
    _index: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[str]] = {}
        for name, value in self.headers:
            index.setdefault(name.lower(), []).append(value)
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_asgi(
        cls,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> SignedRequest:
        return cls(
            method=method,
            path=_decode(raw_path),
            query=tuple(split_query(_decode(query_string))),
            headers=tuple((_decode(name), _decode(value)) for name, value in headers),
        )

    def header_values(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    def header(self, name: str) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else None

    def header_names(self) -> Iterable[str]:
        """Every header's name, lower-case, once."""
        return self._index.keys()

    def query_values(self, name: str) -> list[str]:
        """Decoded values of a query parameter (the name is case-sensitive)."""
        return [unquote_text(value) for key, value in self.query if unquote_text(key) == name]

    def query_param(self, name: str) -> str | None:
        values = self.query_values(name)
        return values[0] if values else None

    def has_query(self, name: str) -> bool:
        return any(unquote_text(key) == name for key, _ in self.query)


# --- which kind of authentication --------------------------------------------


class AuthKind(Enum):
    ANONYMOUS = "anonymous"
    V4_HEADER = "v4-header"
    V4_QUERY = "v4-query"
    V2_HEADER = "v2-header"
    V2_QUERY = "v2-query"


def detect_auth(req: SignedRequest) -> AuthKind:
    """Which mechanism a request uses; two at once is an error (as AWS)."""
    kinds: list[AuthKind] = []
    authorization = req.header("authorization")
    if authorization is not None:
        scheme = authorization.strip().split(" ", 1)[0]
        if scheme == ALGORITHM:
            kinds.append(AuthKind.V4_HEADER)
        elif scheme == "AWS":
            kinds.append(AuthKind.V2_HEADER)
        elif scheme == SIGV4A_ALGORITHM:
            raise InvalidRequest("SigV4a (AWS4-ECDSA-P256-SHA256) is not supported")
        else:
            raise InvalidArgument(f"Unsupported Authorization Type {scheme!r}")
    if req.has_query("X-Amz-Algorithm") or req.has_query("X-Amz-Signature"):
        kinds.append(AuthKind.V4_QUERY)
    if req.has_query("AWSAccessKeyId") or req.has_query("Signature"):
        kinds.append(AuthKind.V2_QUERY)
    if len(kinds) > 1:
        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified"
        )
    return kinds[0] if kinds else AuthKind.ANONYMOUS


# --- parsed authentication ----------------------------------------------------


class PayloadMode(Enum):
    """What ``x-amz-content-sha256`` announces about the body."""

    SHA256 = "sha256"  # a hex digest the whole body must hash to
    UNSIGNED = UNSIGNED_PAYLOAD
    STREAMING_SIGNED = STREAMING_SIGNED
    STREAMING_SIGNED_TRAILER = STREAMING_SIGNED_TRAILER
    STREAMING_UNSIGNED_TRAILER = STREAMING_UNSIGNED_TRAILER

    @property
    def streaming(self) -> bool:
        """The body is ``aws-chunked`` (decode it with ``chunked``)."""
        return self.value.startswith("STREAMING-")

    @property
    def signed_chunks(self) -> bool:
        return self in (PayloadMode.STREAMING_SIGNED, PayloadMode.STREAMING_SIGNED_TRAILER)

    @property
    def has_trailer(self) -> bool:
        return self in (
            PayloadMode.STREAMING_SIGNED_TRAILER,
            PayloadMode.STREAMING_UNSIGNED_TRAILER,
        )


_MODES = {mode.value: mode for mode in PayloadMode if mode is not PayloadMode.SHA256}


def payload_mode(value: str) -> PayloadMode:
    """The mode an ``x-amz-content-sha256`` value announces."""
    if value in _MODES:
        return _MODES[value]
    if _HEX64.fullmatch(value):
        return PayloadMode.SHA256
    if value.startswith("STREAMING-AWS4-ECDSA-P256-SHA256"):
        raise InvalidRequest(f"x-amz-content-sha256 {value} (SigV4a) is not supported")
    raise InvalidArgument(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-* or a SHA-256 hex digest"
    )


@dataclass(frozen=True, slots=True)
class Scope:
    date: str  # YYYYMMDD
    region: str
    service: str = SERVICE

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def parse_credential(
    credential: str, error: type[S3AuthError] = AuthorizationHeaderMalformed
) -> tuple[str, Scope]:
    """``AKID/20130524/us-east-1/s3/aws4_request`` → access key id and scope."""
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not parts[0]:
        raise error(
            f"the Credential {credential!r} is mal-formed; "
            "expecting '<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request'"
        )
    access_key_id, date, region, service, terminator = parts
    if not _SCOPE_DATE.fullmatch(date):
        raise error(f"the Credential date {date!r} is not YYYYMMDD")
    if not region:
        raise error("the Credential has no region")
    if service != SERVICE:
        raise error(f"the Credential service {service!r} is wrong; expecting 's3'")
    if terminator != TERMINATOR:
        raise error(f"the Credential terminator {terminator!r} is wrong; expecting 'aws4_request'")
    return access_key_id, Scope(date, region, service)


@dataclass(frozen=True, slots=True)
class V4Auth:
    """A SigV4 request's claims, parsed without the secret."""

    access_key_id: str
    scope: Scope
    signed_headers: tuple[str, ...]
    signature: str  # lower-case hex
    presigned: bool
    amz_date: str  # the timestamp of the string to sign (YYYYMMDDTHHMMSSZ)
    request_time: dt.datetime
    expires: int | None  # presigned only, seconds
    payload_hash: str  # the canonical request's last line
    payload: PayloadMode
    security_token: str | None


def parse_amz_date(value: str, error: type[S3AuthError]) -> dt.datetime:
    if not _AMZ_DATE.fullmatch(value):
        raise error(f"X-Amz-Date {value!r} is not in ISO 8601 basic format (YYYYMMDDTHHMMSSZ)")
    parsed = _basic_date(value)
    if parsed is None:
        raise error(f"X-Amz-Date {value!r} is not a valid date")
    return parsed


def _basic_date(value: str) -> dt.datetime | None:
    """``YYYYMMDDTHHMMSSZ`` (already matched by ``_AMZ_DATE``) as a UTC
    datetime, or None if no such moment exists. By its fields: strptime
    costs more than the rest of a signature check."""
    try:
        return dt.datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=dt.UTC,
        )
    except ValueError:
        return None


def parse_http_date(value: str) -> dt.datetime | None:
    """An RFC 1123 (or ISO 8601 basic) date, or ``None``."""
    value = value.strip()
    if _AMZ_DATE.fullmatch(value):
        return _basic_date(value)
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:  # year 9999 with a negative offset
        return None


def _signed_header_list(value: str, error: type[S3AuthError]) -> tuple[str, ...]:
    names = tuple(value.split(";"))
    if not value or not all(_TOKEN.fullmatch(name) for name in names):
        raise error(f"SignedHeaders {value!r} must be lower-case header names separated by ';'")
    if len(set(names)) != len(names):
        raise error(f"SignedHeaders {value!r} names a header twice")
    if "host" not in names:
        raise error("SignedHeaders must include 'host'")
    return names


def _signature(value: str, error: type[S3AuthError]) -> str:
    if not _HEX64.fullmatch(value):
        raise error("the Signature must be 64 hexadecimal digits")
    return value.lower()


def parse_v4(req: SignedRequest) -> V4Auth:
    """Parse SigV4 from the Authorization header or, failing that, the query."""
    authorization = req.header("authorization")
    if authorization is not None:
        return _parse_v4_header(req, authorization)
    if req.has_query("X-Amz-Algorithm") or req.has_query("X-Amz-Signature"):
        return _parse_v4_query(req)
    raise AuthorizationHeaderMalformed("the request has no SigV4 Authorization header or query")


def _parse_v4_header(req: SignedRequest, authorization: str) -> V4Auth:
    error = AuthorizationHeaderMalformed
    if len(req.header_values("authorization")) > 1:
        raise error("more than one Authorization header")
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm == SIGV4A_ALGORITHM:
        raise InvalidRequest("SigV4a (AWS4-ECDSA-P256-SHA256) is not supported")
    if algorithm != ALGORITHM:
        raise error(f"the authorization algorithm {algorithm!r} is not AWS4-HMAC-SHA256")
    fields: dict[str, str] = {}
    for component in rest.split(","):
        key, eq, value = component.strip().partition("=")
        if not eq:
            raise error(f"the authorization component {component.strip()!r} is mal-formed")
        if key in fields:
            raise error(f"the authorization component {key} appears twice")
        fields[key] = value.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in fields:
            raise error(f"the authorization header has no {required}")
    unknown = sorted(set(fields) - {"Credential", "SignedHeaders", "Signature"})
    if unknown:
        raise error(f"the authorization header has unknown component {unknown[0]}")
    access_key_id, scope = parse_credential(fields["Credential"], error)
    signed_headers = _signed_header_list(fields["SignedHeaders"], error)
    signature = _signature(fields["Signature"], error)

    amz_date_header = req.header("x-amz-date")
    if amz_date_header is not None:
        request_time = parse_amz_date(amz_date_header.strip(), error)
        amz_date = amz_date_header.strip()
    else:
        date_header = req.header("date")
        parsed = parse_http_date(date_header) if date_header is not None else None
        if parsed is None:
            raise S3AccessDenied("AWS authentication requires a valid Date or x-amz-date header")
        request_time = parsed
        amz_date = parsed.strftime(AMZ_DATE_FORMAT)
    if amz_date[:8] != scope.date:
        raise error(
            f"the Credential date {scope.date} is not the date of the request ({amz_date[:8]})"
        )

    content_sha256 = req.header("x-amz-content-sha256")
    if content_sha256 is None:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    content_sha256 = content_sha256.strip()
    mode = payload_mode(content_sha256)
    return V4Auth(
        access_key_id=access_key_id,
        scope=scope,
        signed_headers=signed_headers,
        signature=signature,
        presigned=False,
        amz_date=amz_date,
        request_time=request_time,
        expires=None,
        payload_hash=content_sha256.lower() if mode is PayloadMode.SHA256 else content_sha256,
        payload=mode,
        security_token=req.header("x-amz-security-token"),
    )


def _one_query(req: SignedRequest, name: str) -> str:
    values = req.query_values(name)
    if not values:
        raise AuthorizationQueryParametersError(
            f"Query-string authentication version 4 requires the {name} parameter"
        )
    if len(values) > 1:
        raise AuthorizationQueryParametersError(f"the {name} parameter appears twice")
    return values[0]


def _parse_v4_query(req: SignedRequest) -> V4Auth:
    error = AuthorizationQueryParametersError
    algorithm = _one_query(req, "X-Amz-Algorithm")
    if algorithm == SIGV4A_ALGORITHM:
        raise InvalidRequest("SigV4a (AWS4-ECDSA-P256-SHA256) is not supported")
    if algorithm != ALGORITHM:
        raise error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    access_key_id, scope = parse_credential(_one_query(req, "X-Amz-Credential"), error)
    amz_date = _one_query(req, "X-Amz-Date")
    request_time = parse_amz_date(amz_date, error)
    if amz_date[:8] != scope.date:
        raise error(
            f"the X-Amz-Credential date {scope.date} is not the date of X-Amz-Date ({amz_date[:8]})"
        )
    expires_text = _one_query(req, "X-Amz-Expires")
    if not expires_text.isascii() or not expires_text.lstrip("-").isdigit():
        raise error("X-Amz-Expires should be a number")
    # Bounded before int(): Python refuses over 4,300 digits; any value this
    # long is beyond the week allowed anyway.
    if len(expires_text) <= 18:
        expires = int(expires_text)
    else:
        expires = -1 if expires_text.startswith("-") else MAX_PRESIGN_EXPIRES + 1
    # Out of range is a refused (expired) URL, 403, as ceph's s3-tests
    # check it against AWS; a value that is not a number is malformed (400).
    if expires < 0:
        raise ExpiredRequest("Request has expired: X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_EXPIRES:
        raise ExpiredRequest("X-Amz-Expires must be less than a week (in seconds) that is 604800")
    signed_headers = _signed_header_list(_one_query(req, "X-Amz-SignedHeaders"), error)
    signature = _signature(_one_query(req, "X-Amz-Signature"), error)

    # Presigned URLs sign UNSIGNED-PAYLOAD unless the URL names a hash itself
    # (or signs the x-amz-content-sha256 header, as botocore does when one is set).
    payload_hash = UNSIGNED_PAYLOAD
    query_hash = req.query_values("X-Amz-Content-Sha256")
    header_hash = req.header("x-amz-content-sha256")
    if query_hash:
        payload_hash = query_hash[0]
    elif header_hash is not None and "x-amz-content-sha256" in signed_headers:
        payload_hash = header_hash.strip()
    mode = payload_mode(payload_hash)
    if mode.streaming:
        raise InvalidRequest("a presigned request cannot have a streaming (aws-chunked) payload")
    if mode is PayloadMode.SHA256:
        payload_hash = payload_hash.lower()
    token = req.query_values("X-Amz-Security-Token")
    return V4Auth(
        access_key_id=access_key_id,
        scope=scope,
        signed_headers=signed_headers,
        signature=signature,
        presigned=True,
        amz_date=amz_date,
        request_time=request_time,
        expires=expires,
        payload_hash=payload_hash,
        payload=mode,
        security_token=token[0] if token else None,
    )


# --- canonical request, string to sign, signing key ---------------------------


def canonical_uri_candidates(raw_path: str) -> list[str]:
    """AWS's form (decoded path, each byte but unreserved and ``/``
    re-encoded once; S3 neither double-encodes nor normalises), then the
    path exactly as received if that differs."""
    raw_path = raw_path or "/"
    aws = uri_encode(unquote_to_bytes(_encode(raw_path)), slash=True)
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
        k = uri_encode(unquote_to_bytes(_encode(key)), slash=False)
        if exclude is not None and k == exclude:
            continue
        encoded.append((k, uri_encode(unquote_to_bytes(_encode(value)), slash=False)))
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
    digest = hashlib.sha256(_encode(canonical)).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, _encode(msg), hashlib.sha256).digest()


def derive_signing_key(secret: str, scope: Scope) -> bytes:
    """``kSigning`` = HMAC chain of date, region, service, ``aws4_request``
    (the same for a day: remembered, as the SDKs do)."""
    return _signing_key(secret, scope.date, scope.region, scope.service)


@functools.lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    scope = Scope(date, region, service)
    k_date = _hmac(_encode("AWS4" + secret), scope.date)
    k_region = _hmac(k_date, scope.region)
    k_service = _hmac(k_region, scope.service)
    return _hmac(k_service, TERMINATOR)


def sign(signing_key: bytes, text: str) -> str:
    return hmac.new(signing_key, _encode(text), hashlib.sha256).hexdigest()


def canonical_requests(req: SignedRequest, auth: V4Auth) -> list[str]:
    """The canonical requests a client may have signed: the AWS form first."""
    exclude = "X-Amz-Signature" if auth.presigned else None
    queries = [canonical_query(req.query, exclude=exclude)]
    if any("+" in key or "+" in value for key, value in req.query):
        spaced = canonical_query(req.query, exclude=exclude, plus_is_space=True)
        if spaced != queries[0]:
            queries.append(spaced)
    headers = canonical_headers(req, auth.signed_headers)
    return [
        canonical_request(
            req.method.upper(), uri, query, headers, auth.signed_headers, auth.payload_hash
        )
        for uri in canonical_uri_candidates(req.path)
        for query in queries
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

    def chunk_string_to_sign(self, previous_signature: str, chunk_sha256: str) -> str:
        return (
            f"{ALGORITHM}-PAYLOAD\n{self.amz_date}\n{self.scope}\n"
            f"{previous_signature}\n{EMPTY_SHA256}\n{chunk_sha256}"
        )

    def chunk_signature(self, previous_signature: str, chunk_sha256: str) -> str:
        return sign(self.signing_key, self.chunk_string_to_sign(previous_signature, chunk_sha256))

    def trailer_signature(self, previous_signature: str, canonical_trailers: str) -> str:
        digest = hashlib.sha256(_encode(canonical_trailers)).hexdigest()
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
        if now < auth.request_time - MAX_CLOCK_SKEW:
            raise ExpiredRequest("Request is not valid yet")
        if now > auth.request_time + dt.timedelta(seconds=auth.expires):
            raise ExpiredRequest("Request has expired")
    elif abs(now - auth.request_time) > MAX_CLOCK_SKEW:
        raise RequestTimeTooSkewed(
            "The difference between the request time and the current time is too large."
        )
    _check_signed_amz_headers(req, auth)

    signing_key = derive_signing_key(secret, auth.scope)
    candidates = canonical_requests(req, auth)
    first_sts = ""
    for canonical in candidates:
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
            )
    raise SignatureDoesNotMatch(
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        string_to_sign=first_sts,
        canonical_request=candidates[0],
    )
