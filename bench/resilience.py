"""Resilience figures, in one run:

    .venv/bin/python bench/resilience.py [--mib 256] [--objects 2]

- read throughput of ec(4,6) objects, healthy vs. with two spaces down
  (the two holding data fragments 0 and 1, so every segment needs decoding);
- repair throughput (stored MB rebuilt per second by `jcs admin repair`)
  vs. plain upload throughput on the same spaces;
- the codec path vs. pyeclib on the same buffers (bench/codec.py).

Everything runs against a real `jcs serve` over local-directory spaces; the
server's own job runner is parked (huge intervals) so the timed repair is the
one we start.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from rawhttp import Conn
from v1_api import free_port, upload_file, wait_ready

ROOT = Path(__file__).resolve().parent.parent
JCS = str(ROOT / ".venv/bin/jcs")
MiB = 1 << 20
PARKED = {
    f"JCS_{name}_INTERVAL_SECONDS": "1000000"
    for name in ("GC", "HEALTH", "REPAIR", "SCRUB", "DRAIN", "RECODE")
}


async def download(port: int, key: str, object_id: int, keep: bool = False) -> tuple[float, bytes]:
    conn = Conn("127.0.0.1", port)
    try:
        t0 = time.perf_counter()
        r = await conn.request(
            "GET",
            f"/v1/object/download?objectID={object_id}",
            headers={"Authorization": f"Bearer {key}"},
            keep_body=keep,
        )
        dt = time.perf_counter() - t0
    finally:
        conn.close()
    if r.status != 200:
        raise RuntimeError(f"download failed: {r.status}")
    return dt, r.body


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def admin(data: Path, *args: str) -> str:
    env = {**os.environ, **PARKED}
    proc = subprocess.run(
        [JCS, "admin", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(proc.stderr)
    return proc.stdout.strip()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="jcs-resil-", dir=args.tmp))
    res: dict[str, Any] = {}
    src = work / "obj.bin"
    with src.open("wb") as f:
        block = os.urandom(8 * MiB)
        for _ in range(args.mib // 8):
            f.write(block)
    size = src.stat().st_size
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    port, data = free_port(), work / "data"
    # Its spaces live in the work dir: allowed explicitly, for the server and
    # the admin commands alike, as an operator would (docs/security.md).
    os.environ["JCS_LOCAL_ROOTS"] = str(work)
    server = subprocess.Popen(
        [
            JCS,
            "serve",
            "--s3-listen",
            "off",
            "--data-dir",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env={**os.environ, **PARKED},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", server)
        key = (data / "root.key").read_text().strip()
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        )
        spaces: dict[int, Path] = {}

        def add_space(name: str) -> None:
            d = work / name
            d.mkdir()
            r = api.post(
                "/v1/userSpace/create",
                json={"name": name, "storage": {"type": "Local", "path": str(d)}},
            )
            r.raise_for_status()
            spaces[r.json()["data"]["userSpace"]["userSpaceID"]] = d

        for i in range(5):  # with the bootstrap space: six spaces for ec(4,6)
            add_space(f"s{i}")
        for sp in api.get("/v1/userSpace/list").json()["data"]["userSpaces"]:
            spaces[sp["userSpaceID"]] = Path(sp["storage"]["path"])
        bucket = api.post("/v1/bucket/create", json={"name": "b"}).json()["data"]["bucket"][
            "bucketID"
        ]
        policy = {"type": "ec", "k": 4, "n": 6, "chunkSize": MiB}
        pkg = api.post(
            "/v1/package/create", json={"bucketID": bucket, "name": "p", "redundancy": policy}
        ).json()["data"]["package"]["packageID"]
        ids = []
        t0 = time.perf_counter()
        for i in range(args.objects):
            ids.append((await upload_file(port, key, pkg, src, f"o{i}.bin"))["objectID"])
        res["upload_MBps"] = args.objects * size / 1e6 / (time.perf_counter() - t0)

        healthy = [(await download(port, key, i))[0] for i in ids]
        res["read_healthy_MBps"] = args.objects * size / 1e6 / sum(healthy)

        # Take down the spaces holding data fragments 0 and 1 of the objects.
        down = sorted(
            {d for d in spaces.values() for p in d.rglob("*.0")}
            | {d for d in spaces.values() for p in d.rglob("*.1")}
        )
        assert len(down) == 2, down
        for d in down:
            d.rename(d.with_name(d.name + ".gone"))
        degraded = [(await download(port, key, i))[0] for i in ids]
        res["read_degraded_MBps"] = args.objects * size / 1e6 / sum(degraded)
        _, body = await download(port, key, ids[0], keep=True)
        res["degraded_read_correct"] = hashlib.sha256(body).hexdigest() == want
        del body

        # Replace the two lost spaces and rebuild onto the new ones.
        for i in range(2):
            add_space(f"new{i}")
        res["health"] = admin(data, "health", "--once")
        t0 = time.perf_counter()
        res["repair"] = admin(data, "repair", "--once", "--until-done")
        dt = time.perf_counter() - t0
        rebuilt = sum(tree_bytes(work / f"new{i}") for i in range(2))
        res["repair_stored_MB"] = rebuilt / 1e6
        res["repair_MBps"] = rebuilt / 1e6 / dt
        res["upload_stored_MBps"] = res["upload_MBps"] * policy["n"] / policy["k"]
        res["fsck"] = admin(data, "fsck").splitlines()[-1]
        _, body = await download(port, key, ids[-1], keep=True)
        res["after_repair_correct"] = hashlib.sha256(body).hexdigest() == want
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--objects", type=int, default=2)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    r = asyncio.run(run(args))
    print(f"ec(4,6), {args.objects} x {args.mib} MiB over local spaces")
    print(f"  upload                      {r['upload_MBps']:8.0f} MB/s (object bytes)")
    print(f"  read, healthy               {r['read_healthy_MBps']:8.0f} MB/s")
    ratio = r["read_degraded_MBps"] / r["read_healthy_MBps"]
    print(
        f"  read, two spaces down       {r['read_degraded_MBps']:8.0f} MB/s  ratio {ratio:.2f}"
        f"  {'PASS' if ratio >= 0.6 else 'MISS'} (target >= 0.60); correct: {r['degraded_read_correct']}"
    )
    print(
        f"  repair                      {r['repair_MBps']:8.0f} MB/s stored bytes rebuilt "
        f"({r['repair_stored_MB']:.0f} MB) vs upload {r['upload_stored_MBps']:.0f} MB/s stored "
        f"-> ratio {r['repair_MBps'] / r['upload_stored_MBps']:.2f}"
    )
    print(f"  after repair: {r['fsck']}; data correct: {r['after_repair_correct']}")
    print("codec path vs pyeclib (bench/codec.py):")
    codec = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "codec.py")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print("  " + codec.stdout.strip().replace("\n", "\n  "))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
