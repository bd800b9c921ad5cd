"""Throughput and memory of the JCS v1 API against its baselines, in one run.

    .venv/bin/python bench/v1_api.py [--big-mib 1024] [--small-count 2000]

Measures, on this machine: upload/download of 200 x 1 MiB and one large
object through the v1 API with none, rep(2) and ec(4,6) over local spaces;
the same bytes through a bare ASGI app on the same server stack (ceiling);
plain file copies; 4 KiB objects per second with 16 concurrent clients; and
the server's peak RSS during the large upload. Prints ratios and targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from rawhttp import Conn, multipart_parts

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
POLICIES = {
    "none": {"type": "none"},
    "rep(2)": {"type": "rep", "repCount": 2},
    "ec(4,6)": {"type": "ec", "k": 4, "n": 6, "chunkSize": MiB},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(data: Path, port: int, database_url: str | None = None) -> list[str]:
    """``jcs serve`` on loopback with ``data`` as its data dir, no S3 listener."""
    cmd = [str(ROOT / ".venv/bin/jcs"), "serve", "--s3-listen", "off"]
    cmd += ["--data-dir", str(data), "--listen", f"127.0.0.1:{port}"]
    return cmd + (["--database-url", database_url] if database_url else [])


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not become ready")


def wait_listening(pid: int, port: int, processes: int) -> None:
    """Until ``processes`` processes of ``pid``'s tree listen on ``port``.
    ``jcs serve --workers N`` answers as soon as its first process does; a
    keep-alive connection opened before the others bind stays on the first
    one, and a phase would then measure one process, not N."""
    root = psutil.Process(pid)
    for _ in range(600):
        listening = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                conns = p.net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
                listening += 1
        if listening >= processes:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{processes} processes did not all listen on port {port}")


class PeakRss:
    """Samples a process's RSS every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


async def upload_file(
    port: int, key: str, package_id: int, path: Path, name: str
) -> dict[str, Any]:
    pre, post = multipart_parts(json.dumps({"packageID": package_id}), name)
    conn = Conn("127.0.0.1", port)
    try:
        with path.open("rb") as f:
            r = await conn.request(
                "POST",
                "/v1/object/upload",
                headers={
                    "Authorization": f"Bearer {key}",
                    "Content-Type": "multipart/form-data; boundary=jcsbenchboundary",
                },
                body=pre,
                body_file=(f.fileno(), 0, path.stat().st_size),
                tail=post,
                keep_body=True,
            )
    finally:
        conn.close()
    if r.status != 200:
        raise RuntimeError(f"upload failed: {r.status} {r.body[:300]!r}")
    return dict(json.loads(r.body)["data"]["uploadeds"][0])


