"""Decoder for ``aws-chunked`` request bodies (S3 streaming uploads).

Three framings, chosen by ``x-amz-content-sha256``
(:class:`~jointcloud.api.s3.sigv4.PayloadMode`)::

    STREAMING-AWS4-HMAC-SHA256-PAYLOAD
        hex;chunk-signature=SIG CRLF data CRLF ... 0;chunk-signature=SIG CRLF CRLF
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER
        ... 0;chunk-signature=SIG CRLF
        name:value CRLF ... x-amz-trailer-signature:SIG CRLF CRLF
    STREAMING-UNSIGNED-PAYLOAD-TRAILER
        hex CRLF data CRLF ... 0 CRLF name:value CRLF ... CRLF

Every chunk signature is chained from the request's seed signature
(``AWS4-HMAC-SHA256-PAYLOAD`` string to sign) and the trailer signature from
the last chunk's (``AWS4-HMAC-SHA256-TRAILER``, over the sorted
``name:value\\n`` trailer lines). By default a signed chunk is held (at
most ``max_chunk_size`` bytes) until its signature verified, so every byte
the decoder yields is authenticated. With ``whole_chunks=False`` a signed
chunk streams through as it comes, hashed on the way, and its last piece is
yielded only once its signature verified: a mismatch raises before the
iteration ends. That is for a consumer that takes nothing before the end of
the body (the store: its blocks are committed only once the body ended, and
removed when it raises), and it holds no chunk in memory (a 16 MiB chunk
held, the next one read and joined while the previous one was still
referenced cost ~50 MiB per upload; decisions.md, "Upload memory").
Unsigned chunks always stream through as they come.

Input is any async iterable of byte pieces, split anywhere. Every line is
bounded (chunk header ``max_line``, the whole trailer section
``max_trailer_bytes``), every chunk size too, so hostile input cannot make
the decoder buffer without bound; a body that ends early raises
:class:`~jointcloud.api.s3.sigv4.IncompleteBody`. The decoder never waits
for anything but the next piece of its input.

After the iteration ends, :attr:`ChunkedDecoder.trailers` holds the trailers
(names lower-case, e.g. ``x-amz-checksum-crc32``) for the caller to check
against the checksums it computed, and :attr:`ChunkedDecoder.decoded_length`
the payload size; given ``decoded_length=`` (``x-amz-decoded-content-length``)
the decoder itself refuses a body of another size.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from jointcloud.api.s3.sigv4 import (
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    MalformedTrailer,
    PayloadMode,
    SignatureDoesNotMatch,
    SignedRequest,
    SigningContext,
)
from jointcloud.core.models import ChecksumAlgorithm

MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_LINE = 4096
MAX_TRAILER_BYTES = 16 * 1024
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_SIGNED_HEADER = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-f]{64})")
_UNSIGNED_HEADER = re.compile(rb"([0-9a-fA-F]{1,16})(?:;[\x21-\x7e \t]*)?")
_TRAILER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_CHECKSUM_TRAILERS = frozenset(f"x-amz-checksum-{a.value.lower()}" for a in ChecksumAlgorithm)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class MalformedChunk(InvalidRequest):
    """The ``aws-chunked`` framing is broken (bad size line, missing CRLF,
    an oversized chunk, bytes after the end)."""


def streaming_headers(req: SignedRequest) -> tuple[int | None, tuple[str, ...]]:
    """``x-amz-decoded-content-length`` and the names ``x-amz-trailer``
    declares (lower-case), from a streaming request's headers."""
    length: int | None = None
    raw_length = req.header("x-amz-decoded-content-length")
    if raw_length is not None:
        text = raw_length.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 19:
            raise InvalidArgument("x-amz-decoded-content-length must be a non-negative integer")
        length = int(text)
    names: dict[str, None] = {}  # ordered, and a set: a list made this quadratic
    for value in req.header_values("x-amz-trailer"):
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            if not _TRAILER_NAME.fullmatch(name) or name == TRAILER_SIGNATURE:
                raise InvalidArgument(f"x-amz-trailer names an invalid trailer {name[:64]!r}")
            if name.startswith("x-amz-checksum-") and name not in _CHECKSUM_TRAILERS:
                raise InvalidArgument(f"x-amz-trailer names an unknown checksum {name[:64]}")
            if name not in _CHECKSUM_TRAILERS:
                # As AWS: a trailer carries a checksum, nothing else (another
                # name would be taken and never checked).
                raise InvalidRequest(
                    "The value specified in the x-amz-trailer header is not supported "
                    f"({name[:64]}: a trailer carries an x-amz-checksum-* value only)"
                )
            if name in names:
                raise InvalidArgument(f"x-amz-trailer names {name[:64]} twice")
            names[name] = None
            if len(names) > 1:
                raise InvalidRequest(
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types "
                    "are not allowed."
                )
    return length, tuple(names)


