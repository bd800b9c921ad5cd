"""aws-chunked decoding: AWS's published chunk signatures, random splits,
trailers with real CRC checksums, and hostile input that must fail fast."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import pytest
from awscrt import checksums
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from jointcloud.api.s3.chunked import ChunkedDecoder, MalformedChunk, streaming_headers
from jointcloud.api.s3.sigv4 import (
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    IncompleteBody,
    InvalidArgument,
    InvalidRequest,
    MalformedTrailer,
    PayloadMode,
    Scope,
    SignatureDoesNotMatch,
    SignedRequest,
    SigningContext,
    derive_signing_key,
)

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SCOPE = Scope("20130524", "us-east-1")
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
# AWS S3 API reference, "Transferring Payload in Multiple Chunks": 64 KiB
# and 1 KiB of 'a', then the final chunk (also in aws-c-auth's tests).
CHUNK_SIGNATURES = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
# aws-c-auth tests/test_chunked_signing.c: trailers first/second/third
# signed after the final chunk above.
TRAILER_SIGNATURE = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"
PAYLOAD = b"a" * 66560


def context(mode: PayloadMode = PayloadMode.STREAMING_SIGNED) -> SigningContext:
    return SigningContext(
        access_key_id="AKIAIOSFODNN7EXAMPLE",
        scope=SCOPE,
        amz_date="20130524T000000Z",
        seed_signature=SEED,
        payload=mode,
        payload_hash=mode.value,
        signing_key=derive_signing_key(SECRET, SCOPE),
    )


def doc_body(trailer: bool = False) -> bytes:
    s1, s2, s3 = (s.encode() for s in CHUNK_SIGNATURES)
    body = (
        b"10000;chunk-signature=" + s1 + b"\r\n" + b"a" * 65536 + b"\r\n"
        b"400;chunk-signature=" + s2 + b"\r\n" + b"a" * 1024 + b"\r\n"
        b"0;chunk-signature=" + s3 + b"\r\n"
    )
    if trailer:
        return body + (
            b"first:1st\r\nsecond:2nd\r\nthird:3rd\r\n"
            b"x-amz-trailer-signature:" + TRAILER_SIGNATURE.encode() + b"\r\n\r\n"
        )
    return body + b"\r\n"


async def pieces(data: bytes, cuts: Sequence[int] = ()) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(data))):
        yield data[start:cut]
        start = cut
    yield data[start:]


def decode(decoder: ChunkedDecoder) -> bytes:
    async def run() -> bytes:
        return b"".join([part async for part in decoder])

    return asyncio.run(asyncio.wait_for(run(), timeout=10))


def test_aws_documented_chunk_signatures() -> None:
    body = doc_body()
    assert len(body) == 66824  # the example's Content-Length
    decoder = ChunkedDecoder(
        pieces(body), PayloadMode.STREAMING_SIGNED, signing=context(), decoded_length=66560
    )
    assert decode(decoder) == PAYLOAD
    assert decoder.finished and decoder.decoded_length == 66560 and decoder.trailers == {}


def test_signed_trailer_vector() -> None:
    decoder = ChunkedDecoder(
        pieces(doc_body(trailer=True)),
        PayloadMode.STREAMING_SIGNED_TRAILER,
        signing=context(PayloadMode.STREAMING_SIGNED_TRAILER),
        trailer_names=["first", "second", "third"],
    )
    assert decode(decoder) == PAYLOAD
    assert decoder.trailers == {"first": "1st", "second": "2nd", "third": "3rd"}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=66900), max_size=40),
    st.booleans(),
    st.booleans(),
)
def test_any_split_decodes_the_same(cuts: list[int], trailer: bool, whole_chunks: bool) -> None:
    mode = PayloadMode.STREAMING_SIGNED_TRAILER if trailer else PayloadMode.STREAMING_SIGNED
    decoder = ChunkedDecoder(
        pieces(doc_body(trailer), cuts),
        mode,
        signing=context(mode),
        trailer_names=["first", "second", "third"] if trailer else (),
        whole_chunks=whole_chunks,
    )
    assert decode(decoder) == PAYLOAD


def test_one_byte_pieces() -> None:
    body = doc_body(trailer=True)

    async def bytewise() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            yield body[i : i + 1]

    decoder = ChunkedDecoder(
        bytewise(),
        PayloadMode.STREAMING_SIGNED_TRAILER,
        signing=context(PayloadMode.STREAMING_SIGNED_TRAILER),
        trailer_names=["first", "second", "third"],
    )
    assert decode(decoder) == PAYLOAD


def unsigned_body(data: bytes, chunk: int, checksum_name: str, checksum: str) -> bytes:
    out = b""
    for i in range(0, len(data), chunk):
        part = data[i : i + chunk]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n%s:%s\r\n\r\n" % (checksum_name.encode(), checksum.encode())


@settings(max_examples=40, deadline=None)
@given(
    st.binary(max_size=5000),
    st.integers(min_value=1, max_value=700),
    st.lists(st.integers(min_value=1, max_value=6000), max_size=20),
)
def test_unsigned_trailer_with_crc_checksums(data: bytes, chunk: int, cuts: list[int]) -> None:
    for name, value in (
        ("x-amz-checksum-crc32", checksums.crc32(data).to_bytes(4, "big")),
        ("x-amz-checksum-crc32c", checksums.crc32c(data).to_bytes(4, "big")),
        ("x-amz-checksum-crc64nvme", checksums.crc64nvme(data).to_bytes(8, "big")),
        ("x-amz-checksum-sha256", hashlib.sha256(data).digest()),
    ):
        encoded = base64.b64encode(value).decode()
        body = unsigned_body(data, chunk, name, encoded)
        decoder = ChunkedDecoder(
            pieces(body, cuts),
            PayloadMode.STREAMING_UNSIGNED_TRAILER,
            trailer_names=[name],
            decoded_length=len(data),
        )
        assert decode(decoder) == data
        assert decoder.trailers == {name: encoded}


def test_botocore_aws_chunked_body() -> None:
    """The exact bytes botocore sends with STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    data = bytes(range(256)) * 50
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=1000,
    )
    body = wrapper.read()
    decoder = ChunkedDecoder(
        pieces(body, range(0, len(body), 333)),
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        trailer_names=["x-amz-checksum-crc32"],
    )
    assert decode(decoder) == data
    expected = base64.b64encode(checksums.crc32(data).to_bytes(4, "big")).decode()
    assert decoder.trailers["x-amz-checksum-crc32"] == expected