async def many(n: int, workers: int, job: Any) -> float:
    """Run job(conn, i) for i in range(n) over `workers` keep-alive connections."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker(port_conn: Conn) -> None:
        try:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await job(port_conn, i)
        finally:
            port_conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(Conn("127.0.0.1", job.port)) for _ in range(workers)))
    return time.perf_counter() - t0


class Job:
    def __init__(self, port: int, fn: Any) -> None:
        self.port = port
        self.fn = fn

    async def __call__(self, conn: Conn, i: int) -> None:
        await self.fn(conn, i)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="jcs-bench-", dir=args.tmp))
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} cores"}
    big = work / "big.bin"
    small_dir = work / "small"
    small_dir.mkdir()
    print(f"preparing data in {work} ...", flush=True)
    with big.open("wb") as f:
        block = os.urandom(8 * MiB)
        whole, rest = divmod(args.big_mib, 8)
        for _ in range(whole):
            f.write(block)
        f.write(block[: rest * MiB])
    mib_files = []
    for i in range(200):
        p = small_dir / f"f{i:03d}.bin"
        p.write_bytes(os.urandom(MiB))
        mib_files.append(p)
    tiny = work / "tiny.bin"
    tiny.write_bytes(os.urandom(4096))
    big_size = big.stat().st_size

    # --- plain file copies (with fsync, as the store makes blocks durable) ---
    def copy(src: Path, dst: Path) -> None:
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    t0 = time.perf_counter()
    copy(big, work / "big.copy")
    results["copy_big_MBps"] = big_size / MiB / (time.perf_counter() - t0)
    (work / "big.copy").unlink()
    t0 = time.perf_counter()
    for p in mib_files:
        copy(p, work / "copy.tmp")
    results["copy_1MiB_MBps"] = 200 / (time.perf_counter() - t0)

    # --- bare ASGI ceiling ---
    bport = free_port()
    bare = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "bare_asgi.py"), str(bport)]
    )
    try:
        wait_ready(f"http://127.0.0.1:{bport}/?n=0", bare)
        pre, post = multipart_parts("{}", "big.bin")
        with big.open("rb") as f:
            conn = Conn("127.0.0.1", bport)
            c0, t0 = cpu_seconds(), time.perf_counter()
            await conn.request(
                "POST", "/", body=pre, body_file=(f.fileno(), 0, big_size), tail=post
            )
            dt = time.perf_counter() - t0
            results["bare_up_big_MBps"] = big_size / MiB / dt
            results["client_cpu_share_up"] = (cpu_seconds() - c0) / dt
            c0, t0 = cpu_seconds(), time.perf_counter()
            await conn.request("GET", f"/?n={big_size}")
            dt = time.perf_counter() - t0
            results["bare_down_big_MBps"] = big_size / MiB / dt
            results["client_cpu_share_down"] = (cpu_seconds() - c0) / dt
            conn.close()

        async def bare_up(conn: Conn, i: int) -> None:
            with mib_files[i].open("rb") as f:
                await conn.request("POST", "/", body=pre, body_file=(f.fileno(), 0, MiB), tail=post)

        async def bare_down(conn: Conn, i: int) -> None:
            await conn.request("GET", f"/?n={MiB}")

        results["bare_up_1MiB_MBps"] = 200 / await many(200, 4, Job(bport, bare_up))
        results["bare_down_1MiB_MBps"] = 200 / await many(200, 4, Job(bport, bare_down))

        async def bare_small(conn: Conn, i: int) -> None:
            with tiny.open("rb") as f:
                await conn.request(
                    "POST", "/", body=pre, body_file=(f.fileno(), 0, 4096), tail=post
                )

        results["bare_small_ops"] = args.small_count / await many(
            args.small_count, 16, Job(bport, bare_small)
        )
    finally:
        bare.send_signal(signal.SIGTERM)
        bare.wait()

    # --- the service ---
    port = free_port()
    data = work / "data"
    # The benchmark's spaces live in its work dir: allowed explicitly, as an
    # operator would with --local-root (docs/security.md).
    env = dict(os.environ, JCS_GC_INTERVAL_SECONDS="3600", JCS_LOCAL_ROOTS=str(work))
    server = subprocess.Popen(
        serve_command(data, port, args.database_url), env=env, stdout=subprocess.DEVNULL
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", server)
        key = (data / "root.key").read_text().strip()
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        )
        for i in range(6):
            d = work / f"space{i}"
            d.mkdir()
            r = api.post(
                "/v1/userSpace/create",
                json={"name": f"s{i}", "storage": {"type": "Local", "path": str(d)}},
            )
            r.raise_for_status()
        bucket_id = api.post("/v1/bucket/create", json={"name": "bench"}).json()["data"]["bucket"][
            "bucketID"
        ]
        for label, policy in POLICIES.items():
            pkg = api.post(
                "/v1/package/create",
                json={"bucketID": bucket_id, "name": label, "redundancy": policy},
            ).json()["data"]["package"]["packageID"]
            row: dict[str, Any] = {}
            with PeakRss(server.pid) as rss:
                t0 = time.perf_counter()
                up = await upload_file(port, key, pkg, big, "big.bin")
                row["up_big_MBps"] = big_size / MiB / (time.perf_counter() - t0)
            row["peak_rss_MB"] = rss.peak / 1e6
            conn = Conn("127.0.0.1", port)
            t0 = time.perf_counter()
            r = await conn.request(
                "GET",
                f"/v1/object/download?objectID={up['objectID']}",
                headers={"Authorization": f"Bearer {key}"},
            )
            row["down_big_MBps"] = big_size / MiB / (time.perf_counter() - t0)
            conn.close()
            assert r.status == 200 and r.size == big_size, (r.status, r.size)

            ids: list[int] = [0] * 200

            async def up1(conn: Conn, i: int, pkg: int = pkg, ids: list[int] = ids) -> None:
                pre, post = multipart_parts(json.dumps({"packageID": pkg}), f"m/{i:03d}")
                with mib_files[i].open("rb") as f:
                    r = await conn.request(
                        "POST",
                        "/v1/object/upload",
                        headers={
                            "Authorization": f"Bearer {key}",
                            "Content-Type": "multipart/form-data; boundary=jcsbenchboundary",
                        },
                        body=pre,
                        body_file=(f.fileno(), 0, MiB),
                        tail=post,
                        keep_body=True,
                    )
                assert r.status == 200, r.body[:200]
                ids[i] = json.loads(r.body)["data"]["uploadeds"][0]["objectID"]

            async def down1(conn: Conn, i: int, ids: list[int] = ids) -> None:
                r = await conn.request(
                    "GET",
                    f"/v1/object/download?objectID={ids[i]}",
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert r.status == 200 and r.size == MiB

            row["up_1MiB_MBps"] = 200 / await many(200, 4, Job(port, up1))
            row["down_1MiB_MBps"] = 200 / await many(200, 4, Job(port, down1))
            results[label] = row
            print(label, {k: round(v, 1) for k, v in row.items()}, flush=True)

        # --- 4 KiB objects, 16 concurrent clients (policy none) ---
        pkg = api.post("/v1/package/create", json={"bucketID": bucket_id, "name": "small"}).json()[
            "data"
        ]["package"]["packageID"]
        sids: list[int] = [0] * args.small_count

        async def small_up(conn: Conn, i: int) -> None:
            pre, post = multipart_parts(json.dumps({"packageID": pkg}), f"s/{i:05d}")
            with tiny.open("rb") as f:
                r = await conn.request(
                    "POST",
                    "/v1/object/upload",
                    headers={
                        "Authorization": f"Bearer {key}",
                        "Content-Type": "multipart/form-data; boundary=jcsbenchboundary",
                    },
                    body=pre,
                    body_file=(f.fileno(), 0, 4096),
                    tail=post,
                    keep_body=True,
                )
                assert r.status == 200, r.body[:200]
                sids[i] = json.loads(r.body)["data"]["uploadeds"][0]["objectID"]

        async def small_down(conn: Conn, i: int) -> None:
            r = await conn.request(
                "GET",
                f"/v1/object/download?objectID={sids[i]}",
                headers={"Authorization": f"Bearer {key}"},
            )
            assert r.status == 200 and r.size == 4096

        results["small_up_ops"] = args.small_count / await many(
            args.small_count, 16, Job(port, small_up)
        )
        results["small_down_ops"] = args.small_count / await many(
            args.small_count, 16, Job(port, small_down)
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    return results


def report(r: dict[str, Any], big_mib: int) -> None:
    print()
    print(f"{'path':<28}{'MB/s':>10}{'vs ceiling':>12}")
    for size, up, down in (
        ("big", "up_big_MBps", "down_big_MBps"),
        ("1MiB", "up_1MiB_MBps", "down_1MiB_MBps"),
    ):
        label = f"{big_mib} MiB" if size == "big" else "200 x 1 MiB"
        print(f"-- {label}")
        print(f"{'bare ASGI upload':<28}{r[f'bare_up_{size}_MBps']:>10.0f}{'1.00':>12}")
        print(f"{'bare ASGI download':<28}{r[f'bare_down_{size}_MBps']:>10.0f}{'1.00':>12}")
        print(f"{'plain file copy':<28}{r[f'copy_{size}_MBps']:>10.0f}")
        for p in POLICIES:
            print(
                f"{p + ' upload':<28}{r[p][up]:>10.0f}{r[p][up] / r[f'bare_up_{size}_MBps']:>12.2f}"
            )
            print(
                f"{p + ' download':<28}{r[p][down]:>10.0f}{r[p][down] / r[f'bare_down_{size}_MBps']:>12.2f}"
            )
    print(
        f"-- 4 KiB objects, 16 clients: upload {r['small_up_ops']:.0f}/s, download "
        f"{r['small_down_ops']:.0f}/s (bare ASGI POST {r['bare_small_ops']:.0f}/s)"
    )
    print(
        f"-- client CPU share during bare transfers: up {r['client_cpu_share_up']:.2f}, "
        f"down {r['client_cpu_share_down']:.2f} cores"
    )
    targets = [
        ("none upload >= 50% of ceiling", r["none"]["up_big_MBps"] / r["bare_up_big_MBps"], 0.5),
        (
            "none download >= 50% of ceiling",
            r["none"]["down_big_MBps"] / r["bare_down_big_MBps"],
            0.5,
        ),
        (
            "ec(4,6) upload >= 70% of none",
            r["ec(4,6)"]["up_big_MBps"] / r["none"]["up_big_MBps"],
            0.7,
        ),
    ]
    print("\ntargets:")
    for name, value, want in targets:
        print(f"  {name:<36} {value:6.2f}  {'PASS' if value >= want else 'MISS'}")
    peak = max(r[p]["peak_rss_MB"] for p in POLICIES)
    label = f"peak server RSS ({big_mib} MiB upload) < 250 MB"
    print(f"  {label:<36} {peak:6.0f}  {'PASS' if peak < 250 else 'MISS'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mib", type=int, default=1024, help="size of the large object (≥ 1)")
    ap.add_argument("--small-count", type=int, default=2000)
    ap.add_argument("--tmp", default=None)
    ap.add_argument(
        "--database-url", default=None, help="metadata DB (default: SQLite in the data dir)"
    )
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    if args.big_mib < 1:
        ap.error("--big-mib must be at least 1")
    results = asyncio.run(run(args))
    report(results, args.big_mib)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
