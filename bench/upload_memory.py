"""Memory a ``jcs serve`` holds per upload in flight, by upload shape.

    .venv/bin/python bench/upload_memory.py [--shape chunked|unsigned|gateway ...]
        [--uploads N] [--mib SIZE] [--chunk-mib C] [--rounds R] [--json FILE]

Per shape and round, a new ``jcs serve`` (fresh data dir, SQLite, default
spaces; no heap left by another run) with its main listener and
``--s3-listen`` on loopback; credentials made as the seed's flow makes them
(``gateway_share.setup``). Each shape is first run once tiny (its code paths and pools loaded, boto3 imported for the facade),
then the idle RSS is sampled, then ``--uploads`` uploads of ``--mib`` MiB
run at once (one thread each, released together) while the server's RSS
(its process tree) is sampled every 10 ms. Printed per shape: idle RSS,
peak RSS, (peak - idle) / uploads, the RSS left after, the aggregate MB/s
and the server's CPU seconds per GB uploaded (steadier than MB/s when
other work shares the machine). Shapes:

- ``chunked``: S3 PutObject with ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
  (aws-chunked, every chunk signed), ``--chunk-mib`` MiB chunks (16: what
  some SDKs and tools send; the decoder's largest chunk);
- ``unsigned``: S3 PutObject with ``UNSIGNED-PAYLOAD`` and a plain body
  (the reference: the store's own pipeline);
- ``gateway``: ``POST /uploadObject`` with a multipart form (the facade
  forwards it to the S3 endpoint of the same server with boto3).

The client sends the same random ``--chunk-mib`` buffer over and over (its
SHA-256 computed once), so it costs little CPU beside the server.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gateway_share as gw  # bench/gateway_share.py: the seed's credential flow
import httpx
import psutil

MiB = 1 << 20
MB = 1e6
REGION = "us-east-1"
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
JCS = Path(sys.executable).with_name("jcs")

# Runs ``jcs serve`` under tracemalloc. Once armed (SIGUSR1, sent before
# the measured uploads), a thread keeps a snapshot of the highest traced
# peak; at exit the largest allocation sites of it go to argv[1] (slow: for
# finding where memory goes, not for the figures).
TRACED = """
import atexit, signal, sys, threading, time, tracemalloc
out = sys.argv.pop(1)
tracemalloc.start(12)
best = [0, None]
armed = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: armed.set())
def _watch():
    armed.wait()
    while True:
        now = tracemalloc.get_traced_memory()[0]
        if now > best[0] + (1 << 20):
            best[:] = [now, tracemalloc.take_snapshot()]
        time.sleep(0.005)
threading.Thread(target=_watch, daemon=True).start()
def _dump():
    if best[1] is None:
        return
    with open(out, "w") as f:
        f.write(f"peak traced {best[0] / 2**20:.1f} MiB\\n")
        for stat in best[1].statistics("traceback")[:25]:
            f.write(f"{stat.size / 2**20:8.1f} MiB {stat.count:6d} blocks\\n")
            for line in stat.traceback.format()[-12:]:
                f.write(f"    {line}\\n")
atexit.register(_dump)
from jointcloud.cli.main import app
sys.argv[0] = "jcs"
app()
"""


class Server(gw.Server):
    """``jcs serve`` on free loopback ports over a fresh data dir (stopped by
    PID), traced if asked; memory and CPU count its worker processes too."""

    def __init__(self, work: Path, trace: str | None = None) -> None:
        launcher = [sys.executable, "-c", TRACED, trace] if trace else [str(JCS)]
        super().__init__(work, None, launcher=launcher)

    def rss(self) -> int:
        total = 0
        for p in [self.ps, *self.ps.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def cpu(self) -> float:
        total = 0.0
        for p in [self.ps, *self.ps.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total


class Sampler:
    """The server's peak RSS, sampled every 10 ms in a thread."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss())
            self._stop.wait(0.01)

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


# -- S3: SigV4 by hand (the chunk signatures need the seed) ------------------------


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class Signer:
    def __init__(self, access_key_id: str, secret_key: str, host: str) -> None:
        self.ak, self.host = access_key_id, host
        self.amz_date = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.scope = f"{self.amz_date[:8]}/{REGION}/s3/aws4_request"
        key = ("AWS4" + secret_key).encode()
        for part in (self.amz_date[:8], REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self.key = key

    def headers(self, path: str, extra: dict[str, str]) -> dict[str, str]:
        """Signed headers of a PUT of ``path`` (``extra`` signed too)."""
        headers = {"host": self.host, "x-amz-date": self.amz_date, **extra}
        names = sorted(headers)
        canonical = "\n".join(
            [
                "PUT",
                path,
                "",
                *(f"{n}:{headers[n].strip()}" for n in names),
                "",
                ";".join(names),
                headers["x-amz-content-sha256"],
            ]
        )
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                self.amz_date,
                self.scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        signature = hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.ak}/{self.scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return headers

    def chunk_signature(self, previous: str, data_sha256: str) -> str:
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.amz_date,
                self.scope,
                previous,
                EMPTY_SHA256,
                data_sha256,
            ]
        )
        return hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()