def test_boto3_put_object_streams_with_a_trailer() -> None:
    """boto3 over https with its default checksum behaviour: an unsigned
    aws-chunked body with a CRC trailer; the request verifies and decodes."""
    import datetime as dt

    import boto3
    from botocore.config import Config

    from jointcloud.api.s3.sigv4 import parse_v4, split_query, verify_v4

    class Captured(Exception):
        def __init__(self, request: Any) -> None:
            super().__init__("captured")
            self.request = request

    client = boto3.client(
        "s3",
        aws_access_key_id="AKID",
        aws_secret_access_key="SECRET",
        region_name="us-east-1",
        endpoint_url="https://s3.example.test",
        config=Config(signature_version="s3v4"),
    )

    def grab(request: object, **_: object) -> None:
        raise Captured(request)

    client.meta.events.register("before-send.s3", grab)
    data = b"x" * 3000 + b"y"
    with pytest.raises(Captured) as caught:
        client.put_object(Bucket="b", Key="k", Body=io.BytesIO(data))
    request = caught.value.request
    parts = urlsplit(request.url)
    headers = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()]
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("Host", parts.netloc))
    req = SignedRequest(request.method, parts.path, split_query(parts.query), headers)
    ctx = verify_v4(req, parse_v4(req), "SECRET", dt.datetime.now(dt.UTC))
    # boto3's current default: an aws-chunked body with a checksum trailer
    assert ctx.payload.streaming, f"this botocore sends {ctx.payload} (no aws-chunked body)"
    body = request.body.read() if hasattr(request.body, "read") else request.body
    decoder = ChunkedDecoder.for_request(pieces(body, [7, 100, 2000]), req, ctx)
    assert decode(decoder) == data
    ((name, _value),) = decoder.trailers.items()
    assert name.startswith("x-amz-checksum-")


def test_for_request_reads_headers() -> None:
    req = SignedRequest(
        "PUT",
        "/b/k",
        [],
        [("x-amz-decoded-content-length", "66560"), ("x-amz-trailer", " X-Amz-Checksum-CRC32 ")],
    )
    assert streaming_headers(req) == (66560, ("x-amz-checksum-crc32",))
    for bad in ("-1", "1e3", "x"):
        with pytest.raises(InvalidArgument):
            streaming_headers(
                SignedRequest("PUT", "/", [], [("x-amz-decoded-content-length", bad)])
            )
    twice = "x-amz-checksum-crc32,x-amz-checksum-crc32"
    with pytest.raises(InvalidArgument):
        streaming_headers(SignedRequest("PUT", "/", [], [("x-amz-trailer", twice)]))
    # found by fuzzing: 16,000 names took 10 s of the event loop (a list
    # searched for every name); an unknown checksum was silently ignored
    with pytest.raises(InvalidArgument, match="unknown checksum"):
        streaming_headers(SignedRequest("PUT", "/", [], [("x-amz-trailer", "x-amz-checksum-md5")]))
    # As AWS: a trailer is one checksum and nothing else (others were taken
    # and never checked; found by review).
    many = ",".join(f"x-a{i}" for i in range(16_000))
    both = "x-amz-checksum-crc32,x-amz-checksum-sha256"
    for trailer, why in (
        (many, "not supported"),
        ("content-md5", "not supported"),
        (both, "Multiple checksum Types are not allowed"),
    ):
        with pytest.raises(InvalidRequest) as e:
            streaming_headers(SignedRequest("PUT", "/", [], [("x-amz-trailer", trailer)]))
        assert why in e.value.message


