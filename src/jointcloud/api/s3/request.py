"""One S3 request: where it points (bucket, key), who sent it (the principal
behind the access key id, after its signature is checked) and its body
(decoded from ``aws-chunked`` and checked against the signed payload hash
while it streams).

Addressing: path style (``/bucket/key``) always; virtual-host style
(``bucket.<domain>``) for the domains given with ``--s3-domain``. An S3
bucket is a package of the credentials' project, a key an object path
(DESIGN §2).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote

from starlette.requests import Request

from jointcloud.api.s3 import sigv2, sigv4
from jointcloud.api.s3.auth_errors import InvalidRequest, MalformedTrailer
from jointcloud.api.s3.chunked import ChunkedDecoder, streaming_headers
from jointcloud.api.s3.errors import InvalidArgumentS3, MissingContentLength
from jointcloud.api.s3.xmlio import MalformedXMLError
from jointcloud.context import Context
from jointcloud.core.authz import Principal
from jointcloud.core.commands import ObjectAddress, PackageRef
from jointcloud.core.models import ChecksumAlgorithm
from jointcloud.errors import AccessDenied

CHECKSUM_HEADERS = {
    f"x-amz-checksum-{algorithm.value.lower()}": algorithm for algorithm in ChecksumAlgorithm
}


# What a query parameter cannot hold: what XML 1.0 cannot carry even as a
# character reference, but for the ASCII controls NUL apart, which a key
# may hold and answers write as references (``&#x1;``, as AWS does). A
# client pages a listing by passing such a key back as its marker (found
# by review: rclone's and boto3's listings failed on one).
_UNECHOABLE = re.compile("[^\x01-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# Parameters of a presigned URL that authenticate it or frame its body,
# never taken as headers (``S3Request._hoist``).
_NOT_HOISTED = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "x-amz-decoded-content-length",
    }
)


@dataclass(frozen=True)
class Target:
    """What the URL names: nothing (the service), a bucket, or an object."""

    bucket: str | None
    key: str | None
    virtual_host: bool = False

    @property
    def resource(self) -> str:
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}" + ("" if self.key is None else f"/{self.key}")

    def named(self, upload_id: str | None = None) -> dict[str, str | None]:
        """What the request names, by the elements of AWS's errors."""
        return {"BucketName": self.bucket, "Key": self.key, "UploadId": upload_id}


def target_of(raw_path: bytes, host: str | None, domains: tuple[str, ...]) -> Target:
    path = unquote(raw_path.decode("utf-8", "surrogateescape"), errors="surrogateescape")
    hostname = (host or "").rsplit(":", 1)[0].lower() if host and not host.startswith("[") else ""
    hostname = hostname.removesuffix(".")  # a fully qualified name: the same host
    for domain in domains:
        suffix = "." + domain.lower().removesuffix(".")
        if hostname.endswith(suffix) and len(hostname) > len(suffix):
            key = path[1:] if path.startswith("/") else path
            return Target(hostname[: -len(suffix)], key or None, virtual_host=True)
    trimmed = path[1:] if path.startswith("/") else path
    if not trimmed:
        return Target(None, None)
    bucket, slash, key = trimmed.partition("/")
    return Target(bucket, key if slash and key else None)