def chunked_put(
    s3: tuple[str, str, str], bucket: str, key: str, size: int, chunk: bytes
) -> Callable[[], None]:
    """A PUT of ``size`` bytes (``chunk`` repeated) as signed aws-chunked."""
    endpoint, ak, sk = s3
    host = endpoint.split("://", 1)[1]
    path = f"/{bucket}/{key}"
    signer = Signer(ak, sk, host)
    sizes = [min(len(chunk), size - at) for at in range(0, size, len(chunk))] + [0]
    digest = hashlib.sha256(chunk).hexdigest()
    length = sum(len(f"{n:x};chunk-signature=") + 64 + 2 + n + (2 if n else 0) for n in sizes) + 2
    headers = signer.headers(
        path,
        {
            "x-amz-content-sha256": STREAMING,
            "x-amz-decoded-content-length": str(size),
            "content-encoding": "aws-chunked",
            "content-length": str(length),
        },
    )

    def body() -> Iterator[bytes]:
        previous = headers["authorization"].rsplit("Signature=", 1)[1]
        for n in sizes:
            data = chunk if n == len(chunk) else chunk[:n]
            sha = digest if n == len(chunk) else hashlib.sha256(data).hexdigest()
            previous = signer.chunk_signature(previous, sha)
            yield f"{n:x};chunk-signature={previous}\r\n".encode()
            if n:
                yield data
                yield b"\r\n"
        yield b"\r\n"

    return lambda: _send(host, path, headers, body())


def unsigned_put(
    s3: tuple[str, str, str], bucket: str, key: str, size: int, chunk: bytes
) -> Callable[[], None]:
    endpoint, ak, sk = s3
    host = endpoint.split("://", 1)[1]
    path = f"/{bucket}/{key}"
    headers = Signer(ak, sk, host).headers(
        path, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "content-length": str(size)}
    )

    def body() -> Iterator[bytes]:
        for at in range(0, size, len(chunk)):
            yield chunk[: size - at] if size - at < len(chunk) else chunk

    return lambda: _send(host, path, headers, body())


def _send(host: str, path: str, headers: dict[str, str], body: Iterator[bytes]) -> None:
    conn = http.client.HTTPConnection(host, timeout=600)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for piece in body:
            conn.send(piece)
        r = conn.getresponse()
        answer = r.read()
        if r.status != 200:
            raise RuntimeError(f"PUT {path}: {r.status} {answer[:300]!r}")
    finally:
        conn.close()


