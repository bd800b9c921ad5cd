"""The S3 endpoint of ``jcs serve`` against moto and s3rver, in one run.

    .venv/bin/python bench/s3.py [--quick] [--json FILE] [--profile-ours FILE] [--workers N]

Same machine, same client, same run, everything on loopback:

- ``ours``: ``jcs serve`` (fresh data dir, SQLite, default spaces) with
  ``--s3-listen``; its S3 credentials are made as a user would (project key
  → access grant → ``POST /v1/access``);
- ``moto``: ``python -m moto.server`` (in memory, Python/werkzeug);
- ``s3rver``: the npm package (Node, files in a temp dir), installed under
  ``bench/.node`` (``npm install --prefix bench/.node s3rver``); left out, and
  said so, when it is not installed;
- ``sink``: an S3-shaped ASGI app on uvicorn + httptools + uvloop (the same
  server stack as ours) that keeps only object sizes, answers every read with a
  constant buffer and every list from memory. It is the ceiling of the client:
  whatever the client reaches against it, the client can do against the
  others.

The client is boto3 (defaults kept: SigV4 with the payload's SHA-256, CRC32
checksums), path-style, us-east-1, in several processes with one client each
(forked once, reused for every server). Measured: one large object up and down
with boto3's managed transfer (8 MiB parts, 8 threads), and again with the
lean client below (``--big-procs`` processes sending the 8 MiB parts of one
multipart upload at once, each body by ``sendfile`` with its CRC32 in a
header and ``UNSIGNED-PAYLOAD``, as the AWS SDKs send over TLS; Create and
Complete timed; ranged 8 MiB GETs the same way). boto3's transfer in one
process is the bottleneck itself: it reached 120-180 MB/s up and 470-580
down against the sink, where the lean client reaches 500-700 and 3,000+;
200 × 1 MiB up and
down (4 processes); 4 KiB PUT/s and GET/s with 16 processes; ListObjectsV2 of
1,000 keys (page 1000) per second (4 processes); the server's peak RSS (its
process tree, sampled every 20 ms) during the large upload. The per-request
phases (1 MiB, 4 KiB, LIST) are run a second time with a "lean" client:
every request of a task signed by botocore's own SigV4 signer before the
phase starts, then written raw to one keep-alive socket per process, with no
response parsing beyond status, length and body (``Lean``). boto3 spends more
CPU per request than some servers on this 2-core machine (it tops out near
400 4 KiB PUT/s and 13 LISTs/s against the sink); signing inside the loop
still held the client near 1,500 ops/s, below five times the faster peer.
Signed ahead, it reaches 7,000+ 4 KiB ops/s and hundreds of LISTs/s against
the sink at under a core, so the targets are judged on its
figures (and the RSS target on the larger peak of the two large uploads). For every phase
the client's CPU (all worker processes) and the server's (its process tree)
are recorded, so a client-bound figure shows. Prints the table, ratios of ours
to the faster peer and the issue's targets.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Generator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = Path(__file__).resolve().parent / ".node"
S3RVER_JS = NODE_DIR / "node_modules/s3rver/bin/s3rver.js"
MiB = 1 << 20
BUCKET = "bench"
REGION = "us-east-1"
PASSPHRASE = "bench s3 passphrase"

# ----------------------------------------------------------------------------
# The sink: an S3-shaped ASGI app (run as ``s3.py --sink PORT``)
# ----------------------------------------------------------------------------

_CHUNK = b"\xa5" * MiB
_XMLNS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
_STAMP = "2026-01-01T00:00:00.000Z"
_ETAG = '"0123456789abcdef0123456789abcdef"'


def _sink_app() -> Any:
    from urllib.parse import parse_qs, unquote

    sizes: dict[str, int] = {}
    uploads: dict[str, dict[int, int]] = {}

    async def drain(receive: Any) -> int:
        total, more = 0, True
        while more:
            msg = await receive()
            total += len(msg.get("body", b""))
            more = msg.get("more_body", False)
        return total

    async def reply(
        send: Any, status: int, body: bytes = b"", headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        base = [(b"content-length", str(len(body)).encode()), (b"etag", _ETAG.encode())]
        await send({"type": "http.response.start", "status": status, "headers": [*base, *headers]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        method = scope["method"]
        path = unquote(scope["path"]).lstrip("/")
        bucket, _, key = path.partition("/")
        q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode(), True).items()}
        if method == "PUT":
            n = await drain(receive)
            if "uploadId" in q:
                uploads[q["uploadId"]][int(q["partNumber"])] = n
            elif key:
                sizes[key] = n
            await reply(send, 200)
        elif method == "POST":
            await drain(receive)
            if "uploads" in q:
                uid = f"u{len(uploads)}"
                uploads[uid] = {}
                xml = (
                    f"<InitiateMultipartUploadResult {_XMLNS}><Bucket>{bucket}</Bucket>"
                    f"<Key>{key}</Key><UploadId>{uid}</UploadId></InitiateMultipartUploadResult>"
                )
            else:
                sizes[key] = sum(uploads.pop(q["uploadId"]).values())
                xml = (
                    f"<CompleteMultipartUploadResult {_XMLNS}><Bucket>{bucket}</Bucket>"
                    f"<Key>{key}</Key><ETag>{_ETAG}</ETag></CompleteMultipartUploadResult>"
                )
            await reply(send, 200, xml.encode(), ((b"content-type", b"application/xml"),))
        elif key == "" and method == "GET":  # ListObjectsV2
            prefix, limit = q.get("prefix", ""), int(q.get("max-keys", "1000"))
            keys = sorted(k for k in sizes if k.startswith(prefix))[:limit]
            parts = [
                f"<?xml version='1.0' encoding='UTF-8'?><ListBucketResult {_XMLNS}>"
                f"<Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>{len(keys)}</KeyCount>"
                f"<MaxKeys>{limit}</MaxKeys><IsTruncated>false</IsTruncated>"
            ]
            parts += [
                f"<Contents><Key>{k}</Key><LastModified>{_STAMP}</LastModified>"
                f"<ETag>{_ETAG}</ETag><Size>{sizes[k]}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
                for k in keys
            ]
            parts.append("</ListBucketResult>")
            xml = "".join(parts).encode()
            await reply(send, 200, xml, ((b"content-type", b"application/xml"),))
        elif method in ("GET", "HEAD"):
            size = sizes.get(key, 0)
            start, end, status = 0, size - 1, 200
            headers = dict(scope["headers"])
            rng = headers.get(b"range", b"").decode()
            if rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start, end, status = int(a), min(int(b or size - 1), size - 1), 206
            n = end - start + 1
            hdrs = [
                (b"content-length", str(n).encode()),
                (b"etag", _ETAG.encode()),
                (b"last-modified", b"Thu, 01 Jan 2026 00:00:00 GMT"),
                (b"content-type", b"application/octet-stream"),
                (b"accept-ranges", b"bytes"),
            ]
            if status == 206:
                hdrs.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
            await send({"type": "http.response.start", "status": status, "headers": hdrs})
            if method == "HEAD" or n == 0:
                await send({"type": "http.response.body", "body": b""})
                return
            while n > 0:
                piece = _CHUNK if n >= MiB else _CHUNK[:n]
                n -= len(piece)
                await send({"type": "http.response.body", "body": piece, "more_body": n > 0})
        else:
            await drain(receive)
            await reply(send, 204)

    return app


def run_sink(port: int) -> None:
    import uvicorn

    uvicorn.run(
        _sink_app(),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )


# ----------------------------------------------------------------------------
# Client workers: forked once, one boto3 client per endpoint each
# ----------------------------------------------------------------------------


class CountingSink:
    """A seekable file that only counts what boto3's downloader writes."""

    def __init__(self) -> None:
        self.n = 0
        self.pos = 0

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos

    def write(self, data: bytes) -> int:
        self.n += len(data)
        self.pos += len(data)
        return len(data)


