"""The gateway facade of a real ``jcs serve``, over raw sockets: what its
listener does with a client that half-closes while its call waits on a
service that never answers, and with a method its HTTP parser does not know."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from e2e_support import JcsServer, until_closed

GIVE_UP = 30.0  # well under the 75 s an S3 call may take, well over the 5 s grace


class Silent:
    """An "S3 endpoint" on loopback that accepts and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.accepted = threading.Semaphore(0)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.held.append(conn)
            self.accepted.release()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close alone does not)
        self.listener.close()
        self.thread.join(10)
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    endpoint = Silent()
    try:
        yield endpoint
    finally:
        endpoint.close()


def test_a_half_closed_call_is_given_up_after_the_grace(server: JcsServer, silent: Silent) -> None:
    """Its answer is due, so the listener keeps the connection open, but the
    server cannot tell this client from one that closed and left: its call
    held its slot for its 75 s deadline (found by review). It gets 5 s."""
    body = b'{"bucket":"b"}'
    request = (
        b"POST /headBucket HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"AccessKeyId: AKIDSILENT\r\nSecretKey: not-a-secret\r\nEndpoint: "
        + silent.url.encode()
        + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        assert silent.accepted.acquire(timeout=GIVE_UP), "the call never reached the service"
        began = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        answer = until_closed(sock, GIVE_UP)
    assert time.monotonic() - began < GIVE_UP
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer
    assert json.loads(text) == {
        "code": -1,
        "msg": "the client closed its side of the connection before the answer; the call "
        "was given up after 5 s (the server cannot tell a half-closed client from one "
        "that left)",
    }


def test_a_method_the_parser_does_not_know_gets_the_facades_405(server: JcsServer) -> None:
    """Refused by the listener before any route: on a path of the facade in
    its envelope (it was the v1 API's 400, found by review), elsewhere as before."""
    tail = b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"BREW /listObjects" + tail)
        answer = until_closed(sock, GIVE_UP)
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), answer
    assert b"\r\nallow: GET, POST\r\n" in head
    assert json.loads(text) == {
        "code": -1,
        "msg": "method BREW not allowed on /listObjects (use GET, POST)",
    }
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"BREW /v1/bucket/list" + tail)
        answer = until_closed(sock, GIVE_UP)
    head, _, text = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert json.loads(text)["code"] == "BadArgument"