@dataclass
class S3Request:
    """What a handler gets."""

    ctx: Context
    request: Request
    signed: sigv4.SignedRequest
    target: Target
    caller: Principal | None  # None: not authenticated (CORS preflight, POST form)
    request_id: str
    signing: sigv4.SigningContext | None = None
    _query: dict[str, str] = field(default_factory=dict)
    _headers: dict[str, str] = field(default_factory=dict)
    _hoisted: list[tuple[str, str]] = field(default_factory=list)
    _decoder: ChunkedDecoder | None = None

    def __post_init__(self) -> None:
        # The first of each header, as Starlette's ``headers.get`` (latin-1),
        # by name: handlers ask some twenty times per request.
        for raw_name, raw_value in reversed(self.request.scope["headers"]):
            self._headers[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
        items = self._query_items()
        for name, value in reversed(items):
            bad = _UNECHOABLE.search(value)
            if bad is not None:
                # Parameters are echoed in XML answers (Prefix, Marker, ...),
                # which could not carry this; no key holds one (core/paths).
                raise InvalidArgumentS3(
                    f"the query parameter {name[:64]} holds U+{ord(bad.group()):04X}, "
                    "which XML 1.0 cannot carry",
                    ArgumentName=name[:64],
                )
            self._query[name] = value
        if "X-Amz-Signature" in self._query or "Signature" in self._query:
            self._hoist(items)

    def _hoist(self, items: list[tuple[str, str]]) -> None:
        """A presigned URL's ``x-amz-*`` parameters are headers, as AWS takes
        them: botocore's SigV2 presigner puts metadata and tagging there, and
        the JavaScript SDK v3's moves every ``x-amz-*`` header there. The
        signature covered them, but they were ignored: an object stored
        without its metadata, an ``x-amz-acl`` or a wrong checksum let
        through (found by review). A header of the same name wins."""
        sent = set(self._headers)
        for name, value in items:
            low = name.lower()
            if low.startswith("x-amz-") and low not in _NOT_HOISTED and low not in sent:
                self._headers.setdefault(low, value)
                self._hoisted.append((low, value))

    def header_items(self) -> list[tuple[str, str]]:
        """Every header as sent (names lower-cased, repeats kept), then a
        presigned URL's ``x-amz-*`` parameters (``_hoist``)."""
        return [*self.request.headers.items(), *self._hoisted]

    def _query_items(self) -> list[tuple[str, str]]:
        """The query's parameters as the signature read them: a raw ``+``
        is a space (Starlette's reading) unless what was signed read it as
        a ``+``."""
        raw: bytes = self.request.scope.get("query_string", b"")
        if self.signing is None or self.signing.plus_is_space or b"+" not in raw:
            return self.request.query_params.multi_items()
        text = raw.decode("latin-1").replace("+", "%2B")
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")

    @property
    def principal(self) -> Principal:
        if self.caller is None:
            raise AccessDenied("this request is not signed")
        return self.caller

    # -- addressing --------------------------------------------------------

    @property
    def bucket(self) -> str:
        assert self.target.bucket is not None
        return self.target.bucket

    @property
    def key(self) -> str:
        assert self.target.key is not None
        return self.target.key

    @property
    def package(self) -> PackageRef:
        return PackageRef.by_name(self.bucket)

    @property
    def address(self) -> ObjectAddress:
        return ObjectAddress(self.package, self.key)

    # -- parameters --------------------------------------------------------

    def query(self, name: str) -> str | None:
        return self._query.get(name)

    def has_query(self, name: str) -> bool:
        return name in self._query

    def header(self, name: str) -> str | None:
        return self._headers.get(name.lower())

    # -- body --------------------------------------------------------------

    def body(self) -> AsyncIterator[bytes]:
        """The payload as the client meant it: ``aws-chunked`` decoded and its
        chunk signatures verified; a signed payload hash checked at the end
        (a mismatch raises before the last piece is handed on, so nothing is
        committed)."""
        stream, declared = self._decoded(whole_chunks=True)
        if declared is not None:
            assert self.signing is not None
            return _hashed(stream, self.signing)
        return stream

    def stored_body(self) -> tuple[AsyncIterator[bytes], str | None]:
        """``body`` for a body the store keeps, and the SHA-256 (hex) its
        signature declares, if any, for the store to check: it hashes the
        bytes anyway, so they are not hashed here a second time. Signed
        chunks stream through before their signature is checked (at each
        chunk's end, before the body ends): the store commits nothing
        before the end of the body and removes its blocks when it raises."""
        return self._decoded(whole_chunks=False)

    def _decoded(self, *, whole_chunks: bool) -> tuple[AsyncIterator[bytes], str | None]:
        stream = self.request.stream()
        signing = self.signing
        if signing is not None and signing.payload.streaming:
            self._decoder = ChunkedDecoder.for_request(
                stream, self.signed, signing, whole_chunks=whole_chunks
            )
            return aiter(self._decoder), None
        # A payload hash the signature covers holds for what is stored,
        # however the body is framed: an unsigned Content-Encoding must not
        # switch the check off (a fuzzing pass stored a forged body so).
        declared = (
            signing.payload_hash
            if signing is not None and signing.payload is sigv4.PayloadMode.SHA256
            else None
        )
        encoding = (self.header("content-encoding") or "").lower()
        if "aws-chunked" in encoding and self.header("x-amz-decoded-content-length"):
            # Unsigned requests (SigV2, presigned) may still be chunked.
            length, names = streaming_headers(self.signed)
            self._decoder = ChunkedDecoder(
                stream,
                sigv4.PayloadMode.STREAMING_UNSIGNED_TRAILER,
                trailer_names=names,
                decoded_length=length,
            )
            return aiter(self._decoder), declared
        if streaming_headers(self.signed)[1]:
            # A trailer comes only after aws-chunked framing: declared on a
            # plain body, its checksum would never arrive nor be verified.
            raise MalformedTrailer(
                "The request contained trailing data that was not well-formed or did not "
                "conform to our published schema. (x-amz-trailer on a body that is not "
                "aws-chunked: no trailer can follow it)"
            )
        chunked = "chunked" in (self.header("transfer-encoding") or "").lower()
        if self.header("content-length") is None and self.request.method == "PUT" and not chunked:
            raise MissingContentLength("You must provide the Content-Length HTTP header.")
        return _plain(stream), declared

    def refuse_trailer(self, operation: str) -> None:
        """For operations that read their body whole and check no trailer
        (a declared trailer would be taken and never verified)."""
        if self.header("x-amz-trailer") is not None:
            raise InvalidRequest(
                f"The value specified in the x-amz-trailer header is not supported "
                f"({operation} takes no trailer)"
            )

    def trailing_checksums(self) -> Mapping[ChecksumAlgorithm, str]:
        """Checksums of the body's trailer (read once the body is)."""
        if self._decoder is None:
            return {}
        return {
            CHECKSUM_HEADERS[name]: value
            for name, value in self._decoder.trailers.items()
            if name in CHECKSUM_HEADERS
        }

    def trailer_algorithms(self) -> frozenset[ChecksumAlgorithm]:
        _, names = streaming_headers(self.signed)
        return frozenset(CHECKSUM_HEADERS[n] for n in names if n in CHECKSUM_HEADERS)

    async def read_small(self, limit: int) -> bytes:
        """A small body (XML documents), at most ``limit`` bytes."""
        out = bytearray()
        async for piece in self.body():
            out += piece
            if len(out) > limit:
                raise MalformedXMLError(f"the request body is larger than {limit} bytes")
        return bytes(out)


async def _plain(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for piece in stream:
        if piece:
            yield piece


async def _hashed(
    stream: AsyncIterator[bytes], signing: sigv4.SigningContext
) -> AsyncIterator[bytes]:
    digest = hashlib.sha256()
    held = b""
    async for piece in stream:
        if not piece:
            continue
        if held:
            yield held
        digest.update(piece)
        held = piece
    signing.check_payload_sha256(digest.hexdigest())
    if held:
        yield held


# --- authentication -------------------------------------------------------------


async def authenticate(
    ctx: Context, signed: sigv4.SignedRequest, target: Target
) -> tuple[Principal, sigv4.SigningContext | None]:
    """The principal behind a signed request, after its signature is checked
    with the secret of its access key id (the auth service's record)."""
    kind = sigv4.detect_auth(signed)
    now = datetime.now(UTC)
    if kind is sigv4.AuthKind.ANONYMOUS:
        raise AccessDenied("Anonymous access is not allowed: sign the request")
    if kind in (sigv4.AuthKind.V4_HEADER, sigv4.AuthKind.V4_QUERY):
        auth = sigv4.parse_v4(signed)
        sigv4.check_no_session_token(auth.security_token)
        access = await ctx.access.resolve(auth.access_key_id)
        signing = sigv4.verify_v4(signed, auth, access.secret_key, now)
        return access.principal, signing
    v2 = sigv2.parse_v2(signed)
    sigv4.check_no_session_token(v2.security_token)
    access = await ctx.access.resolve(v2.access_key_id)
    sigv2.verify_v2(
        signed,
        v2,
        access.secret_key,
        now,
        virtual_host_bucket=target.bucket if target.virtual_host else None,
    )
    return access.principal, None
