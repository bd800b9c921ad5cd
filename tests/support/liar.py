"""An HTTP relay on loopback in front of an S3 server that can lie.

Each request is read whole, sent on to the real server, and its response
read whole; then ``fault`` (if set) may change what the client gets: other
bytes, a shorter or longer body, a wrong ``Content-Length``, a body that
stops mid-stream, a status of its choice. It runs its own event loop in a
thread (as ``Blackhole``), so it serves in-process tests whose loop is the
one waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from support.ports import free_port


@dataclass
class Exchange:
    """One request and the real server's answer; a fault edits the answer."""

    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # request headers, lower-case names
    body: bytes
    status: int = 0
    reason: str = ""
    resp_headers: list[tuple[str, str]] = field(default_factory=list)
    resp_body: bytes = b""
    # What the client is told: None sends len(resp_body).
    content_length: int | None = None
    # Bytes of the body sent before the connection is dropped (None: all).
    cut_after: int | None = None
    # Send the body in pieces of this many bytes, this many seconds apart.
    drip: tuple[int, float] | None = None
    # Do not forward the request at all (a PUT that is acknowledged but not stored).
    forward: bool = True

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str) -> str | None:
        for k, v in self.resp_headers:
            if k.lower() == name.lower():
                return v
        return None

    def set_header(self, name: str, value: str | None) -> None:
        self.resp_headers = [(k, v) for k, v in self.resp_headers if k.lower() != name.lower()]
        if value is not None:
            self.resp_headers.append((name, value))


Before = Callable[[Exchange], None]  # may set ``forward`` or change the request
After = Callable[[Exchange], None]  # may change the answer


class LyingRelay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.before: Before | None = None
        self.after: After | None = None
        self.seen: list[tuple[str, str, int]] = []  # method, target, status sent
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the relay did not start")

    def honest(self) -> None:
        self.before = None
        self.after = None

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._conns):
                w.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def begin() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(begin())
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                ex = await _read_request(reader)
                if ex is None:
                    return
                if self.before is not None:
                    self.before(ex)
                if ex.forward:
                    await self._forward(ex)
                else:
                    ex.status, ex.reason = 200, "OK"
                    ex.resp_headers = [("ETag", '"00000000000000000000000000000000"')]
                if self.after is not None:
                    self.after(ex)
                self.seen.append((ex.method, ex.target, ex.status))
                if not await _send(writer, ex):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._conns.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _forward(self, ex: Exchange) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", self.target_port)
        try:
            head = f"{ex.method} {ex.target} HTTP/1.1\r\n"
            hdrs = {k: v for k, v in ex.headers.items() if k not in ("connection",)}
            hdrs["connection"] = "close"
            hdrs.pop("transfer-encoding", None)
            hdrs["content-length"] = str(len(ex.body))
            head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
            w.write(head.encode("latin-1") + ex.body)
            await w.drain()
            status_line = (await r.readline()).decode("latin-1").rstrip("\r\n")
            _, status, *reason = status_line.split(" ", 2)
            ex.status, ex.reason = int(status), reason[0] if reason else ""
            headers: list[tuple[str, str]] = []
            while True:
                line = (await r.readline()).decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
            ex.resp_headers = headers
            te = ex.header("transfer-encoding")
            if te and "chunked" in te.lower():
                ex.resp_body = await _read_chunked(r)
                ex.set_header("transfer-encoding", None)
            elif ex.header("content-length") is not None:
                n = int(ex.header("content-length") or 0)
                ex.resp_body = await r.readexactly(n) if ex.method != "HEAD" else b""
            else:
                ex.resp_body = await r.read() if ex.method != "HEAD" else b""
        finally:
            w.close()


async def _read_request(reader: asyncio.StreamReader) -> Exchange | None:
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not h:
            break
        k, v = h.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Exchange(method, target, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


async def _send(writer: asyncio.StreamWriter, ex: Exchange) -> bool:
    """Write the answer; False when the connection was dropped on purpose."""
    body = ex.resp_body
    length = len(body) if ex.content_length is None else ex.content_length
    headers = [
        (k, v) for k, v in ex.resp_headers if k.lower() not in ("content-length", "connection")
    ]
    if ex.method == "HEAD":
        length = int(ex.header("content-length") or 0) if ex.content_length is None else length
        body = b""
    headers.append(("Content-Length", str(length)))
    head = f"HTTP/1.1 {ex.status} {ex.reason}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    writer.write(head.encode("latin-1"))
    if ex.cut_after is not None:
        writer.write(body[: ex.cut_after])
        await writer.drain()
        writer.transport.abort()
        return False
    if ex.drip is not None:
        step, pause = ex.drip
        for i in range(0, len(body), step):
            writer.write(body[i : i + step])
            await writer.drain()
            await asyncio.sleep(pause)
    else:
        writer.write(body)
    await writer.drain()
    if ex.method != "HEAD" and length != len(body):
        writer.transport.abort()  # the framing is broken now: nothing more on it
        return False
    return True