def _client(endpoint: str, ak: str, sk: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        region_name=REGION,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            max_pool_connections=16,
            read_timeout=600,
            connect_timeout=30,
        ),
    )


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=8
    )


def _body(size: int) -> bytes:
    """The same pseudo-random bytes in every process (so GETs can be checked)."""
    import random

    return random.Random(size).randbytes(size)


class Lean:
    """A client with far less CPU per request than boto3's, for the
    per-request phases. Every request of a task is signed *before* the
    phase starts (botocore's ``S3SigV4Auth``, the payload's SHA-256 signed
    as boto3 does over http: the server checks the same signature it would
    check for boto3) and kept as raw HTTP/1.1 bytes; the timed loop only
    writes them to one keep-alive socket and reads status, length and body.
    Signing costs more than the servers' own work per 4 KiB request here,
    so doing it inside the loop made the client the bottleneck (it reached
    1,400-1,500 ops/s against the sink, below 5 x the faster peer). A
    signature stays valid for the 15 minutes of allowed clock skew; a phase
    lasts seconds."""

    def __init__(self, endpoint: str, ak: str, sk: str) -> None:
        from botocore.auth import S3SigV4Auth
        from botocore.credentials import Credentials

        self.endpoint = endpoint

        class Unsigned(S3SigV4Auth):
            def _should_sha256_sign_payload(self, request: Any) -> bool:
                return False

        self.auth = S3SigV4Auth(Credentials(ak, sk), "s3", REGION)
        self.unsigned = Unsigned(Credentials(ak, sk), "s3", REGION)
        self.fields: dict[bytes, bytes] = {}  # of the last response
        self.out: list[Any] = []  # what a task hands back (part ETags)
        host, _, port = endpoint.removeprefix("http://").partition(":")
        self.addr = (host, int(port))
        self.sock: socket.socket | None = None
        self.buf = bytearray(2 * MiB)
        self.view = memoryview(self.buf)

    def sign(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> bytes:
        """The head of a signed request (the body goes after it as is).
        ``length``: a body of that many bytes sent from a file, signed as
        ``UNSIGNED-PAYLOAD`` (what the AWS SDKs send over TLS, where they
        leave the payload to the checksum in ``headers``)."""
        from botocore.awsrequest import AWSRequest

        req = AWSRequest(method=method, url=self.endpoint + path, data=body, headers=headers)
        (self.auth if length is None else self.unsigned).add_auth(req)
        fields = dict(req.prepare().headers)  # signed "host" comes from the URL
        size = len(body) if length is None else length
        fields["Content-Length"] = str(size)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.addr[0]}:{self.addr[1]}"]
        lines += [f"{k}: {v}" for k, v in fields.items() if k != "Content-Length" or size]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _connect(self) -> socket.socket:
        if self.sock is None:
            s = socket.create_connection(self.addr, timeout=600)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = s
        return self.sock

    def send(self, head: bytes, body: bytes = b"", keep: bool = False) -> bytes:
        """Send one signed request; its body if ``keep``, else ``b""``."""
        try:
            return self._exchange(head, body, keep)
        except (ConnectionError, EOFError):
            # The server closed the idle keep-alive connection: once more on
            # a new one, as every pooled HTTP client does.
            self.close()
            return self._exchange(head, body, keep)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _recv(self, sock: socket.socket) -> bytes:
        n = sock.recv_into(self.buf)
        if n == 0:
            raise EOFError("server closed the connection")
        return bytes(self.view[:n])

    def send_file(self, head: bytes, f: Any, offset: int, length: int) -> dict[bytes, bytes]:
        """Send a request whose body is ``length`` bytes of file ``f`` from
        ``offset`` (``sendfile``: the client copies nothing); the response's
        header fields."""
        sock = self._connect()
        try:
            sock.sendall(head)
            if sock.sendfile(f, offset, length) != length:
                raise EOFError("server closed mid-request")
            self._response(sock, head, False)
        except BaseException:
            self.close()  # a half-sent request leaves the connection unusable
            raise
        return self.fields

    def _exchange(self, head: bytes, body: bytes, keep: bool) -> bytes:
        sock = self._connect()
        sock.sendall(head + body if len(body) <= 65536 else head)
        if len(body) > 65536:
            sock.sendall(body)
        return self._response(sock, head, keep)

    def _response(self, sock: socket.socket, head: bytes, keep: bool) -> bytes:
        data = self._recv(sock)
        while b"\r\n\r\n" not in data:
            data += self._recv(sock)
        top, _, rest = data.partition(b"\r\n\r\n")
        status = int(top[9:12])
        fields = {}
        for line in top.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            fields[k.strip().lower()] = v.strip()
        self.fields = fields
        if fields.get(b"transfer-encoding") == b"chunked":
            out = self._chunked(sock, rest)
        else:
            want = int(fields.get(b"content-length", b"0"))
            parts, got = [rest], len(rest)
            while got < want:
                n = sock.recv_into(self.view[: min(len(self.buf), want - got)])
                if n == 0:
                    raise EOFError("server closed mid-body")
                if keep or status >= 300:
                    parts.append(bytes(self.view[:n]))
                got += n
            out = b"".join(parts) if keep or status >= 300 else b""
        if fields.get(b"connection") == b"close":
            self.close()
        if status >= 300:
            raise RuntimeError(f"{head[:60]!r}: {status} {out[:200]!r}")
        return out

    def _chunked(self, sock: socket.socket, raw: bytes) -> bytes:
        out = bytearray()
        while True:
            while b"\r\n" not in raw:
                raw += self._recv(sock)
            line, _, raw = raw.partition(b"\r\n")
            n = int(line.split(b";")[0], 16)
            while len(raw) < n + 2:
                raw += self._recv(sock)
            out += raw[:n]
            raw = raw[n + 2 :]
            if n == 0:
                return bytes(out)


