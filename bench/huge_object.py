"""A 5 GiB+ object through the S3 endpoint (issue 12, item 5), for real.

boto3, with its current defaults (CRC32 on every part), uploads an object
larger than a single PUT may be (5.25 GiB by default) with multipart, from
a stream: no file on either side. The server copies it with UploadPartCopy
(boto3's managed ``copy``), and both objects are read back and compared by
SHA-256 with what was sent. The server's peak RSS is sampled over each
phase, and the same phases run first with a small object (512 MiB: eight
parts, as many at once as for the large one) as the baseline of the same
run: memory flat in object size means ratios near 1.

    .venv/bin/python bench/huge_object.py            # 5.25 GiB (needs ~25 GB of disk)
    .venv/bin/python bench/huge_object.py --mib 1024

Why a benchmark and not a test: it writes some 20 GB and takes a minute or
two, more than the suite should spend on one case; the multipart and
UploadPartCopy paths themselves are tested in ``tests/s3``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import s3 as s3bench  # bench/s3.py: server start-up, RSS sampling

MiB = 1024 * 1024
PART = 64 * MiB


class Stream:
    """``size`` bytes of incompressible data, each MiB stamped with its
    offset (a misplaced part cannot compare equal), read once, hashed as
    read; not seekable, so boto3 reads it in order."""

    def __init__(self, size: int, seed: bytes) -> None:
        self.size = size
        self.pos = 0
        self.block = hashlib.shake_256(seed).digest(MiB)
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            mib, off = divmod(self.pos + len(out), MiB)
            piece = bytearray(self.block[off : off + min(MiB - off, n - len(out))])
            if off == 0 and len(piece) >= 8:
                piece[:8] = mib.to_bytes(8, "big")
            out += piece
        self.pos += n
        data = bytes(out)
        self.sha.update(data)
        return data


def _config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=8)


def _read_back(client: Any, key: str) -> tuple[str, int]:
    body = client.get_object(Bucket=s3bench.BUCKET, Key=key)["Body"]
    sha, n = hashlib.sha256(), 0
    for chunk in body.iter_chunks(4 * MiB):
        sha.update(chunk)
        n += len(chunk)
    return sha.hexdigest(), n


def run_size(server: s3bench.Server, size: int, tag: str) -> dict[str, Any]:
    client = s3bench._client(*server.creds)
    pid = server.proc.pid
    out: dict[str, Any] = {"size": size}

    def phase(name: str, fn: Any) -> Any:
        c0 = s3bench.tree_cpu(pid)
        t0 = time.monotonic()
        with s3bench.PeakRss(pid) as rss:
            result = fn()
        wall = time.monotonic() - t0
        out[name] = {
            "seconds": round(wall, 2),
            "MB/s": round(size / 1e6 / wall, 1),
            "server_cores": round((s3bench.tree_cpu(pid) - c0) / wall, 2),
            "peak_rss_MB": round(rss.peak / 1e6, 1),
        }
        print(f"   {tag:<6} {name:<8} {out[name]}", flush=True)
        return result

    stream = Stream(size, tag.encode())
    src, dst = f"{tag}/source", f"{tag}/copy"
    phase("upload", lambda: client.upload_fileobj(stream, s3bench.BUCKET, src, Config=_config()))
    sent = stream.sha.hexdigest()
    head = client.head_object(Bucket=s3bench.BUCKET, Key=src)
    parts = head["ETag"].strip('"').partition("-")[2]
    if head["ContentLength"] != size or not parts:
        raise RuntimeError(f"upload: {head['ContentLength']} bytes, ETag {head['ETag']}")
    out["parts"] = int(parts)
    phase(
        "copy",
        lambda: client.copy(
            {"Bucket": s3bench.BUCKET, "Key": src}, s3bench.BUCKET, dst, Config=_config()
        ),
    )
    for key, name in ((src, "get"), (dst, "get_copy")):
        digest, n = phase(name, lambda key=key: _read_back(client, key))
        if (digest, n) != (sent, size):
            raise RuntimeError(f"{key}: {n} bytes, SHA-256 {digest}, not {sent}")
    out["verified"] = True
    client.delete_objects(
        Bucket=s3bench.BUCKET, Delete={"Objects": [{"Key": src}, {"Key": dst}], "Quiet": True}
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mib", type=int, default=5376, help="the large object (default 5.25 GiB)")
    ap.add_argument(
        "--base-mib", type=int, default=512, help="the baseline (8 parts: the same concurrency)"
    )
    ap.add_argument("--tmp", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jcs-huge-", dir=args.tmp))
    server = s3bench.start_ours(work, None)
    try:
        s3bench._client(*server.creds).create_bucket(Bucket=s3bench.BUCKET)
        idle = s3bench.tree(server.proc.pid)[0].memory_info().rss / 1e6
        print(
            f"== jcs serve, idle RSS {idle:.1f} MB; free disk {shutil.disk_usage(work).free / 1e9:.0f} GB"
        )
        base = run_size(server, args.base_mib * MiB, "base")
        big = run_size(server, args.mib * MiB, "huge")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        f"{'phase':<10}{'base MB/s':>11}{'huge MB/s':>11}{'base RSS':>10}{'huge RSS':>10}{'RSS ratio':>11}"
    )
    for name in ("upload", "copy", "get", "get_copy"):
        b, h = base[name], big[name]
        ratio = h["peak_rss_MB"] / b["peak_rss_MB"]
        print(
            f"{name:<10}{b['MB/s']:>11}{h['MB/s']:>11}{b['peak_rss_MB']:>10}"
            f"{h['peak_rss_MB']:>10}{ratio:>11.2f}"
        )
    print(
        f"huge object: {args.mib} MiB in {big['parts']} parts, copied with UploadPartCopy, "
        f"both read back equal (SHA-256); idle RSS {idle:.1f} MB"
    )
    if os.environ.get("JCS_BENCH_JSON"):
        Path(os.environ["JCS_BENCH_JSON"]).write_text(repr({"base": base, "huge": big}))


if __name__ == "__main__":
    main()
