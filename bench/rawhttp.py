"""A minimal HTTP/1.1 client for benchmarks, so the client is not the bottleneck.

Request bodies go out with ``sendfile`` (zero-copy from the page cache);
responses are received into one reused buffer and discarded. Each call uses
one keep-alive connection owned by the caller. Hand-written because general
clients (httpx, aiohttp) spend more CPU per byte than the server under test
would on this 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes  # kept only when keep_body=True
    size: int


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.buf = bytearray(4 << 20)
        self.view = memoryview(self.buf)
        self.pending = b""

    async def _connect(self) -> socket.socket:
        if self.sock is None:
            s = socket.socket()
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.get_running_loop().sock_connect(s, (self.host, self.port))
            self.sock = s
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        body_file: tuple[int, int, int] | None = None,  # (fd, offset, count)
        tail: bytes = b"",
        keep_body: bool = False,
    ) -> Reply:
        loop = asyncio.get_running_loop()
        sock = await self._connect()
        length = len(body) + (body_file[2] if body_file else 0) + len(tail)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if method in ("POST", "PUT") or length:
            lines.append(f"Content-Length: {length}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        await loop.sock_sendall(sock, head + body)
        if body_file:
            fd, off, count = body_file
            with os.fdopen(os.dup(fd), "rb") as f:
                await loop.sock_sendfile(sock, f, off, count)
        if tail:
            await loop.sock_sendall(sock, tail)
        return await self._read_reply(keep_body)

    async def _recv(self) -> bytes:
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        n = await loop.sock_recv_into(self.sock, self.buf)
        if n == 0:
            raise ConnectionError("server closed the connection")
        return bytes(self.view[:n])

    async def _read_reply(self, keep_body: bool) -> Reply:
        data = self.pending
        while b"\r\n\r\n" not in data:
            data += await self._recv()
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *hlines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for h in hlines:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = bytearray()
        if headers.get("transfer-encoding") == "chunked":
            raw = rest
            size = 0
            while True:
                while b"\r\n" not in raw:
                    raw += await self._recv()
                line, _, raw = raw.partition(b"\r\n")
                n = int(line.split(b";")[0], 16)
                while len(raw) < n + 2:
                    raw += await self._recv()
                if keep_body:
                    body += raw[:n]
                size += n
                raw = raw[n + 2 :]
                if n == 0:
                    break
            self.pending = raw
            return Reply(status, headers, bytes(body), size)
        want = int(headers.get("content-length", "0"))
        got = len(rest)
        if keep_body:
            body += rest
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        while got < want:
            n = await loop.sock_recv_into(self.sock, self.view[: min(len(self.buf), want - got)])
            if n == 0:
                raise ConnectionError("server closed mid-body")
            if keep_body:
                body += self.view[:n]
            got += n
        self.pending = b""
        return Reply(status, headers, bytes(body), want)


def multipart_parts(
    info: str, filename: str, boundary: str = "jcsbenchboundary"
) -> tuple[bytes, bytes]:
    """Preamble (info part + file part headers) and epilogue around raw file bytes."""
    pre = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="info"\r\n\r\n{info}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    post = f"\r\n--{boundary}--\r\n".encode()
    return pre, post