def _lean_prepare(lean: Lean, op: str, a: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """Every request of a lean task, signed before the clock starts."""
    if op == "put":
        body = _body(a["size"])
        return [(lean.sign("PUT", f"/{BUCKET}/{k}", body), body) for k in a["keys"]]
    if op == "get":
        return [(lean.sign("GET", f"/{BUCKET}/{k}"), b"") for k in a["keys"]]
    if op == "list":
        path = f"/{BUCKET}?list-type=2&max-keys=1000&prefix={a['prefix'].replace('/', '%2F')}"
        return [(lean.sign("GET", path), b"")]
    if op == "bigput":
        # Each part with its CRC32 in a header, as the AWS SDKs send it by
        # default; both computed here, before the clock starts.
        heads = []
        with open(a["path"], "rb") as f:
            for number, offset, length in a["parts"]:
                f.seek(offset)
                crc = zlib.crc32(f.read(length)).to_bytes(4, "big")
                path = f"/{BUCKET}/{a['key']}?partNumber={number}&uploadId={a['upload_id']}"
                checksum = {"x-amz-checksum-crc32": base64.b64encode(crc).decode()}
                heads.append((lean.sign("PUT", path, headers=checksum, length=length), b""))
        return heads
    if op == "bigget":
        return [
            (
                lean.sign(
                    "GET", f"/{BUCKET}/{a['key']}", headers={"Range": f"bytes={o}-{o + n - 1}"}
                ),
                b"",
            )
            for o, n in a["ranges"]
        ]
    raise ValueError(op)


def _lean(lean: Lean, op: str, a: dict[str, Any], reqs: list[tuple[bytes, bytes]]) -> int:
    if op == "put":
        for head, body in reqs:
            lean.send(head, body)
        return len(reqs)
    if op == "get":
        body = _body(a["size"])
        for (head, _), k in zip(reqs, a["keys"], strict=True):
            got = lean.send(head, keep=True)
            if len(got) != a["size"] or (a["check"] and got != body):
                raise RuntimeError(f"GET {k}: {len(got)} bytes, not the ones put")
        return len(reqs)
    if op == "bigput":
        with open(a["path"], "rb") as f:
            for (head, _), (number, offset, length) in zip(reqs, a["parts"], strict=True):
                etag = lean.send_file(head, f, offset, length)[b"etag"].decode()
                lean.out.append((number, etag))
        return len(reqs)
    if op == "bigget":
        for (head, _), (_, length) in zip(reqs, a["ranges"], strict=True):
            lean.send(head)
            if int(lean.fields[b"content-length"]) != length:
                raise RuntimeError(f"ranged GET: {lean.fields[b'content-length']!r} bytes")
        return len(reqs)
    if op == "list":
        n, deadline = 0, time.monotonic() + a["seconds"]
        head = reqs[0][0]
        while n == 0 or time.monotonic() < deadline:
            xml = lean.send(head, keep=True)
            if xml.count(b"<Key>") != a["expect"]:
                raise RuntimeError(f"LIST: {xml.count(b'<Key>')} keys, not {a['expect']}")
            n += 1
        return n
    raise ValueError(op)


def _do(client: Any, op: str, a: dict[str, Any], prepared: Any) -> int:
    """Run one task; returns how many operations were done."""
    if op.startswith("lean_"):
        return _lean(client[1], op[5:], a, prepared)
    client = client[0]
    if op == "put":
        body = _body(a["size"])
        for k in a["keys"]:
            client.put_object(Bucket=BUCKET, Key=k, Body=body)
        return len(a["keys"])
    if op == "get":
        body = _body(a["size"])
        for k in a["keys"]:
            got = client.get_object(Bucket=BUCKET, Key=k)["Body"].read()
            if len(got) != a["size"] or (a["check"] and got != body):
                raise RuntimeError(f"GET {k}: {len(got)} bytes, not the ones put")
        return len(a["keys"])
    if op == "list":
        n, deadline = 0, time.monotonic() + a["seconds"]
        while n == 0 or time.monotonic() < deadline:
            r = client.list_objects_v2(Bucket=BUCKET, Prefix=a["prefix"], MaxKeys=1000)
            if r["KeyCount"] != a["expect"]:
                raise RuntimeError(f"LIST: {r['KeyCount']} keys, not {a['expect']}")
            n += 1
        return n
    if op == "upload_file":
        client.upload_file(a["path"], BUCKET, a["key"], Config=_transfer_config())
        return 1
    if op == "download":
        sink = CountingSink()
        client.download_fileobj(BUCKET, a["key"], sink, Config=_transfer_config())
        if sink.n != a["size"]:
            raise RuntimeError(f"download: {sink.n} bytes, not {a['size']}")
        return 1
    raise ValueError(op)


def _worker(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    clients: dict[tuple[str, str, str], Any] = {}
    while True:
        msg = conn.recv()
        if msg is None:
            return
        creds, op, args = msg
        try:
            if creds not in clients:
                clients[creds] = (_client(*creds), Lean(*creds))
            client = clients[creds]
            prepared = _lean_prepare(client[1], op[5:], args) if op.startswith("lean_") else None
            conn.send("ready")
            conn.recv()  # go
            c0, t0 = time.process_time(), time.monotonic()
            n = _do(client, op, args, prepared)
            out, client[1].out = client[1].out, []
            conn.send(("ok", time.monotonic(), time.process_time() - c0, n, t0, out))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:400]))


