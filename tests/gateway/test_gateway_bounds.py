"""The facade's outbound work is bounded and kept apart from the server's
own (found by review, 2026-12-06, seventh session): calls to an S3 endpoint
that accepts and never answers, and Argon2id runs of /createAccessGrant,
once ran in the loop's default pool, where every SQLite commit runs too."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from gw_support import Jcs, main_listener, read, unique

from jointcloud.api.gateway import app as gateway
from jointcloud.api.gateway import credentials, s3client
from jointcloud.api.gateway.app import create_app
from jointcloud.api.gateway.pools import Pool
from jointcloud.context import Context
from jointcloud.core.authz import Principal


class Silent:
    """An "S3 endpoint" on loopback that accepts every connection and never
    answers; ``reached(n)`` waits for its n-th connection."""

    def __init__(self) -> None:
        self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.changed = asyncio.Condition()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _accept(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)  # read nothing, answer nothing
        async with self.changed:
            self.accepted += 1
            self.changed.notify_all()

    async def reached(self, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.accepted >= count)

    async def close(self) -> None:
        # The calls still inside botocore see a reset and end at once.
        for writer in self.writers:
            writer.transport.abort()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    endpoint = Silent()
    await endpoint.start()
    try:
        yield endpoint
    finally:
        await endpoint.close()


def headers(endpoint: str) -> dict[str, str]:
    return {"AccessKeyId": "AKIDSILENT", "SecretKey": "not-a-secret", "Endpoint": endpoint}


async def test_a_silent_endpoint_holds_none_of_the_servers_threads(
    gw: httpx.AsyncClient, ctx: Context, silent: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shorter bounds than the real ones (75 s a call, 2 s for a slot).
    monkeypatch.setattr(s3client, "CALL_SECONDS", 3.0, raising=False)
    monkeypatch.setattr(s3client, "PATIENCE", 0.5, raising=False)
    admin = await ctx.accounts.user_named("admin")
    owner = Principal.user(admin.user_id)
    count = 40  # unauthenticated, as the reviewer sent them
    call = {"json": {"bucket": "b"}, "headers": headers(silent.url)}
    calls = [asyncio.create_task(gw.post("/headBucket", **call)) for _ in range(count)]
    await asyncio.wait_for(silent.reached(6), 30)  # the default pool here has 6 threads
    # The server's own writes go on meanwhile: a SQLite commit runs in the
    # loop's default pool.
    write = asyncio.create_task(ctx.buckets.create(owner, unique("write")))
    done, _ = await asyncio.wait({write}, timeout=10)  # not wait_for: it would wait out a rollback
    assert write in done, "a write of the server waited behind the facade's calls"
    assert write.result().bucket_id
    answers = [read(r, xml=False) for r in await asyncio.gather(*calls)]
    assert all(a.code == -1 for a in answers)
    late = [a for a in answers if "operation error S3: HeadBucket, no answer within 3 s" in a.msg]
    busy = [a for a in answers if a.msg.startswith("the server is busy with outbound S3 calls")]
    assert len(late) + len(busy) == count, {a.msg for a in answers}
    assert len(busy) >= count - s3client.S3_SLOTS and len(late) <= s3client.S3_SLOTS
    assert busy[0].response.headers["retry-after"] == "2"


class Watched(Pool):
    """A pool that counts the calls that left it."""

    def __init__(self, threads: int = 2, slots: int = 2) -> None:
        super().__init__("jcs-test-s3", threads=threads, slots=slots, what="outbound S3 calls")
        self.left = 0
        self.changed = asyncio.Condition()

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().run(*args, **kwargs)
        finally:
            async with self.changed:
                self.left += 1
                self.changed.notify_all()

    async def emptied(self, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.left >= count)


async def test_a_client_that_leaves_ends_its_call_and_frees_its_slot(
    ctx: Context, silent: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = Watched()
    monkeypatch.setattr(s3client, "S3_POOL", pool, raising=False)
    config = uvicorn.Config(
        create_app(ctx), log_level="warning", lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"bucket":"b"}'
        head = "".join(f"{k}: {v}\r\n" for k, v in headers(silent.url).items())
        writer.write(
            f"POST /headBucket HTTP/1.1\r\nHost: gw\r\n{head}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        await asyncio.wait_for(silent.reached(1), 30)
        assert pool.free() == pool.slots - 1
        writer.close()  # the client leaves without its answer
        # the client was made (one run), then the call left: long before its 75 s
        await asyncio.wait_for(pool.emptied(2), 10)
        assert pool.free() == pool.slots
    finally:
        await silent.close()  # a call still waiting on it ends
        server.should_exit = True
        await serving
        sock.close()


FORM = (
    b'--gwb\r\nContent-Disposition: form-data; name="bucket"\r\n\r\nb\r\n'
    b'--gwb\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n'
    b'--gwb\r\nContent-Disposition: form-data; name="file"; filename="k"\r\n\r\n'
    b"tiny\r\n--gwb--\r\n"
)


async def start_call(
    port: int, path: str, endpoint: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw call of ``path`` naming ``endpoint``, sent whole, its answer
    not read: ``/uploadObject`` of a tiny file, or ``/headBucket``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if path == "/uploadObject":
        body, ctype = FORM, "multipart/form-data; boundary=gwb"
    else:
        body, ctype = b'{"bucket":"b"}', "application/json"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers(endpoint).items())
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: gw\r\n{head}Content-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize("path", ["/headBucket", "/uploadObject"])
@pytest.mark.parametrize("leaving", ["close", "half-close", "reset"])
async def test_a_client_that_ends_its_side_gives_its_slot_back_soon(
    ctx: Context, silent: Silent, monkeypatch: pytest.MonkeyPatch, leaving: str, path: str
) -> None:
    """The server's listener keeps a connection open after the client's FIN
    for its answer (``nc -N`` half-closes, then reads), and a client that
    closed its socket sends the same FIN: each call of theirs held its slot
    to its 75 s deadline, so 32 closed connections held every slot (found
    by review). Now the call is given up ``HALF_CLOSED_GRACE`` after the
    FIN, and one still reading is told why; on a reset at once (so it was
    already, but for an upload's check of the credentials, made before its
    body is read)."""
    pool = Watched(threads=4, slots=2)  # threads to spare: those given up keep theirs
    monkeypatch.setattr(s3client, "S3_POOL", pool, raising=False)
    monkeypatch.setattr(gateway, "HALF_CLOSED_GRACE", 0.5)
    async with main_listener(ctx) as port:
        try:
            clients = [await start_call(port, path, silent.url) for _ in range(2)]
            await asyncio.wait_for(silent.reached(2), 30)
            assert pool.free() == 0  # both calls wait on the silent service
            for _, writer in clients:
                if leaving == "half-close":
                    writer.write_eof()
                    continue
                if leaving == "reset":
                    linger = struct.pack("ii", 1, 0)
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, linger
                    )
                writer.close()
            # Two clients made and two calls given up: long before the 75 s.
            await asyncio.wait_for(pool.emptied(4), 10)
            assert pool.free() == pool.slots
            if leaving == "half-close":
                for reader, writer in clients:
                    answer = await asyncio.wait_for(reader.read(), 10)  # to the server's close
                    writer.close()
                    head, _, body = answer.partition(b"\r\n\r\n")
                    assert head.startswith(b"HTTP/1.1 200 "), answer
                    assert json.loads(body) == {
                        "code": -1,
                        "msg": "the client closed its side of the connection before the answer; "
                        "the call was given up after 0.5 s (the server cannot tell a "
                        "half-closed client from one that left)",
                    }
            # The next call is admitted (not "busy") and goes out.
            _, writer = await start_call(port, path, silent.url)
            await asyncio.wait_for(silent.reached(3), 10)
            writer.close()
        finally:
            await silent.close()  # the calls still waiting on it end


async def test_a_call_makes_two_attempts(silent: Silent, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two attempts, as its 75 s deadline counts them: botocore's
    ``max_attempts`` counts retries only, and made three (90 s in a thread
    to a silent service, found measuring the threads of calls given up)."""
    from botocore.exceptions import ReadTimeoutError  # type: ignore[import-untyped]

    monkeypatch.setattr(s3client, "READ_SECONDS", 0.5)
    client = s3client.new_client(silent.url, "AKIDSILENT", "not-a-secret")
    with pytest.raises(ReadTimeoutError):
        await asyncio.to_thread(client.head_bucket, Bucket="b")
    assert silent.accepted == s3client.ATTEMPTS == 2


