"""Large pieces written by a worker thread (``api/common/bigwrites.py``),
under clients that read slowly, not at all, half-close or upgrade, on
uvloop as ``jcs serve`` runs (``test_connection_limits.py`` runs on
asyncio's loop, whose transports log a write after close where uvloop's
raise). The server runs in a thread of this process; the clients are
blocking sockets on 127.0.0.1.

Found by a review of the first version, which held a worker thread for as
long as its client took to read a piece (eight such clients stalled every
other large answer, and slow readers were cut off), kept a second
descriptor of every connection (leaked by a half-close behind a queued
refusal, and by a WebSocket upgrade), failed an answer when ``dup`` found
no descriptor left, and kept a stopping server waiting for its threads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest
import uvicorn
import uvloop

from jointcloud.api.common import bigwrites
from jointcloud.api.common.connection import ConnectionLimits, http_protocol

IDLE = 2.0
MiB = 1 << 20


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """GET /big?size=N&piece=M: N bytes in pieces of M bytes; /put reads
    its body first; anything else: ``ok``."""
    if scope["type"] != "http":
        return  # a WebSocket: refused (uvicorn answers the handshake with an error)
    if scope["path"] == "/put":  # asks for the body: uvicorn writes 100 Continue
        while (await receive()).get("more_body"):
            pass
    query = dict(p.split("=") for p in scope["query_string"].decode().split("&") if p)
    size, piece = int(query.get("size", 2)), int(query.get("piece", MiB))
    start = {"type": "http.response.start", "status": 200}
    await send({**start, "headers": [(b"content-length", str(size).encode())]})
    if scope["path"] != "/big":
        await send({"type": "http.response.body", "body": b"ok"})
        return
    left = size
    while left:
        n = min(left, piece)
        left -= n
        await send({"type": "http.response.body", "body": b"b" * n, "more_body": left > 0})


class Served:
    def __init__(
        self, sndbuf: int | None = None, idle: float = IDLE, application: Any = app
    ) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        base = http_protocol(None, ConnectionLimits(head_seconds=idle, idle_seconds=idle))
        protocol = base
        if sndbuf:  # a WAN-sized send buffer (loopback's grows to 4 MiB at once)

            class Wan(base):  # type: ignore[misc, valid-type]
                def connection_made(self, transport: Any) -> None:
                    raw = transport.get_extra_info("socket")
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
                    super().connection_made(transport)

            protocol = Wan
        config = uvicorn.Config(
            application,
            http=protocol,
            loop="none",
            lifespan="off",
            log_level="warning",
            timeout_keep_alive=5,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.returned = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert eventually(lambda: self.server.started, 10), "the server did not start"

    def _run(self) -> None:
        uvloop.run(self.server.serve(sockets=[self.sock]))
        self.returned.set()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def held(self) -> list[Any]:
        """The server's accepted sockets still open in this process."""
        return [
            c
            for c in psutil.Process().net_connections(kind="tcp")
            if c.laddr and c.laddr.port == self.port and c.raddr
        ]