class Pool:
    def __init__(self, n: int) -> None:
        ctx = mp.get_context("fork")
        self.conns: list[Connection] = []
        self.procs = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child,), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.send(None)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()


def tree(pid: int) -> list[Any]:
    import psutil

    p = psutil.Process(pid)
    return [p, *p.children(recursive=True)]


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(Exception):
            t = p.cpu_times()
            total += t.user + t.system
    return total


class PeakRss:
    """Samples the RSS of a process tree every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in tree(self.pid):
                with contextlib.suppress(Exception):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


@dataclass
class Phase:
    wall: float
    ops: int
    client_cpu: float
    server_cpu: float
    out: list[Any] = field(default_factory=list)

    @property
    def client_cores(self) -> float:
        return self.client_cpu / self.wall

    @property
    def server_cores(self) -> float:
        return self.server_cpu / self.wall


def run_phase(
    pool: Pool, server_pid: int, creds: tuple[str, str, str], op: str, tasks: list[dict[str, Any]]
) -> Phase:
    conns = pool.conns[: len(tasks)]
    for c, t in zip(conns, tasks, strict=True):
        c.send((creds, op, t))
    errors = []
    for c in conns:
        r = c.recv()
        if r != "ready":
            errors.append(r[1])
    if errors:
        raise RuntimeError(errors[0])
    s0 = tree_cpu(server_pid)
    t0 = time.monotonic()
    for c in conns:
        c.send("go")
    results = [c.recv() for c in conns]
    server_cpu = tree_cpu(server_pid) - s0
    errors = [r[1] for r in results if r[0] != "ok"]
    if errors:
        raise RuntimeError(errors[0])
    wall = max(r[1] for r in results) - t0
    out = [x for r in results for x in r[5]]
    return Phase(wall, sum(r[3] for r in results), sum(r[2] for r in results), server_cpu, out)


def split(items: list[T], n: int) -> list[list[T]]:
    return [items[i::n] for i in range(n)]


# ----------------------------------------------------------------------------
# Servers
# ----------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    endpoint: str
    ak: str
    sk: str
    check: bool = True  # GETs return what was put
    log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def creds(self) -> tuple[str, str, str]:
        return (self.endpoint, self.ak, self.sk)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on {port}")


def start_sink() -> Server:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--sink", str(port)])
    wait_port(port, proc, "sink")
    return Server("sink", proc, f"http://127.0.0.1:{port}", "sink", "sinksecret", check=False)


def start_moto(work: Path) -> Server:
    port = free_port()
    log = work / "moto.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_port(port, proc, "moto")
    return Server("moto", proc, f"http://127.0.0.1:{port}", "moto", "motosecret", log=log)


def start_s3rver(work: Path) -> Server | None:
    if not S3RVER_JS.exists() or not shutil.which("node"):
        return None
    port = free_port()
    data = work / "s3rver"
    data.mkdir()
    log = work / "s3rver.log"
    proc = subprocess.Popen(
        ["node", str(S3RVER_JS), "-d", str(data), "-a", "127.0.0.1", "-p", str(port), "--silent"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_port(port, proc, "s3rver")
    return Server("s3rver", proc, f"http://127.0.0.1:{port}", "S3RVER", "S3RVER", log=log)


def start_ours(work: Path, profile: str | None, workers: int = 1) -> Server:
    """``jcs serve`` on SQLite; ``workers`` > 1: that many processes
    (``--workers``), every one listening before the phases start."""
    import httpx
    from v1_api import wait_listening

    from jointcloud.keys.grant import new_grant

    port, s3port = free_port(), free_port()
    data = work / "jcs-data"
    log = work / "jcs.log"
    env = dict(os.environ, JCS_GC_INTERVAL_SECONDS="3600", JCS_WORKERS=str(workers))
    pre = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    proc = subprocess.Popen(
        [
            *pre,
            str(ROOT / ".venv/bin/jcs"),
            "serve",
            "--data-dir",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
            "--public-url",
            f"http://127.0.0.1:{port}",
            "--s3-listen",
            f"127.0.0.1:{s3port}",
        ],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_port(port, proc, "jcs serve")
    wait_port(s3port, proc, "jcs serve (S3)")
    wait_listening(proc.pid, s3port, workers)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if (data / "root.key").exists():
            break
        time.sleep(0.1)
    root = (data / "root.key").read_text().strip()
    with httpx.Client(base_url=base, timeout=120) as api:

        def ok(r: httpx.Response) -> Any:
            if r.status_code != 200:
                raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:300]}")
            return r.json()

        auth = {"Authorization": f"Bearer {root}"}
        bucket = ok(api.post("/v1/bucket/create", json={"name": "s3bench"}, headers=auth))
        bucket_id = bucket["data"]["bucket"]["bucketID"]
        made = ok(
            api.post(
                "/v1/apiKey/create", json={"bucketID": bucket_id, "name": "bench"}, headers=auth
            )
        )
        key = made["data"]["apiKey"]["key"]
        info = ok(api.get("/v1/project/info", headers={"Authorization": f"Bearer {key}"}))["data"]
        grant = new_grant(info["satellite"], key, PASSPHRASE, info["projectID"]).serialize()
        creds = ok(api.post("/v1/access", json={"access_grant": grant}))
    return Server(
        "ours", proc, creds["endpoint"], creds["access_key_id"], creds["secret_key"], log=log
    )


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------

METRICS = [
    # key, label, unit, higher is better
    ("big_put", "{big} object PUT", "MB/s"),
    ("big_get", "{big} object GET", "MB/s"),
    ("lean_big_put", "lean: {big} PUT", "MB/s"),
    ("lean_big_get", "lean: {big} GET", "MB/s"),
    ("mib_put", "{n} x 1 MiB PUT", "MB/s"),
    ("mib_get", "{n} x 1 MiB GET", "MB/s"),
    ("small_put", "4 KiB PUT, 16 clients", "ops/s"),
    ("small_get", "4 KiB GET, 16 clients", "ops/s"),
    ("list", "LIST 1,000 keys", "lists/s"),
    ("lean_mib_put", "lean: {n} x 1 MiB PUT", "MB/s"),
    ("lean_mib_get", "lean: {n} x 1 MiB GET", "MB/s"),
    ("lean_small_put", "lean: 4 KiB PUT", "ops/s"),
    ("lean_small_get", "lean: 4 KiB GET", "ops/s"),
    ("lean_list", "lean: LIST 1,000 keys", "lists/s"),
    ("rss", "peak RSS, big PUT", "MB"),
    ("lean_rss", "peak RSS, lean big PUT", "MB"),
]


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure(
    server: Server, pool: Pool, args: argparse.Namespace, big: Path
) -> Generator[None, None, dict[str, Any]]:
    """The phases against one server, pausing (``yield``) every phase or two
    so that the servers take turns: load from elsewhere on the machine then
    falls on all of them alike."""
    pid = server.proc.pid
    out: dict[str, Any] = {"load_before": loadavg(), "phases": {}}
    print(f"== {server.name} ({server.endpoint}); load average {out['load_before']}", flush=True)
    _client(*server.creds).create_bucket(Bucket=BUCKET)
    big_size = big.stat().st_size

    def record(name: str, ph: Phase, value: float) -> None:
        out[name] = value
        out["phases"][name] = {
            "wall_s": round(ph.wall, 3),
            "ops": ph.ops,
            "client_cores": round(ph.client_cores, 2),
            "server_cores": round(ph.server_cores, 2),
            "load": loadavg(),
        }
        print(
            f"   {server.name:<7}{name:<15}{value:10.1f}   client {ph.client_cores:.2f} cores, "
            f"server {ph.server_cores:.2f} cores, {ph.wall:.2f} s",
            flush=True,
        )

    def attempt(name: str, fn: Any) -> None:
        # Untimed: what the phases before wrote and left unsynced (s3rver
        # syncs nothing) is written back now, not during this phase.
        os.sync()
        try:
            fn()
        except Exception as exc:
            out[name] = None
            out.setdefault("errors", {})[name] = str(exc)[:300]
            print(f"   {server.name:<7}{name:<15} ERROR {str(exc)[:300]}", flush=True)

    def big_put() -> None:
        with PeakRss(pid) as rss:
            ph = run_phase(
                pool, pid, server.creds, "upload_file", [{"path": str(big), "key": "big"}]
            )
        out["rss"] = rss.peak / 1e6
        record("big_put", ph, big_size / 1e6 / ph.wall)
        print(f"   {server.name:<7}{'rss':<15}{out['rss']:10.1f}", flush=True)

    def big_get() -> None:
        ph = run_phase(pool, pid, server.creds, "download", [{"key": "big", "size": big_size}])
        record("big_get", ph, big_size / 1e6 / ph.wall)

    part = 8 * MiB
    spans = [(off, min(part, big_size - off)) for off in range(0, big_size, part)]

    def lean_big_put() -> None:
        """The large object as a multipart upload whose parts are sent by
        ``args.big_procs`` processes at once, each body by ``sendfile``:
        boto3's managed transfer, in one process, is the bottleneck itself
        (the sink's figure shows it). Create and Complete are timed too."""
        client = _client(*server.creds)
        client.head_bucket(Bucket=BUCKET)  # boto3 loads its models on a first call
        t0 = time.monotonic()
        uid = client.create_multipart_upload(Bucket=BUCKET, Key="lbig")["UploadId"]
        created = time.monotonic() - t0
        parts = [[i + 1, off, n] for i, (off, n) in enumerate(spans)]
        tasks = [
            {"path": str(big), "key": "lbig", "upload_id": uid, "parts": ps}
            for ps in split(parts, args.big_procs)
        ]
        with PeakRss(pid) as rss:
            ph = run_phase(pool, pid, server.creds, "lean_bigput", tasks)
            t1 = time.monotonic()
            etags = sorted(ph.out)
            client.complete_multipart_upload(
                Bucket=BUCKET,
                Key="lbig",
                UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in etags]},
            )
            t2 = time.monotonic()
        out["lean_rss"] = rss.peak / 1e6
        # run_phase's clock covers the parts only (it starts once they are
        # signed): add Create and Complete.
        ph.wall += created + (t2 - t1)
        record("lean_big_put", ph, big_size / 1e6 / ph.wall)
        print(f"   {server.name:<7}{'lean_rss':<15}{out['lean_rss']:10.1f}", flush=True)

    def lean_big_get() -> None:
        tasks = [{"key": "lbig", "ranges": rs} for rs in split(spans, args.big_procs)]
        ph = run_phase(pool, pid, server.creds, "lean_bigget", tasks)
        record("lean_big_get", ph, big_size / 1e6 / ph.wall)

    attempt("big_put", big_put)
    yield
    attempt("big_get", big_get)
    attempt("lean_big_put", lean_big_put)
    yield
    attempt("lean_big_get", lean_big_get)

    mib_keys = [f"m/{i:04d}" for i in range(args.mib_count)]

    def mib(op: str, name: str) -> None:
        tasks = [
            {"keys": ks, "size": MiB, "check": server.check} for ks in split(mib_keys, args.procs)
        ]
        ph = run_phase(pool, pid, server.creds, op, tasks)
        record(name, ph, ph.ops * MiB / 1e6 / ph.wall)

    attempt("mib_put", lambda: mib("put", "mib_put"))
    yield
    attempt("mib_get", lambda: mib("get", "mib_get"))

    small_keys = [f"s/{i:05d}" for i in range(args.small_count)]

    def small(op: str, name: str) -> None:
        tasks = [{"keys": ks, "size": 4096, "check": server.check} for ks in split(small_keys, 16)]
        ph = run_phase(pool, pid, server.creds, op, tasks)
        record(name, ph, ph.ops / ph.wall)

    attempt("small_put", lambda: small("put", "small_put"))
    yield
    attempt("small_get", lambda: small("get", "small_get"))

    lean_mib = [f"n/{i:04d}" for i in range(args.mib_count)]
    lean_small = [f"t/{i:05d}" for i in range(args.small_count)]

    def lean(op: str, name: str, keys: list[str], size: int, procs: int) -> None:
        tasks = [{"keys": ks, "size": size, "check": server.check} for ks in split(keys, procs)]
        ph = run_phase(pool, pid, server.creds, "lean_" + op, tasks)
        record(name, ph, ph.ops * size / 1e6 / ph.wall if size >= MiB else ph.ops / ph.wall)

    attempt("lean_mib_put", lambda: lean("put", "lean_mib_put", lean_mib, MiB, args.procs))
    yield
    attempt("lean_mib_get", lambda: lean("get", "lean_mib_get", lean_mib, MiB, args.procs))
    attempt("lean_small_put", lambda: lean("put", "lean_small_put", lean_small, 4096, 16))
    yield
    attempt("lean_small_get", lambda: lean("get", "lean_small_get", lean_small, 4096, 16))

    def listing() -> None:
        keys = [f"l/{i:04d}" for i in range(1000)]
        run_phase(
            pool, pid, server.creds, "put", [{"keys": ks, "size": 64} for ks in split(keys, 16)]
        )
        task = {"prefix": "l/", "expect": 1000, "seconds": args.list_seconds}
        ph = run_phase(pool, pid, server.creds, "list", [task] * args.procs)
        record("list", ph, ph.ops / ph.wall)
        ph = run_phase(pool, pid, server.creds, "lean_list", [task] * args.procs)
        record("lean_list", ph, ph.ops / ph.wall)

    attempt("list", listing)
    yield
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="jcs-s3bench-", dir=args.tmp))
    pool = Pool(max(16, args.procs))
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "big_mib": args.big_mib,
        "mib_count": args.mib_count,
        "small_count": args.small_count,
        "servers": {},
    }
    print(f"uptime: {results['uptime']}", flush=True)
    big = work / "big.bin"
    with big.open("wb") as f:
        block = os.urandom(8 * MiB)
        for _ in range(args.big_mib // 8):
            f.write(block)
    starters = {
        "sink": start_sink,
        "ours": lambda: start_ours(work, args.profile_ours, args.workers),
        "moto": lambda: start_moto(work),
        "s3rver": lambda: start_s3rver(work),
    }
    servers: list[Server] = []
    try:
        runs = {}
        for name in args.servers.split(","):
            server = starters[name]()
            if server is None:
                print(f"== {name}: not installed (npm install --prefix bench/.node s3rver)")
                results["servers"][name] = None
                continue
            servers.append(server)
            runs[name] = measure(server, pool, args, big)
        while runs:
            for name, gen in list(runs.items()):
                try:
                    next(gen)
                except StopIteration as done:
                    results["servers"][name] = done.value
                    del runs[name]
    finally:
        for server in servers:
            server.stop()
        pool.close()
        shutil.rmtree(work, ignore_errors=True)
    return results


def report(r: dict[str, Any]) -> list[tuple[str, float | None, str, bool | None]]:
    servers = {k: v for k, v in r["servers"].items() if v is not None}
    peers = [n for n in ("moto", "s3rver") if n in servers]
    names = [n for n in ("sink", "ours", "moto", "s3rver") if n in servers]
    big = f"{r['big_mib'] // 1024} GiB" if r["big_mib"] >= 1024 else f"{r['big_mib']} MiB"

    def val(server: str, key: str) -> float | None:
        v = servers[server].get(key)
        return None if v is None else float(v)

    def faster_peer(key: str) -> float | None:
        vals = [v for p in peers if (v := val(p, key)) is not None]
        if not vals:
            return None
        return min(vals) if key.endswith("rss") else max(vals)

    print()
    head = f"{'':<24}{'unit':>8}" + "".join(f"{n:>10}" for n in names) + f"{'ours/peer':>11}"
    print(head)
    for key, label, unit in METRICS:
        row = f"{label.format(big=big, n=r['mib_count']):<24}{unit:>8}"
        for n in names:
            v = val(n, key)
            row += f"{'ERR' if v is None else f'{v:.1f}':>10}"
        ours, peer = val("ours", key) if "ours" in servers else None, faster_peer(key)
        ratio = f"{ours / peer:.2f}" if ours and peer else "-"
        print(row + f"{ratio:>11}")
    print(
        "(sink: S3-shaped bare ASGI app, the client's ceiling; peer = faster of moto/s3rver;\n"
        " lean: requests signed by botocore before the phase, sent raw; the large object\n"
        " as a multipart upload from several processes, bodies by sendfile, and ranged\n"
        " GETs; every target but RSS uses the lean client, which has the most headroom\n"
        " against the sink)"
    )

    print(f"\n{'client / server CPU, cores':<24}" + "".join(f"{n:>14}" for n in names))
    for key, label, _ in METRICS:
        if key.endswith("rss"):
            continue
        row = f"{label.format(big=big, n=r['mib_count']):<24}"
        for n in names:
            ph = servers[n]["phases"].get(key)
            cell = f"{ph['client_cores']:.2f}/{ph['server_cores']:.2f}" if ph else "-"
            row += f"{cell:>14}"
        print(row)
    print(
        "load average at each server's first phase: "
        + ", ".join(f"{n} {servers[n]['load_before']}" for n in names)
    )

    targets: list[tuple[str, float | None, str, bool | None]] = []

    # The targets are against the faster of both peers: with one missing
    # (s3rver not installed), a ratio to the other is shown but not judged.
    missing = [n for n in ("moto", "s3rver") if n not in servers]

    def ratio_target(label: str, key: str, want: float) -> None:
        ours, peer = val("ours", key) if "ours" in servers else None, faster_peer(key)
        v = ours / peer if ours and peer else None
        targets.append((label, v, f">= {want}x", None if v is None or missing else v >= want))

    ratio_target("large PUT vs faster peer", "lean_big_put", 2.0)
    ratio_target("large GET vs faster peer", "lean_big_get", 1.5)
    ratio_target("4 KiB PUT vs faster peer", "lean_small_put", 5.0)
    ratio_target("4 KiB GET vs faster peer", "lean_small_get", 5.0)
    ratio_target("LIST 1,000 vs faster peer", "lean_list", 10.0)
    # Both large uploads count: boto3's (8 threads) and the lean one (parts
    # from --big-procs processes at once).
    rsses = [v for k in ("rss", "lean_rss") if "ours" in servers and (v := val("ours", k))]
    rss = max(rsses) if rsses else None
    targets.append(("peak RSS, big PUT (MB)", rss, "< 250", None if rss is None else rss < 250))
    print("\ntargets:")
    if missing:
        print(f"  (not judged against peers: {', '.join(missing)} did not run)")
    for label, v, want, ok in targets:
        shown = "-" if v is None else f"{v:.2f}"
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        print(f"  {label:<28}{shown:>9}  {want:<9}{verdict}")
    return targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes")
    ap.add_argument("--big-mib", type=int, default=None, help="large object (default 1024)")
    ap.add_argument("--mib-count", type=int, default=None, help="1 MiB objects (default 200)")
    ap.add_argument("--small-count", type=int, default=None, help="4 KiB objects (default 2000)")
    ap.add_argument("--list-seconds", type=float, default=None, help="LIST phase (default 6)")
    ap.add_argument("--procs", type=int, default=4, help="client processes (1 MiB, LIST)")
    ap.add_argument("--big-procs", type=int, default=8, help="client processes, lean large object")
    ap.add_argument("--servers", default="sink,ours,moto,s3rver")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--profile-ours", default=None, help="run jcs serve under cProfile into FILE")
    ap.add_argument("--workers", type=int, default=1, help="jcs serve --workers N (SQLite)")
    ap.add_argument("--sink", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink is not None:
        run_sink(args.sink)
        return
    quick = {"big_mib": 128, "mib_count": 50, "small_count": 400, "list_seconds": 2.0}
    full = {"big_mib": 1024, "mib_count": 200, "small_count": 2000, "list_seconds": 6.0}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    results = run(args)
    targets = report(results)
    results["targets"] = [
        {"target": t[0], "value": t[1], "want": t[2], "pass": t[3]} for t in targets
    ]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
