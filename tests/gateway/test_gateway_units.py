"""The facade's pure pieces: the XML of the seed, the Go SDK's error text,
URLs without a scheme, parameter types."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from jointcloud.api.gateway.envelope import GatewayError, render_json, render_xml, xml_name
from jointcloud.api.gateway.params import Params
from jointcloud.api.gateway.s3client import S3, describe
from jointcloud.api.gateway.upload import (
    MAX_PARTS,
    PART_SIZE,
    MiB,
    PartReader,
    part_size_for,
    read_part,
    upload_object,
)
from jointcloud.api.gateway.urls import service_url


def test_xml_as_the_seed_shows_it() -> None:
    assert render_xml(
        0, "success", {"etag": '"5c35"', "content_length": 1, "last_modified": 2}
    ) == (
        "<map><code>0</code><msg>success</msg><data><ETag>&#34;5c35&#34;</ETag>"
        "<ContentLength>1</ContentLength><LastModified>2</LastModified></data></map>"
    )
    assert render_xml(
        0, "success", [{"key": "dir/", "size": 0, "kind": "PRE"}, {"key": "a&b"}]
    ) == (
        "<map><code>0</code><msg>success</msg>"
        "<data><Key>dir/</Key><Size>0</Size><Kind>PRE</Kind></data>"
        "<data><Key>a&amp;b</Key></data></map>"
    )
    assert render_xml(-1, "a <b>") == "<map><code>-1</code><msg>a &lt;b&gt;</msg></map>"
    assert (
        render_xml(0, "success", "text")
        == "<map><code>0</code><msg>success</msg><data>text</data></map>"
    )
    assert render_xml(0, "success", []) == "<map><code>0</code><msg>success</msg></map>"
    names = ["access_key_id", "secret_key", "endpoint", "upload_id", "part_number", "initiated"]
    assert [xml_name(n) for n in names] == [
        "AccessKeyId",
        "SecretKey",
        "Endpoint",
        "UploadId",
        "PartNumber",
        "Initiated",
    ]
    # JSON: the seed's key order (code, data, msg), no data when there is none
    assert render_json(0, "创建成功") == '{"code":0,"msg":"创建成功"}'.encode()
    assert render_json(0, "success", [1]) == b'{"code":0,"data":[1],"msg":"success"}'


def _client_error(code: str, message: str, status: int, op: str) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "RequestId": "171B0FD4A3C943E6",
            "HostId": "",
            "HTTPStatusCode": status,
        },
    }
    return ClientError(response, op)


def test_errors_as_the_go_sdk_prints_them() -> None:
    seed = describe(
        _client_error("BucketAlreadyExists", "taken", 409, "CreateBucket"), "CreateBucket"
    )
    assert seed == (
        "operation error S3: CreateBucket, https response error StatusCode: 409, "
        "RequestID: 171B0FD4A3C943E6, HostID: , BucketAlreadyExists: "
    )
    seed = describe(
        _client_error("BucketNotEmpty", "The bucket you tried to delete is not empty", 409, "x"),
        "DeleteBucket",
    )
    assert seed == (
        "operation error S3: DeleteBucket, https response error StatusCode: 409, "
        "RequestID: 171B0FD4A3C943E6, HostID: , api error BucketNotEmpty: "
        "The bucket you tried to delete is not empty"
    )
    # a HEAD's error has no body: botocore says "404", the Go SDK "NotFound"
    head = describe(_client_error("404", "Not Found", 404, "HeadObject"), "HeadObject")
    assert head.endswith("StatusCode: 404, RequestID: 171B0FD4A3C943E6, HostID: , NotFound: ")
    head = describe(_client_error("403", "Forbidden", 403, "HeadObject"), "HeadObject")
    assert head.endswith(", api error Forbidden: Forbidden")
    # AccessDenied keeps its reason (botocore models it, the Go SDK does not)
    denied = describe(
        _client_error("AccessDenied", "caveat forbids", 403, "PutObject"), "PutObject"
    )
    assert denied.endswith("api error AccessDenied: caveat forbids")
    down = describe(EndpointConnectionError(endpoint_url="http://x"), "ListBuckets")
    assert down.startswith("operation error S3: ListBuckets, Could not connect")


def test_urls_without_a_scheme() -> None:
    assert service_url("127.0.0.1:7890", "x") == "http://127.0.0.1:7890"
    assert service_url("localhost:7890/", "x") == "http://localhost:7890"
    assert service_url("gateway.example.net", "x") == "https://gateway.example.net"
    assert service_url(
        "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S@us1.example.io:7777", "x"
    ) == ("https://us1.example.io:7777")
    assert service_url("http://s3.example.net/", "x") == "http://s3.example.net"
    with pytest.raises(GatewayError, match="header Endpoint must be an http"):
        service_url("ftp://x", "header Endpoint")


def test_parameter_types() -> None:
    p = Params()
    for name, value in [("t1", True), ("t2", "true"), ("t3", "1"), ("f1", "0"), ("f2", "False")]:
        p.add(name, value)
    assert [p.boolean(n) for n in ("t1", "t2", "t3", "f1", "f2", "absent")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    p.add("bad", "yes please")
    with pytest.raises(GatewayError, match="invalid parameter bad"):
        p.boolean("bad")
    p.add("ms", 1665478773000)
    assert p.millis("ms") is not None and p.millis("ms").timestamp() == 1665478773  # type: ignore[union-attr]
    p.add("list", "a, b")
    assert p.texts("list") == ["a", "b"]
    # Repeated fields are one name each, as given (an S3 key may hold a comma)
    p.add("list", "c")
    assert p.texts("list") == ["a, b", "c"]
    p.add("json_list", '["x", "y"]')
    assert p.texts("json_list") == ["x", "y"]
    with pytest.raises(GatewayError, match="missing required parameter nothing"):
        p.text("nothing")
    p.add("n", "12")
    assert p.integer("n", low=1, high=12) == 12
    with pytest.raises(GatewayError, match="invalid parameter n: must be at most 11"):
        p.integer("n", high=11)


def test_part_size_keeps_within_the_part_limit() -> None:
    assert part_size_for(None) == PART_SIZE
    assert part_size_for(5 * 1024 * MiB) == PART_SIZE
    big = 200 * 1024 * MiB  # 200 GiB
    size = part_size_for(big)
    assert size % MiB == 0 and size * MAX_PARTS >= big and size > PART_SIZE
    # The client declares the length: more than an object can hold is refused.
    with pytest.raises(GatewayError, match=r"at most \d+ bytes \(5 TiB\)"):
        part_size_for(2**63)


async def test_a_part_over_the_memory_part_size_is_spooled_to_disk() -> None:
    """Parts grow with the declared length (up to 525 MiB for 5 TiB); what
    the facade holds in memory per part stays ``PART_SIZE``."""

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(20):
            yield bytes([i]) * MiB

    reader = PartReader(chunks())
    big = await read_part(reader, 12 * MiB)
    rest = await read_part(reader, 12 * MiB)
    try:
        assert (big.size, rest.size) == (12 * MiB, 8 * MiB)
        assert not isinstance(big.body, bytes)
        assert big.body._rolled  # type: ignore[union-attr]  # on disk, not in memory
        assert big.body.read() == b"".join(bytes([i]) * MiB for i in range(12))
    finally:
        await big.close()
        await rest.close()


async def test_parts_are_cut_anywhere_in_a_piece() -> None:
    data = bytes(range(256)) * 100  # 25,600 bytes in pieces of 3,000

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 3000):
            yield data[at : at + 3000]

    reader = PartReader(chunks())
    got = [await reader.read(7000) for _ in range(5)]
    assert [len(g) for g in got] == [7000, 7000, 7000, 4600, 0]
    assert b"".join(got) == data and reader.total == len(data)
    assert all(type(g) is bytes for g in got)  # botocore copies a bytearray body


class _TakesAtOnce:
    """An S3 that answers every call without waiting: a part sent is
    taken only when the uploader waits (for its oldest part), so the parts
    it holds then are exactly those it keeps in flight and the one it reads.
    Bodies are read as botocore reads them, and their MD5 kept by part."""

    def __init__(self) -> None:
        self.parts: dict[int, str] = {}
        self.completed: list[int] = []

    async def call(self, method: str, /, *, patience: float | None = None, **kw: Any) -> Any:
        if method == "create_multipart_upload":
            return {"UploadId": "u"}
        if method == "upload_part":
            body, digest = kw["Body"], hashlib.md5()
            if isinstance(body, bytes):
                digest.update(body)
            else:
                while block := body.read(64 * 1024):
                    digest.update(block)
            self.parts[kw["PartNumber"]] = digest.hexdigest()
            return {"ETag": digest.hexdigest()}
        assert method == "complete_multipart_upload", method
        self.completed = [p["PartNumber"] for p in kw["MultipartUpload"]["Parts"]]
        return {}


PIECE = 64 * 1024


def _piece(i: int) -> bytes:
    return bytes([i % 251]) * PIECE  # a new object each, as read from a socket


async def _file_pieces(count: int) -> AsyncIterator[bytes]:
    for i in range(count):
        yield _piece(i)


async def test_an_upload_holds_two_parts_in_flight_and_the_one_it_reads() -> None:
    """The facade's fixed cost per upload (found by review: ~105 MiB of
    ``jcs serve`` per /uploadObject, bench/upload_memory.py): eight parts
    in flight, the first two kept for the whole upload, and each part read
    joined and cut, copies of 8 MiB each. Now at most three parts."""
    count = 8 * PART_SIZE // PIECE  # 64 MiB: 8 parts
    expect: dict[int, Any] = {}
    for i in range(count):
        expect.setdefault(1 + i * PIECE // PART_SIZE, hashlib.md5()).update(_piece(i))
    sink = _TakesAtOnce()
    reader = PartReader(_file_pieces(count))
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await upload_object(cast(S3, sink), "b", "k", reader)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert sink.parts == {n: md5.hexdigest() for n, md5 in expect.items()}
    assert sink.completed == list(range(1, 9))
    # Measured: 25 MiB (three parts and the first MiB of one); 72 MiB before.
    assert peak < 4 * PART_SIZE, peak


def test_xml_answers_replace_what_xml_cannot_carry() -> None:
    """As Go's EscapeText: a control character a client sent, echoed in a
    message, becomes U+FFFD, so the answer still parses (found by fuzzing)."""
    text = render_xml(-1, 'bucket "a\x01b\ufffe" is not valid')
    assert (
        text == "<map><code>-1</code><msg>bucket &#34;a\ufffdb\ufffd&#34; is not valid</msg></map>"
    )
