"""Many small files in one upload request, against its baselines, in one run.

    .venv/bin/python bench/small_files.py [--counts 1000,100] [--size 1024] [--repeat 5]
    .venv/bin/python bench/small_files.py --src /path/to/older/checkout/src   # before/after

Measures on this machine, with a real ``jcs serve`` on loopback (SQLite, the
default single local user space, default redundancy ``none``):

- one ``POST /v1/object/upload`` carrying N files of ``--size`` bytes (fresh
  paths every round), end to end: seconds, files/s;
- the same multipart body posted to a bare ASGI app on the same server
  stack that only reads it (the framework's ceiling);
- the same N files written to a directory by a plain Python loop, each
  with temp file + write + fsync + rename and one directory fsync at the
  end (what a durable write of each file costs), and the same loop with one
  ``syncfs`` at the end instead of the fsyncs;
- N requests of one file each over one keep-alive connection (per-request
  cost, so a batch speed-up is not bought with a single-file slow-down);
- an upload over the server's file cap (``--over-cap``, default 10,000 files
  of 1 byte): how fast the 400 comes back.

Every timed upload is checked: N objects answered, and a sample of them read
back byte for byte. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from rawhttp import Conn
from v1_api import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "jcsbenchboundary"


def form_body(package_id: int, files: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="info"\r\n\r\n'
        f"{json.dumps({'packageID': package_id})}\r\n".encode()
    )
    for name, data in files:
        out += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def plain_writes(root: Path, files: list[bytes], fsync_each: bool) -> float:
    """N files into 256 directories (like block keys): temp + write (+ fsync)
    + rename; then the directories fsynced, or one syncfs."""
    for i in range(256):
        (root / f"{i:02x}").mkdir(parents=True, exist_ok=True)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    t0 = time.perf_counter()
    dirs = set()
    for data in files:
        name = secrets.token_hex(16)
        d = root / name[:2]
        tmp = d / f".tmp-{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            if fsync_each:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, d / name)
        dirs.add(d)
    if fsync_each:
        for d in dirs:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)
    else:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        libc.syncfs(fd)
        os.close(fd)
    return time.perf_counter() - t0


async def post(port: int, body: bytes, key: str | None = None) -> tuple[float, int, bytes]:
    conn = Conn("127.0.0.1", port)
    headers = dict(HEADERS)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        t0 = time.perf_counter()
        r = await conn.request(
            "POST", "/v1/object/upload" if key else "/", headers, body, keep_body=True
        )
        return time.perf_counter() - t0, r.status, r.body
    finally:
        conn.close()


def start_server(args: argparse.Namespace, data: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, JCS_GC_INTERVAL_SECONDS="3600")
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    cmd = [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'jcs'; from jointcloud.cli.main import app; app()",
        "serve",
        "--s3-listen",
        "off",
        "--data-dir",
        str(data),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="jcs-bench-small-", dir=args.tmp))
    counts = [int(c) for c in args.counts.split(",")]
    res: dict[str, Any] = {"size": args.size, "counts": counts}
    rnd = random.Random(1)
    try:
        # --- plain writes ---
        for n in counts:
            files = [os.urandom(args.size) for _ in range(n)]
            for label, each in (("fsync", True), ("syncfs", False)):
                times = []
                for r in range(args.repeat):
                    d = work / f"plain-{label}-{n}-{r}"
                    times.append(plain_writes(d, files, each))
                    shutil.rmtree(d)
                res[f"plain_{label}_{n}"] = statistics.median(times)

        # --- bare ASGI ceiling ---
        bport = free_port()
        bare = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "bare_asgi.py"), str(bport)]
        )
        try:
            wait_ready(f"http://127.0.0.1:{bport}/?n=0", bare)
            for n in counts:
                body = form_body(1, [(f"f{i:05d}", os.urandom(args.size)) for i in range(n)])
                times = []
                for _ in range(args.repeat):
                    dt, status, _ = await post(bport, body)
                    assert status == 200
                    times.append(dt)
                res[f"bare_{n}"] = statistics.median(times)
        finally:
            bare.send_signal(signal.SIGTERM)
            bare.wait()

        # --- the service ---
        port = free_port()
        data = work / "data"
        server = start_server(args, data, port)
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", server)
            key = (data / "root.key").read_text().strip()
            api = httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=600,
            )
            bucket = api.post("/v1/bucket/create", json={"name": "bench"}).json()["data"]["bucket"][
                "bucketID"
            ]
            pkg = api.post("/v1/package/create", json={"bucketID": bucket, "name": "small"}).json()[
                "data"
            ]["package"]["packageID"]
            for n in counts:
                times = []
                for r in range(args.repeat):
                    files = [(f"n{n}/r{r}/f{i:05d}", os.urandom(args.size)) for i in range(n)]
                    dt, status, rbody = await post(port, form_body(pkg, files), key)
                    assert status == 200, rbody[:300]
                    up = json.loads(rbody)["data"]["uploadeds"]
                    assert len(up) == n, len(up)
                    for i in rnd.sample(range(n), min(5, n)):
                        got = api.get("/v1/object/download", params={"objectID": up[i]["objectID"]})
                        assert got.status_code == 200 and got.content == files[i][1], i
                    times.append(dt)
                res[f"ours_{n}"] = statistics.median(times)
                print(f"{n} files: ours {[round(t, 3) for t in times]}", flush=True)

            # one file per request, keep-alive
            conn = Conn("127.0.0.1", port)
            hdrs = dict(HEADERS, Authorization=f"Bearer {key}")
            singles = args.singles
            t0 = time.perf_counter()
            for i in range(singles):
                r1 = await conn.request(
                    "POST",
                    "/v1/object/upload",
                    hdrs,
                    form_body(pkg, [(f"single/f{i:05d}", os.urandom(args.size))]),
                    keep_body=True,
                )
                assert r1.status == 200, r1.body[:300]
            res["single_per_s"] = singles / (time.perf_counter() - t0)
            conn.close()

            if args.over_cap:
                body = form_body(pkg, [(f"over/f{i:06d}", b"x") for i in range(args.over_cap)])
                before = len(
                    api.get("/v1/object/getPackageObjects", params={"packageID": pkg}).json()[
                        "data"
                    ]["objects"]
                )
                dt, status, rbody = await post(port, body, key)
                after = len(
                    api.get("/v1/object/getPackageObjects", params={"packageID": pkg}).json()[
                        "data"
                    ]["objects"]
                )
                res["over_cap"] = (
                    args.over_cap,
                    dt,
                    status,
                    json.loads(rbody).get("message", ""),
                    after - before,
                )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res


def report(r: dict[str, Any]) -> None:
    size = r["size"]
    print()
    print(
        f"{'one request of N x ' + str(size) + ' B':<44}{'N':>6}{'s':>9}{'files/s':>10}{'ours/this':>11}"
    )
    for n in r["counts"]:
        ours = r[f"ours_{n}"]
        rows = [
            ("jcs serve upload (ours)", ours),
            ("bare ASGI, same body (ceiling)", r[f"bare_{n}"]),
            ("plain files: temp+fsync+rename each", r[f"plain_fsync_{n}"]),
            ("plain files: temp+rename, one syncfs", r[f"plain_syncfs_{n}"]),
        ]
        for label, t in rows:
            print(f"{label:<44}{n:>6}{t:>9.3f}{n / t:>10.0f}{ours / t:>11.2f}")
    print(f"one file per request (keep-alive, sequential): {r['single_per_s']:.0f} uploads/s")
    if "over_cap" in r:
        n, dt, status, msg, stored = r["over_cap"]
        print(
            f"{n} files over the cap: HTTP {status} in {dt:.3f} s, {stored} objects stored: {msg}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1000,100", help="files per request, comma separated")
    ap.add_argument("--size", type=int, default=1024, help="bytes per file")
    ap.add_argument("--repeat", type=int, default=5, help="rounds per figure (median shown)")
    ap.add_argument("--singles", type=int, default=100, help="one-file requests")
    ap.add_argument(
        "--over-cap", type=int, default=10_000, help="files in the over-cap request; 0: skip"
    )
    ap.add_argument(
        "--src", default=None, help="run the server from this source tree (before/after)"
    )
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    results = asyncio.run(run(args))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
