"""SigV4 without the secret: the request as authentication sees it, which
kind of authentication it uses, and its claims.

A request is a :class:`SignedRequest` (method, raw path, raw query pairs,
headers); :func:`detect_auth` tells which mechanism it uses, and
:func:`parse_v4` reads a SigV4 one's claims from the Authorization header or
the presigned query (credential scope, signed headers, date, payload mode)
into a :class:`V4Auth`, before the caller looks up the secret. Checking the
signature with that secret is :mod:`~jointcloud.api.s3.sigv4`'s, which
re-exports these names.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from urllib.parse import unquote_to_bytes

from jointcloud.api.s3.auth_errors import (
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    ExpiredRequest,
    InvalidArgument,
    InvalidRequest,
    S3AccessDenied,
    S3AuthError,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4A_ALGORITHM = "AWS4-ECDSA-P256-SHA256"
TERMINATOR = "aws4_request"
SERVICE = "s3"
MAX_PRESIGN_EXPIRES = 604800  # seven days, AWS's limit
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE = re.compile(r"\d{8}")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # lower-case HTTP header name


# --- the request --------------------------------------------------------------


def decode_raw(raw: bytes) -> str:
    """Received bytes as text, undecodable bytes kept (as surrogates) so
    that ``encode_raw`` gives back exactly what was received."""
    return raw.decode("utf-8", "surrogateescape")


def encode_raw(text: str) -> bytes:
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
    return decode_raw(unquote_to_bytes(encode_raw(raw)))


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
            path=decode_raw(raw_path),
            query=tuple(split_query(decode_raw(query_string))),
            headers=tuple((decode_raw(name), decode_raw(value)) for name, value in headers),
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
    except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: a year past a C long
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
