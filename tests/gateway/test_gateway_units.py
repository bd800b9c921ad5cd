"""The facade's pure pieces: the XML of the seed, the Go SDK's error text,
URLs without a scheme, parameter types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from jointcloud.api.gateway.envelope import GatewayError, render_json, render_xml, xml_name
from jointcloud.api.gateway.params import Params
from jointcloud.api.gateway.s3client import describe
from jointcloud.api.gateway.upload import (
    MAX_PARTS,
    PART_SIZE,
    MiB,
    PartReader,
    part_size_for,
    read_part,
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
    p.add("list", "c")
    assert p.texts("list") == ["a", "b", "c"]
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


def test_xml_answers_replace_what_xml_cannot_carry() -> None:
    """As Go's EscapeText: a control character a client sent, echoed in a
    message, becomes U+FFFD, so the answer still parses (found by fuzzing)."""
    text = render_xml(-1, 'bucket "a\x01b\ufffe" is not valid')
    assert (
        text == "<map><code>-1</code><msg>bucket &#34;a\ufffdb\ufffd&#34; is not valid</msg></map>"
    )