def eventually(condition: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served()
    yield s
    s.stop()


def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    return s


def read_head(s: socket.socket) -> bytes:
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(1)
        assert chunk, "the connection closed before an answer's head"
        got += chunk
    return got


def read_big_at(port: int, size: int, piece: int, *, rate: int) -> int:
    """GET ``/big`` over a small receive buffer, read at ``rate`` bytes a
    second until the server closes: the bytes received, head included."""
    s = connect(port, rcvbuf=65536)
    s.sendall(
        f"GET /big?size={size}&piece={piece} HTTP/1.1\r\nHost: x\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    got = 0
    with contextlib.suppress(OSError):
        while chunk := s.recv(65536):
            got += len(chunk)
            time.sleep(len(chunk) / rate)
    s.close()
    return got


def read_answer(s: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got.partition(b"\r\n\r\n")[2]) < size:
        chunk = s.recv(MiB)
        if not chunk:
            break
        got += chunk
    return bytes(got.partition(b"\r\n\r\n")[2])


def recv_some(s: socket.socket) -> bytes:
    chunk = s.recv(4096)
    assert chunk, "the server closed the connection"  # else the caller's loop spins
    return chunk


def until_eof(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        while s.recv(MiB):
            pass
        return True
    except TimeoutError:
        return False


def get(port: int, path: str, timeout: float = 30) -> tuple[float, bytes]:
    began = time.monotonic()
    s = connect(port)
    s.settimeout(timeout)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    got = bytearray()
    with contextlib.suppress(OSError):
        while chunk := s.recv(MiB):
            got += chunk
    s.close()
    return time.monotonic() - began, bytes(got.partition(b"\r\n\r\n")[2])


def test_a_half_close_behind_a_queued_refusal_releases_the_socket(served: Served) -> None:
    """A refusal (400) queued behind a piece, then the client half-closes:
    uvloop closes its transport, and the server's socket is closed, not
    held by a descriptor of the piece's writer."""
    for _ in range(3):
        s = connect(served.port, rcvbuf=4096)
        s.sendall(b"GET /big?size=8388608&piece=8388608 HTTP/1.1\r\nHost: x\r\n\r\n")
        read_head(s)  # the piece is being written
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        time.sleep(0.2)  # the client's pace: the refusal is queued before the half-close
        s.shutdown(socket.SHUT_WR)
        assert until_eof(s, 3.0), "the server never closed the connection"
        s.close()
    assert eventually(lambda: not served.held(), 5), served.held()


def test_an_upgrade_after_a_large_answer_releases_the_socket(served: Served) -> None:
    """A WebSocket upgrade on a connection that had a large answer: the
    WebSocket protocol takes over the transport; once it closes, no
    descriptor of the connection is left."""
    s = connect(served.port)
    s.sendall(b"GET /big?size=1048576&piece=1048576 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_answer(s, MiB) == b"b" * MiB
    s.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert until_eof(s, 3.0), "the server never closed the connection"
    s.close()
    assert eventually(lambda: not served.held(), 5), served.held()


def test_no_descriptor_left_means_the_loop_writes_the_piece(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_descriptor(fd: int) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "dup", no_descriptor)  # the module bigwrites calls
    _, body = get(served.port, "/big?size=2097152&piece=1048576", timeout=5)
    assert body == b"b" * (2 * MiB)


def test_clients_that_read_nothing_hold_up_no_one(served: Served) -> None:
    """More clients that read nothing of a large answer than there are
    worker threads: another client's large answer is not held up."""
    idle = []
    try:
        for _ in range(12):
            s = connect(served.port, rcvbuf=4096)
            s.sendall(b"GET /big?size=67108864&piece=1048576 HTTP/1.1\r\nHost: x\r\n\r\n")
            read_head(s)  # its answer has begun
            idle.append(s)
        seconds, body = get(served.port, "/big?size=4194304&piece=1048576")
        assert body == b"b" * (4 * MiB)
        assert seconds < IDLE / 4, f"a 4 MiB answer on loopback took {seconds:.2f} s"
    finally:
        for s in idle:
            s.close()


def test_slow_readers_are_each_served_at_their_own_rate() -> None:
    """24 clients reading 1 MiB/s over a WAN-sized send buffer, three times
    as many as there are worker threads: every answer arrives whole, in
    about the time its client takes to read it (none waits for a thread,
    none is dropped as a client that reads nothing)."""
    served = Served(sndbuf=131072)
    size = 6 * MiB
    times: list[float] = []
    sizes: list[int] = []

    def client() -> None:
        began = time.monotonic()
        got = read_big_at(served.port, size, MiB, rate=MiB)
        times.append(time.monotonic() - began)
        sizes.append(got)

    try:
        clients = [threading.Thread(target=client) for _ in range(24)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
    finally:
        served.stop()
    cut = sum(n < size for n in sizes)  # the head included: a whole answer is more
    assert not cut, f"{cut} of 24 answers cut off"
    assert max(times) < size / MiB + 3, f"the slowest answer took {max(times):.1f} s"


def test_a_stop_waits_for_no_worker_thread() -> None:
    """A client that reads nothing of a large answer does not keep a worker
    thread writing once the server has stopped."""
    served = Served()
    s = connect(served.port, rcvbuf=4096)
    try:
        s.sendall(b"GET /big?size=67108864&piece=1048576 HTTP/1.1\r\nHost: x\r\n\r\n")
        read_head(s)
        served.server.should_exit = True
        assert served.returned.wait(5)

        def writing() -> bool:
            return any(
                frame.f_code is bigwrites._write_some.__code__
                for top in sys._current_frames().values()
                for frame in _stack(top)
            )

        assert eventually(lambda: not writing(), IDLE / 2), "a worker thread still writes"
    finally:
        s.close()
        served.stop()


def _stack(frame: Any) -> Iterator[Any]:
    while frame is not None:
        yield frame
        frame = frame.f_back


def test_a_100_continue_pipelined_behind_a_piece_comes_after_it() -> None:
    """The interim answer of a request pipelined behind a piece being
    written comes after that piece. (The PUT's body wait runs from the 100
    Continue's write; this client, a thread of the server's own process,
    can be kept from reading it for seconds on a loaded machine: the idle
    limit is long here, as in production.)"""
    served = Served(idle=30.0)
    try:
        _continue_behind_a_piece(served)
    finally:
        served.stop()


def _continue_behind_a_piece(served: Served) -> None:
    s = connect(served.port, rcvbuf=4096)
    s.sendall(
        b"GET /big?size=8388608&piece=8388608 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"PUT /put HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    )
    time.sleep(0.5)  # the client's pace: the PUT's app asks for its body meanwhile
    s.settimeout(10)
    body = read_answer(s, 8 * MiB)
    assert body[: 8 * MiB] == b"b" * (8 * MiB)
    rest = body[8 * MiB :]
    while len(rest) < 25:
        rest += recv_some(s)
    assert rest.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), rest[:60]
    s.sendall(b"data")
    tail = b""
    while not tail.endswith(b"ok"):
        tail += recv_some(s)
    assert b"HTTP/1.1 200 " in tail
    s.close()


@pytest.mark.parametrize(
    ("size", "piece", "sndbuf"),
    [(3 * MiB, MiB, None), (60 * 1024, 64 * 1024, 4096)],
    ids=["rest-of-a-piece", "small-answer"],
)
def test_a_closed_answer_nobody_reads_is_dropped(size: int, piece: int, sndbuf: int | None) -> None:
    """The whole answer is handed over and the connection closed, but part
    of it still waits in the transport's buffer for a client that reads
    nothing (the rest of a worker's piece, or a small answer): the
    connection is dropped after the idle limit, as when the answer is still
    being sent, instead of staying open for as long as the client does."""
    served = Served(sndbuf=sndbuf)
    s = connect(served.port, rcvbuf=4096)
    try:
        # Before the request: the limit runs from a moment after this, and
        # the checks below may take a while on a loaded machine.
        began = time.monotonic()
        s.sendall(
            f"GET /big?size={size}&piece={piece} HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        read_head(s)
        assert served.held(), "the connection closed at once: nothing is left to test"
        assert eventually(lambda: not served.held(), 4 * IDLE), "the connection stays open"
        assert time.monotonic() - began >= IDLE / 2  # dropped by the limit, not at once
    finally:
        s.close()
        served.stop()


def test_a_client_reading_slowly_is_waited_for_past_the_idle_limit(served: Served) -> None:
    """One 8 MiB piece, most of it left buffered by the worker, read at
    about 2 MiB/s: longer than the idle limit from pause to drain, but the
    client makes progress all along, so it gets the whole answer (the
    limit runs from the last progress, as nginx's send_timeout)."""
    size = 8 * MiB
    began = time.monotonic()
    got = read_big_at(served.port, size, size, rate=2 * MiB)
    assert time.monotonic() - began > 1.5 * IDLE  # the test means what it says
    assert got > size, f"{got} bytes of {size} and a head"


def test_an_answer_finished_as_the_client_half_closes_arrives() -> None:
    """The client ends its side (a half-close, as ``nc -N``) while the app
    finishes its answer: the loop reads that end-of-file in the same turn
    the answer's pieces were written in. With no request left to answer,
    the transport closes itself on it; the pieces held back until the
    turn's end were then dropped, and the client got no answer at all
    (found by review)."""
    running, ended = threading.Event(), threading.Event()

    async def answer_once_the_client_ended(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        running.set()
        assert ended.wait(10)  # on the loop's thread: it reads nothing meanwhile
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    served = Served(application=answer_once_the_client_ended)
    s = connect(served.port)
    try:
        s.settimeout(10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert running.wait(10)
        s.shutdown(socket.SHUT_WR)
        ended.set()
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nok"), got
    finally:
        s.close()
        served.stop()
