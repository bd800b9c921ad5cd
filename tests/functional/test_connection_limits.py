"""The limits of one HTTP connection (``api/common/connection.py``), on a
uvicorn server in this event loop with short limits, over raw sockets: a
head that does not arrive in time or is too large is refused in the
listener's format and the connection closed; a body that stalls drops the
connection and the app sees the client gone; time the app itself takes is
not held against the client. Found by fuzzing: partial heads and stalled
bodies were held for 400 s and more, and a 200 MiB header was buffered."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jointcloud.api.common.connection import ConnectionLimits, http_protocol
from jointcloud.api.jcs.envelope import malformed_request as jcs_malformed
from jointcloud.api.s3.errors import malformed_request as s3_malformed

LIMITS = ConnectionLimits(head_seconds=0.5, idle_seconds=0.5, max_head=8192)
# Far above the limits: a connection not closed by then never will be.
GIVE_UP = 10.0


@dataclass
class App:
    """Reads the whole body (after ``gate`` opens) and answers its length;
    records a client that went away."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await self.gate.wait()
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(size).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Served:
    app: App
    port: int


async def _serve(
    app: Any, malformed: Any, limits: ConnectionLimits = LIMITS
) -> AsyncIterator[Served]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(
        app,
        http=http_protocol(malformed, limits),
        loop="none",
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield Served(app, sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def s3() -> AsyncIterator[Served]:
    async for served in _serve(App(), s3_malformed):
        yield served


@pytest.fixture
async def main() -> AsyncIterator[Served]:
    async for served in _serve(App(), jcs_malformed):
        yield served


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    async with asyncio.timeout(GIVE_UP):
        chunks = []
        while chunk := await reader.read(65536):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_a_head_that_stalls_is_refused_in_time(s3: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(b"GET /bucket/key HTTP/1.1\r\nHost: x\r\nX-Amz-Date: 2026")
    answer = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"<Code>RequestTimeout</Code>" in answer
    writer.close()


async def test_a_trickled_head_does_not_extend_its_deadline(s3: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(b"GET /bucket/key HTTP/1.1\r\nHost: x\r\nX-Junk: ")

    async def trickle() -> None:
        while True:  # one byte every 50 ms: far more often than the deadline
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    try:
        answer = await until_closed(reader)
    finally:
        trickling.cancel()
        await asyncio.gather(trickling, return_exceptions=True)
    assert b"<Code>RequestTimeout</Code>" in answer
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed_silently(main: Served) -> None:
    """No answer to a request never begun: a pooled client sending its
    first request just then would read it as its own."""
    reader, writer = await asyncio.open_connection("127.0.0.1", main.port)
    assert await until_closed(reader) == b""
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", main.port)
    writer.write(b"GET /v1/bucket/list HTTP/1.1\r\n")
    answer = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"did not arrive in time" in answer  # the JCS envelope's message
    writer.close()


async def test_a_head_over_the_limit_is_refused(s3: Served, main: Served) -> None:
    for served, expected in (
        (s3, b"<Code>RequestHeaderSectionTooLarge</Code>"),
        (main, b"is too large"),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # 64 × 1 KiB, no end of line
                writer.write(b"a" * 1024)
                await writer.drain()
        answer = await until_closed(reader)
        assert answer.startswith(b"HTTP/1.1 400 ") and expected in answer, answer[:300]
        writer.close()


async def test_heads_within_the_limit_pipelined_and_kept_alive(s3: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    big = b"X-Meta: " + b"m" * 6000 + b"\r\n"  # under the 8 KiB limit
    one = b"PUT /b/k HTTP/1.1\r\nHost: x\r\n" + big + b"Content-Length: 5000\r\n\r\n" + b"d" * 5000
    writer.write(one + one)  # two requests in one write
    await writer.drain()
    for _ in range(2):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await reader.readexactly(4) == b"5000"
    # The next request on the same connection, after a pause shorter than
    # the keep-alive timeout, gets its own deadline.
    await asyncio.sleep(0.3)
    writer.write(b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    writer.close()


async def test_a_body_that_stalls_drops_the_connection(s3: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"d" * 10)
    await writer.drain()
    assert await until_closed(reader) == b""  # dropped, no answer
    async with asyncio.timeout(GIVE_UP):
        await s3.app.gone.wait()  # the app's receive() saw the client gone
    writer.close()


async def test_time_the_app_takes_is_not_the_clients(s3: Served) -> None:
    """The app waits three times the idle limit before it reads: once with
    the whole body sent (reading paused by flow control), once with
    ``Expect: 100-continue`` (the client waits for the app)."""
    app = s3.app
    for expect in (b"", b"Expect: 100-continue\r\n"):
        app.gate.clear()
        reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
        size = 1 << 20
        writer.write(
            b"PUT /b/k HTTP/1.1\r\nHost: x\r\n" + expect + b"Content-Length: %d\r\n\r\n" % size
        )
        if not expect:
            writer.write(b"d" * size)
        await writer.drain()
        await asyncio.sleep(3 * LIMITS.idle_seconds)  # longer than the idle limit
        app.gate.set()
        if expect:
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"d" * size)
            await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert await reader.readexactly(7) == b"1048576"
        writer.close()
    assert not app.gone.is_set()


async def test_a_body_the_parser_refuses_ends_the_request(s3: Served) -> None:
    """A bad chunk size while the app reads the body: the listener's error,
    the app sees the client gone, and nothing of the app follows it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
    )
    answer = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"<Code>BadRequest</Code>" in answer
    assert answer.count(b"HTTP/1.1") == 1, answer
    async with asyncio.timeout(GIVE_UP):
        await s3.app.gone.wait()
    writer.close()


async def test_a_head_pipelined_behind_a_slow_answer_waits_for_it(s3: Served) -> None:
    """The client sends part of its next request while the first is still
    being answered (after the head deadline): the first answer arrives
    whole; only then does the partial head time out."""
    app = s3.app
    app.gate.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(b"GET /b/one HTTP/1.1\r\nHost: x\r\n\r\nGET /b/two HTTP/1.1\r\nHo")
    await writer.drain()
    await asyncio.sleep(3 * LIMITS.head_seconds)  # past the second head's deadline
    app.gate.set()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert await reader.readexactly(1) == b"0"
    rest = await until_closed(reader)
    assert rest.startswith(b"HTTP/1.1 400 ") and b"<Code>RequestTimeout</Code>" in rest
    writer.close()


async def test_a_head_sent_in_one_piece_is_held_to_the_limit(s3: Served) -> None:
    """The chunk that ends a head counts too (one write of 100 KiB)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(b"GET /b/k HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 100_000 + b"\r\n\r\n")
    answer = await until_closed(reader)
    assert b"<Code>RequestHeaderSectionTooLarge</Code>" in answer, answer[:300]
    writer.close()


async def test_trailers_are_held_to_the_head_limit() -> None:
    """A chunked body's trailer fields are parsed like headers: an endless
    one is refused like an endless header. Its time limits are far off, so
    that only the size refuses it (under a loaded run the short ones of
    ``LIMITS`` once cut the connection first, answerless)."""
    roomy = ConnectionLimits(head_seconds=GIVE_UP / 2, idle_seconds=GIVE_UP / 2, max_head=8192)
    async for s3 in _serve(App(), s3_malformed, roomy):
        await _an_endless_trailer(s3)


async def _an_endless_trailer(s3: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nX-Trailer: "
    )
    with contextlib.suppress(ConnectionError):
        for _ in range(64):  # 64 KiB of one trailer, no end of line
            writer.write(b"t" * 1024)
            await writer.drain()
    answer = await until_closed(reader)
    assert b"<Code>RequestHeaderSectionTooLarge</Code>" in answer, answer[:300]
    writer.close()


async def test_a_body_that_stalls_after_an_early_answer_is_cut_off(s3: Served) -> None:
    """The app answers without reading the body (an error, say); the client
    sends a little more, then stalls: the connection does not stay."""

    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": b"no"})

    async for served in _serve(refuse, s3_malformed):  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 ")
        writer.write(b"c")  # one more byte after the answer, then nothing
        await writer.drain()
        assert await until_closed(reader) == b"no"
        writer.close()


async def test_the_clients_wait_starts_when_the_app_asks(s3: Served) -> None:
    """After ``100 Continue`` sent late (the app took twice the idle limit
    before asking for the body), the client's limit runs from then, not
    from its request: a pause of part of it after the ``100`` is waited for."""
    app = s3.app
    app.gate.clear()
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    )
    await writer.drain()
    await asyncio.sleep(1.8 * LIMITS.idle_seconds)
    app.gate.set()
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    # A slow client, within the limit, with room for a stalled loop: the
    # server's timer shares this loop, and a stall past both deadlines
    # runs its close before the body's bytes are read.
    await asyncio.sleep(0.3 * LIMITS.idle_seconds)
    writer.write(b"data")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert await reader.readexactly(1) == b"4"
    writer.close()


@dataclass
class Streamer:
    """Answers ``size`` bytes in pieces of ``piece`` bytes (``s`` bytes, or
    with ``numbered`` piece i made of byte i), ``pause`` seconds apart,
    listening meanwhile for the client to go (as Starlette's
    StreamingResponse does: that receive() resumes reading); records a
    send that failed. A request for ``/small`` gets ``ok``."""

    size: int
    pause: float = 0.0
    piece: int = 65536
    numbered: bool = False
    failed: list[BaseException] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def body(self) -> bytes:
        """The whole answer, as the client should receive it."""
        n, size = self.piece, self.size
        return b"".join(self._piece(i, min(n, size - i * n)) for i in range(-(-size // n)))

    def _piece(self, i: int, length: int) -> bytes:
        return bytes([i % 256]) * length if self.numbered else b"s" * length

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/small":
            small = [(b"content-length", b"2")]
            await send({"type": "http.response.start", "status": 200, "headers": small})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        headers = [(b"content-length", str(self.size).encode())]
        listening = asyncio.ensure_future(receive())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            left, i = self.size, 0
            while left:
                piece = min(left, self.piece)
                left -= piece
                body = self._piece(i, piece)
                i += 1
                await send({"type": "http.response.body", "body": body, "more_body": left > 0})
                await asyncio.sleep(self.pause)
        except BaseException as exc:  # what uvicorn would log as an app error
            self.failed.append(exc)
            raise
        finally:
            listening.cancel()
            self.ended.set()


async def test_bytes_that_begin_no_request_leave_the_keep_alive_timeout(main: Served) -> None:
    """After an answer, a stray CRLF (which the parser skips) cancelled
    uvicorn's keep-alive timer for good."""
    reader, writer = await asyncio.open_connection("127.0.0.1", main.port)
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    assert await reader.readexactly(1) == b"0"
    writer.write(b"\r\n")
    await writer.drain()
    assert await until_closed(reader) == b""  # closed by the keep-alive timeout
    writer.close()


async def test_the_rest_of_a_body_after_an_early_answer_leaves_keep_alive() -> None:
    """The app answers before reading the body; the client finishes sending
    it, then keeps the connection idle: the keep-alive timeout ends it."""

    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": b"no"})

    async for served in _serve(refuse, s3_malformed):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 403 ")
        writer.write(b"cd")  # the body's end, after the answer
        await writer.drain()
        assert await until_closed(reader) == b"no"
        writer.close()


# Pieces below and above what a worker thread writes (api/common/bigwrites.py).
PIECES = [65536, 1 << 20]


@pytest.mark.parametrize("piece", PIECES)
async def test_a_refusal_never_lands_inside_a_pipelined_answer(piece: int) -> None:
    """A slow answer is being written when a pipelined request after it
    turns out unparsable: the connection is dropped, nothing is written
    into the answer, and the app sees no error."""
    app = Streamer(size=20 * piece, pause=0.05, piece=piece)
    async for served in _serve(app, s3_malformed):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")  # the answer has begun
        writer.write(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
        got = await until_closed(reader)
        assert b"HTTP/1.1" not in got  # no other answer inside this one
        assert set(got) <= {ord("s")} and len(got) < 20 * piece  # cut, not completed
        writer.close()
        assert not app.failed, app.failed


async def test_a_request_queued_behind_an_answer_is_not_timed(s3: Served) -> None:
    """A PUT pipelined behind a slow answer: its client sends the body only
    once the first answer is in; until then no app asks for it."""
    app = Streamer(size=6 * 65536, pause=3 * LIMITS.idle_seconds / 6)
    async for served in _serve(app, s3_malformed):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert len(await reader.readexactly(6 * 65536)) == 6 * 65536  # whole
        writer.write(b"data")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.close()


async def test_unequal_limits_are_each_kept(s3: Served) -> None:
    """A long head deadline does not postpone a short body limit."""
    limits = ConnectionLimits(head_seconds=20 * LIMITS.idle_seconds, idle_seconds=0.5)
    app = App()
    async for served in _serve(app, s3_malformed, limits):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
        began = asyncio.get_running_loop().time()
        assert await until_closed(reader) == b""
        assert asyncio.get_running_loop().time() - began < 5 * limits.idle_seconds
        writer.close()


@pytest.mark.parametrize("piece", PIECES)
async def test_an_answer_nobody_reads_is_dropped(piece: int) -> None:
    """A client that reads nothing of a large answer: writing stays paused
    past the idle limit, then the connection is dropped and the app's task
    ends (its sends to a gone client return at once)."""
    app = Streamer(size=64 << 20, piece=piece)
    async for served in _serve(app, s3_malformed):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", served.port))
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        try:
            async with asyncio.timeout(GIVE_UP):  # without the limit: never
                await app.ended.wait()
        finally:
            sock.close()
        assert not app.failed, app.failed


def _open_sockets() -> set[str]:
    """The sockets this process holds open (their inodes)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One answer with a Content-Length: its head and its body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


async def test_large_pieces_arrive_whole_and_in_order() -> None:
    """Answers of 1 MiB pieces (written by worker threads), each piece
    different, pipelined with small answers on one connection: every byte
    arrives, in order, each answer after the one before it."""
    app = Streamer(size=8 * (1 << 20) + 12345, piece=1 << 20, numbered=True)
    async for served in _serve(app, s3_malformed):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        async with asyncio.timeout(GIVE_UP):
            for _ in range(3):
                writer.write(
                    b"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n"
                )
                head, body = await _answer(reader)
                assert head.startswith(b"HTTP/1.1 200 ")
                assert body == app.body()
                head, body = await _answer(reader)
                assert head.startswith(b"HTTP/1.1 200 ") and body == b"ok"
        writer.close()
        assert not app.failed, app.failed


async def test_a_large_answer_then_close_arrives_whole() -> None:
    """``Connection: close``: the close waits for the piece being written."""
    app = Streamer(size=4 * (1 << 20), piece=1 << 20, numbered=True)
    async for served in _serve(app, s3_malformed):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = await until_closed(reader)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert body == app.body()
        writer.close()


async def test_a_client_gone_mid_answer_leaves_nothing_behind() -> None:
    """Clients that hang up in the middle of large answers: the app's task
    ends, the server goes on serving, and once it has stopped no descriptor
    it opened is left (a worker thread's write holds one of its own)."""
    app = Streamer(size=32 << 20, piece=1 << 20)
    loop = asyncio.get_running_loop()
    before = _open_sockets()
    async for served in _serve(app, s3_malformed):
        for _ in range(5):
            app.ended.clear()
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", served.port))
            await loop.sock_sendall(sock, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await loop.sock_recv(sock, 65536)  # the answer has begun
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset, with most of the answer unsent
            async with asyncio.timeout(GIVE_UP):
                await app.ended.wait()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await until_closed(reader)).endswith(b"ok")
        writer.close()
        await writer.wait_closed()
    assert not app.failed, app.failed
    assert _open_sockets() <= before


async def test_a_kept_alive_connection_holds_no_chunk_of_its_last_request(main: Served) -> None:
    """An upload whose head and body begin in one chunk, answered, the
    connection kept alive: nothing of the connection refers to that chunk
    any more (the chunk a head began with was kept to read an unknown
    method's request line from, up to a read's 256 KiB per connection
    through the request and the keep-alive wait; found by review)."""
    body = b"x" * 60_000
    reader, writer = await asyncio.open_connection("127.0.0.1", main.port)
    writer.write(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    async with asyncio.timeout(GIVE_UP):
        assert (await reader.readuntil(b"60000")).startswith(b"HTTP/1.1 200")
    ours = tuple(writer.get_extra_info("sockname"))
    (protocol,) = [
        o for o in gc.get_objects() if isinstance(o, HttpToolsProtocol) and o.client == ours
    ]
    held = [
        (name, len(value))
        for name, value in vars(protocol).items()
        if isinstance(value, bytes | bytearray) and len(value) > 4096
    ]
    assert held == [], held
    writer.close()


async def test_a_content_length_sent_twice_with_one_value_is_taken_once(s3: Served) -> None:
    """rclone before 1.59 sends every upload under its cutoff as a presigned
    PUT whose signed headers it copies into the request, lower-cased, beside
    the Content-Length Go writes itself: two ``Content-Length: 2`` lines
    (``rclone copyto --s3-use-presigned-request`` still does). AWS takes
    them (RFC 9110 §8.6 allows taking repeated equal values as one); the
    parser refused them, so every small upload failed with 400. Lengths that
    differ are still refused: which one frames the body is ambiguous."""
    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    head = b"PUT /b/k HTTP/1.1\r\nHost: x\r\n"
    twice = head + b"Content-Length: 2\r\ncontent-length:  2 \r\nX-A: b\r\n\r\nok"
    for _ in range(2):  # and the connection goes on to the next request
        writer.write(twice)
        answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert await reader.readexactly(1) == b"2"
    writer.close()

    reader, writer = await asyncio.open_connection("127.0.0.1", s3.port)
    writer.write(head + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\nok!")
    answer = await until_closed(reader)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"<Code>BadRequest</Code>" in answer
    writer.close()