# --- hostile and broken input ---------------------------------------------------


def run_signed(body: bytes, **kwargs: object) -> ChunkedDecoder:
    decoder = ChunkedDecoder(
        pieces(body, range(0, len(body), 4096)),
        PayloadMode.STREAMING_SIGNED,
        signing=context(),
        **kwargs,  # type: ignore[arg-type]
    )
    decode(decoder)
    return decoder


def test_bad_chunk_signature_mid_stream() -> None:
    body = doc_body()
    bad = body.replace(CHUNK_SIGNATURES[1].encode(), b"0" * 64)
    with pytest.raises(SignatureDoesNotMatch, match="chunk 2"):
        run_signed(bad)
    # A flipped data byte in chunk 1 breaks chunk 1's signature.
    flipped = bytearray(body)
    flipped[200] ^= 1
    with pytest.raises(SignatureDoesNotMatch, match="chunk 1"):
        run_signed(bytes(flipped))


def yielded_before_refusal(decoder: ChunkedDecoder) -> bytes:
    """What ``decoder`` yielded before it raised ``SignatureDoesNotMatch``."""
    got: list[bytes] = []

    async def run() -> None:
        async for part in decoder:
            got.append(part)

    with pytest.raises(SignatureDoesNotMatch):
        asyncio.run(run())
    return b"".join(got)


def test_nothing_unverified_is_yielded() -> None:
    body = doc_body().replace(CHUNK_SIGNATURES[1].encode(), b"0" * 64)
    decoder = ChunkedDecoder(pieces(body), PayloadMode.STREAMING_SIGNED, signing=context())
    assert yielded_before_refusal(decoder) == b"a" * 65536  # chunk 1 only


def test_a_streamed_chunk_yields_its_last_piece_only_once_verified() -> None:
    """``whole_chunks=False`` (the store's bodies): a chunk streams through
    as it comes, but its last piece waits for its signature, so a bad one
    raises before the chunk, and so the body, is complete."""

    def streamed(body: bytes) -> bytes:
        decoder = ChunkedDecoder(
            pieces(body, range(0, len(body), 256)),
            PayloadMode.STREAMING_SIGNED,
            signing=context(),
            whole_chunks=False,
        )
        got = yielded_before_refusal(decoder)
        assert not decoder.finished
        return got

    bad_second = doc_body().replace(CHUNK_SIGNATURES[1].encode(), b"0" * 64)
    got = streamed(bad_second)
    # Chunk 1 whole, then chunk 2 but for its last piece.
    assert set(got) == {ord("a")} and 65536 < len(got) < 65536 + 1024
    flipped = bytearray(doc_body())
    flipped[200] ^= 1
    got = streamed(bytes(flipped))
    assert 0 < len(got) < 65536


