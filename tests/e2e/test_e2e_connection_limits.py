"""A real ``jcs serve`` with short connection limits (JCS_HTTP_HEAD_SECONDS,
JCS_HTTP_IDLE_SECONDS): a client that stops half-way through a
request's head is answered in the listener's own error format and cut off,
one that stops half-way through an upload's body is cut off and nothing of
the upload appears; both listeners, over raw sockets. A fuzzing pass held
such connections open for 400 s and more before these limits."""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from pathlib import Path

import httpx
from e2e_support import JcsServer, api_client, fetch, make_package, until_closed, upload

GIVE_UP = 20.0  # far above the limits: a connection still open then never closes


def test_stalled_heads_and_bodies_are_cut_off(tmp_path: Path) -> None:
    server = JcsServer(
        data_dir=tmp_path / "data",
        log_dir=tmp_path,
        env={"JCS_HTTP_HEAD_SECONDS": "1", "JCS_HTTP_IDLE_SECONDS": "1"},
    )
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.s3_port)) as s3:
            s3.sendall(b"GET /bucket/key HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Da")
            answer = until_closed(s3, GIVE_UP)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"<Code>RequestTimeout</Code>" in answer

        with socket.create_connection(("127.0.0.1", server.port)) as main:
            main.sendall(b"GET /v1/bucket/list HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            answer = until_closed(main, GIVE_UP)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b'"code":"BadArgument"' in answer.replace(b" ", b"")
        assert b"did not arrive in time" in answer

        with api_client(server) as api:
            pkg = make_package(api, "limits", "p")
            boundary = b"jcsboundary"
            form = (
                b"--" + boundary + b'\r\nContent-Disposition: form-data; name="info"\r\n\r\n'
                b'{"packageID": %d}\r\n'
                % pkg
                + b"--"
                + boundary
                + b'\r\nContent-Disposition: form-data; name="files"; filename="half.bin"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 10_000
            )
            head = (
                b"POST /v1/object/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + server.key.encode() + b"\r\n"
                b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
                b"Content-Length: 1000000\r\n\r\n"
            )
            with socket.create_connection(("127.0.0.1", server.port)) as upload:
                upload.sendall(head + form)  # then nothing more
                assert until_closed(upload, GIVE_UP) == b""  # cut off, no answer
            # A stop does not wait for a client that stalls mid-upload.
            with socket.create_connection(("127.0.0.1", server.port)) as upload:
                upload.sendall(head + form)
                assert server.proc is not None
                began = time.monotonic()
                server.proc.send_signal(signal.SIGTERM)
                assert server.proc.wait(GIVE_UP) == 0
                assert time.monotonic() - began < GIVE_UP
        server.start()  # on the same data: the cut-off uploads left nothing
        with api_client(server) as api:
            listed = api.get("/v1/object/listByPath", params={"packageID": pkg, "path": "half.bin"})
            assert listed.status_code == 200, listed.text
            assert listed.json()["data"]["objects"] == []
    finally:
        server.stop()
    for start in range(len(server.logs)):
        assert "Traceback" not in server.output(start)


def big_object(
    server: JcsServer, api: httpx.Client, bucket: str, size: int
) -> tuple[int, bytes, bytes]:
    """A package holding ``big.bin`` of ``size`` random bytes: its id, the
    bytes, and a raw request that downloads it."""
    pkg = make_package(api, bucket, "p")
    data = os.urandom(size)
    r = upload(api, pkg, ("big.bin", data))
    assert r.status_code == 200, r.text
    get = (
        f"GET /v1/object/downloadByPath?packageID={pkg}&path=big.bin HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {server.key}\r\n\r\n"
    ).encode()
    return pkg, data, get


def test_pipelined_downloads_cut_off_by_the_client_log_no_error(tmp_path: Path) -> None:
    """Two downloads pipelined on one connection, the client resetting it
    during the first answer: uvicorn marked only the second request as
    disconnected, the first went on writing into the closed transport, and
    uvloop's RuntimeError was logged as an error of the app (17 times in
    20). Now every request of the connection ends with it."""
    server = JcsServer(data_dir=tmp_path / "data", log_dir=tmp_path)
    server.start()
    try:
        with api_client(server) as api:
            pkg, data, get = big_object(server, api, "pipelined", 8 << 20)
            for _ in range(10):
                with socket.create_connection(("127.0.0.1", server.port)) as sock:
                    sock.sendall(get * 2)
                    got = 0
                    while got < 65536:
                        chunk = sock.recv(65536)
                        assert chunk, "closed before the first answer began"
                        got += len(chunk)
                    # close with a reset, as a client that gives up does
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            assert fetch(api, pkg, "big.bin") == data  # and the server serves on
    finally:
        server.stop()
    assert '"level": "error"' not in server.output(), server.output()


def test_a_client_that_half_closes_after_its_requests_gets_its_answers(tmp_path: Path) -> None:
    """A client that shuts down its sending side once its requests are out
    (``nc -N``, some proxies) gets every answer, then the server closes;
    uvicorn closed at once and answered nothing. One that half-closes in
    the middle of a body is cut off, and nothing of that upload appears."""
    server = JcsServer(data_dir=tmp_path / "data", log_dir=tmp_path)
    server.start()
    try:
        with api_client(server) as api:
            pkg, data, get = big_object(server, api, "halfclose", 3 << 20)
            for requests in (1, 2):
                with socket.create_connection(("127.0.0.1", server.port)) as sock:
                    sock.sendall(get * requests)
                    sock.shutdown(socket.SHUT_WR)
                    answer = until_closed(sock, GIVE_UP)
                assert answer.count(b"HTTP/1.1 200 OK\r\n") == requests, answer[:300]
                assert answer.count(data) == requests

            form_head = (
                b'--jcsb\r\nContent-Disposition: form-data; name="info"\r\n\r\n'
                b'{"packageID": %d}\r\n--jcsb\r\nContent-Disposition: form-data; '
                b'name="files"; filename="cut.bin"\r\n\r\n' % pkg
            )
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(
                    b"POST /v1/object/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Authorization: Bearer " + server.key.encode() + b"\r\n"
                    b"Content-Type: multipart/form-data; boundary=jcsb\r\n"
                    b"Content-Length: 100000\r\n\r\n" + form_head + b"x" * 1000
                )
                sock.shutdown(socket.SHUT_WR)
                until_closed(sock, GIVE_UP)  # closed without waiting for the idle limit
            listed = api.get("/v1/object/listByPath", params={"packageID": pkg, "path": "cut.bin"})
            assert listed.status_code == 200 and listed.json()["data"]["objects"] == []
    finally:
        server.stop()
    assert '"level": "error"' not in server.output(), server.output()