async def test_a_call_given_up_makes_no_more_attempts(
    silent: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call whose client left frees its slot at once, but its thread stays
    in botocore (nothing stops a blocking read): it makes no retry, so the
    thread is held for the attempt under way at most."""
    monkeypatch.setattr(s3client, "READ_SECONDS", 2.0)
    pool = Watched()
    monkeypatch.setattr(s3client, "S3_POOL", pool, raising=False)
    s3 = s3client.S3(s3client.new_client(silent.url, "AKIDSILENT", "not-a-secret"))
    call = asyncio.create_task(s3.call("head_bucket", Bucket="b"))
    await asyncio.wait_for(silent.reached(1), 30)
    call.cancel()  # as when its client leaves
    with pytest.raises(asyncio.CancelledError):
        await call
    assert pool.free() == pool.slots
    assert pool.abandoned == 1
    # Its thread ends with the attempt's 2 s read timeout, with no retry.
    await asyncio.wait_for(asyncio.to_thread(pool.executor.shutdown, wait=True), 20)
    assert pool.abandoned == 0
    assert silent.accepted == 1


async def test_access_grants_run_two_at_a_time_in_their_own_threads(
    gw: httpx.AsyncClient, jcs: Jcs, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = threading.Lock()
    running = [0]
    most = [0]
    threads: set[str] = set()
    real = credentials.new_grant

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            threads.add(threading.current_thread().name)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(credentials, "new_grant", counted)
    form = {"satellite_node_url": jcs.main_url, "restrict_key": jcs.api_key}
    answers = await asyncio.gather(
        *(gw.post("/createAccessGrant", data={**form, "password": f"p{i}"}) for i in range(16))
    )
    assert all(read(r, xml=False).code == 0 for r in answers), [r.text for r in answers]
    assert most[0] <= 2, most[0]  # 64 MiB each: at most 128 MiB at once
    assert all(name.startswith("jcs-gateway-argon2") for name in threads), threads