def test_chunks_reordered_or_dropped_fail() -> None:
    body = doc_body()
    s1, s2 = CHUNK_SIGNATURES[0].encode(), CHUNK_SIGNATURES[1].encode()
    first = b"10000;chunk-signature=" + s1 + b"\r\n" + b"a" * 65536 + b"\r\n"
    with pytest.raises(SignatureDoesNotMatch):
        run_signed(body.replace(first, b""))  # chunk 1 dropped
    with pytest.raises(SignatureDoesNotMatch):
        run_signed(body.replace(s1, s2))


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        (doc_body()[:-2], IncompleteBody, "ended"),  # no final CRLF
        (doc_body()[:66000], IncompleteBody, "ended"),
        (doc_body()[:65620], IncompleteBody, "ended inside chunk 1"),
        (doc_body()[:10], IncompleteBody, "ended"),
        (b"", IncompleteBody, "ended"),
        (doc_body() + b"extra", MalformedChunk, "after the final chunk"),
        (b"g;chunk-signature=" + b"0" * 64 + b"\r\n", MalformedChunk, "header"),
        (b"-1;chunk-signature=" + b"0" * 64 + b"\r\n", MalformedChunk, "header"),
        (b"0x10;chunk-signature=" + b"0" * 64 + b"\r\n", MalformedChunk, "header"),
        (b"10\r\n" + b"a" * 16 + b"\r\n", MalformedChunk, "header"),  # no signature
        (b"1" * 17 + b";chunk-signature=" + b"0" * 64 + b"\r\n", MalformedChunk, "header"),
        (b"ffffffff;chunk-signature=" + b"0" * 64 + b"\r\n", MalformedChunk, "at most"),
        (b"1" * 5000, MalformedChunk, "longer than 4096"),
        (b"1;chunk-signature=" + b"0" * 64 + b"\n", IncompleteBody, "ended"),
    ],
)
def test_broken_signed_bodies(body: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        run_signed(body)


def test_missing_crlf_after_chunk_data() -> None:
    s1 = CHUNK_SIGNATURES[0].encode()
    body = b"10000;chunk-signature=" + s1 + b"\r\n" + b"a" * 65536 + b"XX"
    with pytest.raises(MalformedChunk, match="CRLF"):
        run_signed(body)


def test_decoded_length_mismatch() -> None:
    with pytest.raises(MalformedChunk, match="longer than x-amz-decoded-content-length"):
        run_signed(doc_body(), decoded_length=1000)
    with pytest.raises(IncompleteBody, match="says 70000"):
        run_signed(doc_body(), decoded_length=70000)


def test_huge_line_is_refused_without_buffering_it_all() -> None:
    consumed = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1000
            yield b"1" * 1000

    decoder = ChunkedDecoder(endless(), PayloadMode.STREAMING_UNSIGNED_TRAILER)
    with pytest.raises(MalformedChunk, match="longer than"):
        decode(decoder)
    assert consumed <= 6000


def test_endless_trailers_are_refused() -> None:
    async def endless() -> AsyncIterator[bytes]:
        yield b"0\r\n"
        while True:
            yield b"x-amz-checksum-crc32:AAAAAA==\r\n"

    decoder = ChunkedDecoder(
        endless(), PayloadMode.STREAMING_UNSIGNED_TRAILER, trailer_names=["x-amz-checksum-crc32"]
    )
    with pytest.raises(MalformedTrailer, match="longer than"):
        decode(decoder)


@pytest.mark.parametrize(
    ("trailers", "names", "match"),
    [
        (b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n", [], "not declared"),
        (b"\r\n", ["x-amz-checksum-crc32"], "was not sent"),
        (b"x-amz-checksum-crc32:A\r\nx-amz-checksum-crc32:A\r\n\r\n", ["x-amz-checksum-crc32"],
         "twice"),
        (b"no colon here\r\n\r\n", ["x-amz-checksum-crc32"], "not name:value"),
        (b"x-amz-checksum-crc32:\xff\r\n\r\n", ["x-amz-checksum-crc32"], "not ASCII"),
    ],
)  # fmt: skip
def test_broken_unsigned_trailers(trailers: bytes, names: list[str], match: str) -> None:
    decoder = ChunkedDecoder(
        pieces(b"3\r\nabc\r\n0\r\n" + trailers),
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        trailer_names=names,
    )
    with pytest.raises(MalformedTrailer, match=match):
        decode(decoder)


def test_unsigned_trailer_truncated() -> None:
    decoder = ChunkedDecoder(
        pieces(b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n"),
        PayloadMode.STREAMING_UNSIGNED_TRAILER,
        trailer_names=["x-amz-checksum-crc32"],
    )
    with pytest.raises(IncompleteBody):
        decode(decoder)


def test_bad_or_missing_trailer_signature() -> None:
    mode = PayloadMode.STREAMING_SIGNED_TRAILER
    names = ["first", "second", "third"]
    tampered = doc_body(trailer=True).replace(b"2nd", b"2ND")
    with pytest.raises(SignatureDoesNotMatch, match="trailer"):
        decode(ChunkedDecoder(pieces(tampered), mode, signing=context(mode), trailer_names=names))
    unsigned = doc_body(trailer=True).split(b"x-amz-trailer-signature")[0] + b"\r\n"
    with pytest.raises(MalformedTrailer, match="x-amz-trailer-signature"):
        decode(ChunkedDecoder(pieces(unsigned), mode, signing=context(mode), trailer_names=names))


def test_constructor_guards() -> None:
    with pytest.raises(ValueError):
        ChunkedDecoder(pieces(b""), PayloadMode.UNSIGNED)
    with pytest.raises(ValueError):
        ChunkedDecoder(pieces(b""), PayloadMode.STREAMING_SIGNED)
    with pytest.raises(InvalidArgument):
        ChunkedDecoder(pieces(b""), PayloadMode.STREAMING_SIGNED, signing=context(),
                       trailer_names=["x"])  # fmt: skip
    assert PayloadMode.STREAMING_SIGNED.value == STREAMING_SIGNED
    assert PayloadMode.STREAMING_SIGNED_TRAILER.value == STREAMING_SIGNED_TRAILER
