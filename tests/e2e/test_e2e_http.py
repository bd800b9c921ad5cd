"""Raw HTTP against the real server, on data the CLI uploaded."""

from __future__ import annotations

import json
import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
from e2e_support import Cli, JcsServer, make_package


def test_ranged_download(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    data = os.urandom(1024 * 1024 + 7)
    size = len(data)
    src = tmp_path / "ranged.bin"
    src.write_bytes(data)
    pkg = {"packageID": make_package(api, "ranges", "p")}
    cli("put", str(src), "ranges/p/dir/ranged.bin")

    found = api.get(
        "/v1/object/listByPath",
        params={"packageID": pkg["packageID"], "path": "dir/ranged.bin"},
    ).json()["data"]["objects"]
    assert len(found) == 1 and found[0]["size"] == str(size)
    oid = found[0]["objectID"]

    def ranged(header: str, url: str = "/v1/object/download") -> httpx.Response:
        params = {"objectID": oid} if "ByPath" not in url else None
        if params is None:
            params = {"packageID": pkg["packageID"], "path": "dir/ranged.bin"}
        return api.get(url, params=params, headers={"Range": header})

    r = ranged("bytes=1000-1999")
    assert r.status_code == 206
    assert r.content == data[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{size}"
    assert r.headers["content-length"] == "1000"

    r = ranged("bytes=-500")  # suffix
    assert r.status_code == 206 and r.content == data[-500:]

    r = ranged(f"bytes={size - 10}-")  # open-ended
    assert r.status_code == 206 and r.content == data[-10:]

    r = ranged("bytes=524288-", "/v1/object/downloadByPath")
    assert r.status_code == 206 and r.content == data[524288:]

    r = ranged(f"bytes={size}-")  # starts past the end
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    assert r.json()["code"] == "BadArgument"

    r = api.get("/v1/object/download", params={"objectID": oid, "offset": 5, "length": 100})
    assert r.status_code == 200 and r.content == data[5:105]

    r = api.get("/v1/bucket/download", params={"objectID": oid})  # the seed's spelling
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == "application/octet-stream"
    assert "ranged.bin" in r.headers["content-disposition"]


def _raw(port: int, request: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Send bytes as they are; every answer on the connection (status,
    headers, body), until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        answers.append((int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]
    return answers


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    # A body longer than its Content-Length: the rest is read as the next
    # request (what ceph's test_object_create_bad_contentlength_mismatch_below_aws2
    # sends; AWS answers BadRequest). The parser refuses the stray byte as
    # it arrives, before the first request is answered: one answer.
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nbar",
    # bytes a URL may not hold (a share link's path, found by review)
    b"GET /s/\xff\xfe/b/k HTTP/1.1\r\nHost: x\r\n\r\n",
]


def test_a_request_the_parser_refuses_is_answered_in_the_protocol_s_format(
    server: JcsServer,
) -> None:
    """Not uvicorn's plain text: S3's XML error on the S3 listener, the v1
    envelope on the main one; 400, a request id, the connection closed."""
    for request in MALFORMED:
        answers = _raw(server.s3_port, request)
        assert len(answers) == 1, answers
        status, headers, body = answers[0]
        assert status == 400, (request, body)
        assert headers["content-type"] == "application/xml", headers
        root = ET.fromstring(body)
        assert root.findtext("Code") == "BadRequest"
        assert root.findtext("Message") == "An error occurred when parsing the HTTP request."
        assert root.findtext("RequestId") == headers["x-amz-request-id"]
        assert headers["connection"] == "close"
        answers = _raw(server.port, request)
        assert len(answers) == 1, answers
        status, headers, body = answers[0]
        assert status == 400, (request, body)
        assert headers["content-type"] == "application/json"
        answer = json.loads(body)
        assert answer["code"] == "BadArgument" and "could not be parsed" in answer["message"]
        assert headers["x-request-id"] and headers["connection"] == "close"
        # the main listener serves share pages too: the same security headers
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cross-origin-resource-policy"] == "same-origin"


UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_an_upgrade_request_is_answered_as_http(server: JcsServer, api: httpx.Client) -> None:
    """No listener speaks WebSocket: a request asking to switch is answered
    as the plain request it also is, in the listener's format (the S3
    listener once answered a 500 from a WebSocket scope its app refused),
    and the connection closes after it (a request sent behind it is not
    read)."""
    behind = b"GET /v1/bucket/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    log_before = len(server.output())
    answers = _raw(server.s3_port, UPGRADE % b"/" + behind)
    assert len(answers) == 1, answers
    status, headers, body = answers[0]
    assert status == 403, body
    root = ET.fromstring(body)
    assert root.findtext("Code") == "AccessDenied"
    assert root.findtext("RequestId") == headers["x-amz-request-id"]
    assert headers["connection"] == "close"
    plain = api.get("/v1/bucket/list", headers={"Authorization": ""})
    answers = _raw(server.port, UPGRADE % b"/v1/bucket/list" + behind)
    assert len(answers) == 1, answers
    status, headers, body = answers[0]
    assert status == plain.status_code and json.loads(body) == plain.json()
    assert headers["connection"] == "close"
    log = server.output()[log_before:]
    assert "Traceback" not in log and '"level": "error"' not in log, log[-2000:]
    assert "Unsupported upgrade" not in log, log[-2000:]