def gateway_put(
    server: Server, made: dict[str, Any], key: str, size: int, chunk: bytes
) -> Callable[[], None]:
    boundary = gw.BOUNDARY
    pre = (
        "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in (("bucket", gw.BUCKET), ("key", key))
        )
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    post = f"\r\n--{boundary}--\r\n".encode()
    headers = {
        "Host": f"127.0.0.1:{server.port}",
        "AccessKeyId": made["access_key_id"],
        "SecretKey": made["secret_key"],
        "Endpoint": made["endpoint"],
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(pre) + size + len(post)),
    }

    def body() -> Iterator[bytes]:
        yield pre
        for at in range(0, size, len(chunk)):
            yield chunk[: size - at] if size - at < len(chunk) else chunk
        yield post

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        try:
            conn.putrequest("POST", "/uploadObject", skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders()
            for piece in body():
                conn.send(piece)
            r = conn.getresponse()
            answer = json.loads(r.read())
            if r.status != 200 or answer.get("code") != 0:
                raise RuntimeError(f"/uploadObject {key}: {r.status} {answer}")
        finally:
            conn.close()

    return run


def run_at_once(jobs: list[Callable[[], None]]) -> float:
    """Run ``jobs`` in one thread each, released together; the wall time."""
    start = threading.Barrier(len(jobs) + 1)
    errors: list[BaseException] = []

    def one(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    if errors:
        raise errors[0]
    return wall


def settle(server: Server) -> int:
    """The server's RSS once it stopped moving (at most ~3 s)."""
    last = server.rss()
    for _ in range(30):
        time.sleep(0.1)
        now = server.rss()
        if abs(now - last) < MiB // 4:
            return now
        last = now
    return last


def measure_shape(args: argparse.Namespace, shape: str, chunk: bytes) -> dict[str, Any]:
    """One shape on a server of its own (no heap left by another shape)."""
    work = Path(tempfile.mkdtemp(prefix="jcs-upmem-", dir=args.tmp))
    size = args.mib * MiB
    trace = f"{args.trace}.{shape}" if args.trace else None
    server = Server(work, trace)
    try:
        made = gw.setup(server)  # type: ignore[arg-type]
        s3 = (made["endpoint"], made["access_key_id"], made["secret_key"])
        fresh = server.rss()
        with httpx.Client(timeout=60) as http:
            gw.ok(
                http.post(
                    f"{server.endpoint}/createBucket",
                    data={"bucket": gw.BUCKET},
                    headers={
                        "AccessKeyId": made["access_key_id"],
                        "SecretKey": made["secret_key"],
                        "Endpoint": made["endpoint"],
                    },
                )
            )

        def make(key: str, n: int, piece: bytes) -> Callable[[], None]:
            if shape == "chunked":
                return chunked_put(s3, gw.BUCKET, key, n, piece)
            if shape == "unsigned":
                return unsigned_put(s3, gw.BUCKET, key, n, piece)
            return gateway_put(server, made, key, n, piece)

        # Warm: the shape's code paths, pools and imports (tiny: no big heap kept).
        tiny = chunk[: 64 * 1024]
        make("warm", 3 * len(tiny) + 5, tiny)()
        idle = settle(server)
        if trace:
            server.proc.send_signal(signal.SIGUSR1)
        jobs = [make(f"{shape}/{i}", size, chunk) for i in range(args.uploads)]
        cpu = server.cpu()
        with Sampler(server) as sampler:
            wall = run_at_once(jobs)
        cpu = server.cpu() - cpu
        after = settle(server)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "fresh_mib": fresh / MiB,
        "idle_mib": idle / MiB,
        "peak_mib": sampler.peak / MiB,
        "per_upload_mib": (sampler.peak - idle) / args.uploads / MiB,
        "after_mib": after / MiB,
        "mb_s": args.uploads * size / wall / MB,
        "wall_s": wall,
        # Less sensitive than MB/s to other load on the machine.
        "server_cpu_s_per_gb": cpu / (args.uploads * size / 1e9),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    chunk = os.urandom(args.chunk_mib * MiB)
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "load": gw.load(),
        "uploads": args.uploads,
        "mib": args.mib,
        "chunk_mib": args.chunk_mib,
        "shapes": {},
    }
    for shape in args.shape:
        for rnd in range(args.rounds):
            row = measure_shape(args, shape, chunk)
            results["shapes"].setdefault(shape, []).append(row)
            print(
                f"{shape:9s} {args.uploads} x {args.mib} MiB (round {rnd + 1}): "
                f"idle {row['idle_mib']:.0f} MiB (fresh {row['fresh_mib']:.0f}), "
                f"peak {row['peak_mib']:.0f} MiB, per upload {row['per_upload_mib']:.1f} MiB, "
                f"after {row['after_mib']:.0f} MiB; {row['mb_s']:.0f} MB/s "
                f"({row['wall_s']:.1f} s), server {row['server_cpu_s_per_gb']:.1f} CPU s/GB",
                flush=True,
            )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--shape",
        action="append",
        choices=("chunked", "unsigned", "gateway"),
        help="upload shape (repeat for several; default: chunked and gateway)",
    )
    ap.add_argument("--uploads", type=int, default=8, help="uploads at once (8)")
    ap.add_argument("--mib", type=int, default=128, help="MiB per upload (128)")
    ap.add_argument("--chunk-mib", type=int, default=16, help="aws-chunked chunk MiB (16)")
    ap.add_argument("--rounds", type=int, default=1, help="runs per shape, each on a new server")
    ap.add_argument("--tmp", default=None, help="directory for the server's data")
    ap.add_argument(
        "--trace",
        default=None,
        help="run the server under tracemalloc; its top sites at the peak go to FILE.<shape>",
    )
    ap.add_argument("--json", default=None, help="write the figures to FILE")
    args = ap.parse_args()
    args.shape = args.shape or ["chunked", "gateway"]
    print(f"load: {gw.load()}", flush=True)
    results = measure(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