class _Reader:
    """Bounded reads over an async iterable of byte pieces."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self._it = aiter(source)
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    async def _next_piece(self) -> bytes | None:
        if self._eof:
            return None
        while True:
            try:
                piece = await anext(self._it)
            except StopAsyncIteration:
                self._eof = True
                return None
            if piece:
                return bytes(piece)

    def _buffered(self) -> int:
        return len(self._buf) - self._pos

    def _append(self, piece: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += piece

    async def readline(self, limit: int, what: str) -> bytes:
        """A CRLF-terminated line (without the CRLF) of at most ``limit`` bytes."""
        scan = self._pos
        while True:
            end = self._buf.find(b"\r\n", scan)
            if end >= 0:
                if end - self._pos > limit:
                    break
                line = bytes(self._buf[self._pos : end])
                self._pos = end + 2
                return line
            if self._buffered() > limit + 1:
                break
            scan = max(self._pos, len(self._buf) - 1)
            piece = await self._next_piece()
            if piece is None:
                raise IncompleteBody(f"the body ended inside a {what}")
            before = self._pos
            self._append(piece)
            scan -= before
        raise MalformedChunk(f"a {what} is longer than {limit} bytes")

    async def read_some(self, n: int, what: str) -> bytes:
        """Between 1 and ``n`` bytes."""
        if self._buffered():
            end = min(len(self._buf), self._pos + n)
            out = bytes(self._buf[self._pos : end])
            self._pos = end
            return out
        piece = await self._next_piece()
        if piece is None:
            raise IncompleteBody(f"the body ended inside {what}")
        if len(piece) <= n:
            return piece
        self._append(piece[n:])
        return piece[:n]

    async def read_exactly(self, n: int, what: str) -> bytes:
        parts: list[bytes] = []
        while n:
            part = await self.read_some(n, what)
            parts.append(part)
            n -= len(part)
        return b"".join(parts)

    async def expect_end(self) -> None:
        if self._buffered() or await self._next_piece() is not None:
            raise MalformedChunk("there are bytes after the final chunk")


class ChunkedDecoder:
    """Decode (and, for signed modes, verify) an ``aws-chunked`` body.

    Iterate it once with ``async for``; then read :attr:`trailers`."""

    def __init__(
        self,
        source: AsyncIterable[bytes],
        payload: PayloadMode,
        *,
        signing: SigningContext | None = None,
        trailer_names: Sequence[str] = (),
        decoded_length: int | None = None,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        max_line: int = MAX_LINE,
        max_trailer_bytes: int = MAX_TRAILER_BYTES,
        whole_chunks: bool = True,
    ) -> None:
        if not payload.streaming:
            raise ValueError(f"{payload} is not an aws-chunked payload")
        if payload.signed_chunks and signing is None:
            raise ValueError("signed chunks need the request's signing context")
        if not payload.has_trailer and trailer_names:
            raise InvalidArgument(f"x-amz-trailer is not allowed with {payload.value}")
        self._reader = _Reader(source)
        self._payload = payload
        self._signing = signing
        self._trailer_names = tuple(name.lower() for name in trailer_names)
        self._expected_length = decoded_length
        self._max_chunk = max_chunk_size
        self._max_line = max_line
        self._max_trailer = max_trailer_bytes
        self._whole_chunks = whole_chunks
        self._started = False
        self.decoded_length = 0
        self.finished = False
        self.trailers: dict[str, str] = {}

    @classmethod
    def for_request(
        cls,
        source: AsyncIterable[bytes],
        req: SignedRequest,
        ctx: SigningContext,
        *,
        whole_chunks: bool = True,
        **limits: int,
    ) -> ChunkedDecoder:
        """A decoder set up from a verified request's headers."""
        length, names = streaming_headers(req)
        return cls(
            source,
            ctx.payload,
            signing=ctx,
            trailer_names=names,
            decoded_length=length,
            whole_chunks=whole_chunks,
            **limits,
        )

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:
            raise RuntimeError("a ChunkedDecoder can be iterated once")
        self._started = True
        return self._decode()

    def _count(self, n: int) -> None:
        self.decoded_length += n
        if self._expected_length is not None and self.decoded_length > self._expected_length:
            raise MalformedChunk(
                f"the body is longer than x-amz-decoded-content-length ({self._expected_length})"
            )

    def _parse_size(self, line: bytes, index: int) -> tuple[int, str | None]:
        signed = self._payload.signed_chunks
        match = (_SIGNED_HEADER if signed else _UNSIGNED_HEADER).fullmatch(line)
        if match is None:
            shown = line[:80].decode("ascii", "replace")
            expect = "hex-size;chunk-signature=<64 hex>" if signed else "hex-size"
            raise MalformedChunk(f"chunk {index} header {shown!r} is not {expect}")
        size = int(match.group(1), 16)
        if size > self._max_chunk:
            raise MalformedChunk(
                f"chunk {index} is {size} bytes; chunks may be at most {self._max_chunk}"
            )
        return size, match.group(2).decode("ascii") if signed else None

    def _verify(self, index: int, previous: str, signature: str, hexdigest: str) -> None:
        assert self._signing is not None
        expected = self._signing.chunk_signature(previous, hexdigest)
        if not hmac.compare_digest(expected, signature):
            raise SignatureDoesNotMatch(
                f"the signature of chunk {index} does not match",
                string_to_sign=self._signing.chunk_string_to_sign(previous, hexdigest),
            )

    async def _crlf(self, index: int) -> None:
        if await self._reader.read_exactly(2, f"chunk {index}") != b"\r\n":
            raise MalformedChunk(f"chunk {index} data is not followed by CRLF")

    async def _decode(self) -> AsyncIterator[bytes]:
        reader = self._reader
        previous = self._signing.seed_signature if self._signing else ""
        index = 0
        while True:
            index += 1
            line = await reader.readline(self._max_line, f"chunk {index} header")
            size, signature = self._parse_size(line, index)
            if signature is not None and self._whole_chunks:
                data = await reader.read_exactly(size, f"chunk {index}")
                self._verify(index, previous, signature, hashlib.sha256(data).hexdigest())
                previous = signature
                if size:
                    self._count(size)
                    yield data
                del data  # not kept while the next chunk is read
            elif signature is not None:
                digest = hashlib.sha256()
                remaining = size
                while remaining:
                    piece = await reader.read_some(remaining, f"chunk {index}")
                    remaining -= len(piece)
                    digest.update(piece)
                    self._count(len(piece))
                    if remaining:
                        yield piece
                self._verify(index, previous, signature, digest.hexdigest())
                previous = signature
                if size:
                    yield piece  # the chunk's last piece: only once it verified
            else:
                remaining = size
                while remaining:
                    piece = await reader.read_some(remaining, f"chunk {index}")
                    remaining -= len(piece)
                    self._count(len(piece))
                    yield piece
            if size == 0:
                break
            await self._crlf(index)
        if self._payload.has_trailer:
            await self._read_trailers(previous)
        elif await reader.readline(self._max_line, "final CRLF") != b"":
            raise MalformedChunk("the final chunk is not followed by an empty line")
        await reader.expect_end()
        if self._expected_length is not None and self.decoded_length != self._expected_length:
            raise IncompleteBody(
                f"the body has {self.decoded_length} bytes; "
                f"x-amz-decoded-content-length says {self._expected_length}"
            )
        self.finished = True

    async def _read_trailers(self, previous: str) -> None:
        budget = self._max_trailer
        lines: list[tuple[str, str]] = []
        while True:
            try:
                line = await self._reader.readline(max(budget, 0), "trailer")
            except MalformedChunk:
                raise MalformedTrailer(
                    f"the trailers are longer than {self._max_trailer} bytes"
                ) from None
            budget -= len(line) + 2
            if not line:
                break
            if budget < 0:
                raise MalformedTrailer(f"the trailers are longer than {self._max_trailer} bytes")
            try:
                text = line.decode("ascii")
            except UnicodeDecodeError:
                raise MalformedTrailer("a trailer line is not ASCII") from None
            name, colon, value = text.partition(":")
            name = name.strip().lower()
            if not colon or not _TRAILER_NAME.fullmatch(name):
                raise MalformedTrailer(f"the trailer line {text[:80]!r} is not name:value")
            lines.append((name, value.strip(" \t")))

        signature: str | None = None
        if self._payload.signed_chunks:
            if not lines or lines[-1][0] != TRAILER_SIGNATURE:
                raise MalformedTrailer("the trailers do not end with x-amz-trailer-signature")
            signature = lines.pop()[1]
            if not _HEX64.fullmatch(signature):
                raise MalformedTrailer("x-amz-trailer-signature is not 64 hexadecimal digits")
        trailers: dict[str, str] = {}
        for name, value in lines:
            if name == TRAILER_SIGNATURE:
                raise MalformedTrailer("x-amz-trailer-signature is only allowed last")
            if name in trailers:
                raise MalformedTrailer(f"the trailer {name} appears twice")
            if name not in self._trailer_names:
                raise MalformedTrailer(f"the trailer {name} was not declared in x-amz-trailer")
            trailers[name] = value
        missing = [name for name in self._trailer_names if name not in trailers]
        if missing:
            raise MalformedTrailer(f"the declared trailer {missing[0]} was not sent")
        if signature is not None:
            assert self._signing is not None
            canonical = "".join(f"{name}:{trailers[name]}\n" for name in sorted(trailers))
            expected = self._signing.trailer_signature(previous, canonical)
            if not hmac.compare_digest(expected, signature):
                raise SignatureDoesNotMatch("the trailer signature does not match")
        self.trailers = trailers
