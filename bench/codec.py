"""Data-plane throughput: ErasureCodec vs raw pyeclib, and the streaming write/read
paths into in-memory sinks. Run: ``.venv/bin/python bench/codec.py [--no-tune]``.

``--no-tune`` leaves glibc malloc at its defaults (to see what ``tune_malloc_env``
buys); by default the process applies the same tuning the server does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable

from pyeclib.ec_iface import ECDriver

from jointcloud.redundancy.cipher import new_data_key
from jointcloud.redundancy.erasure import EC_TYPE, ErasureCodec, apply_malloc_tuning
from jointcloud.redundancy.policy import EcPolicy, NonePolicy, Redundancy, RepPolicy
from jointcloud.redundancy.stream import BlockRef, Layout, read_range, write_blocks
from jointcloud.spaces.base import Capabilities, Entry

MB = 1e6


class SinkWriter:
    def __init__(self, space: SinkSpace, key: str) -> None:
        self.space, self.key, self.parts = space, key, list[bytes]()

    async def write(self, data: bytes) -> None:
        self.parts.append(data)

    async def commit(self) -> None:
        self.space.objects[self.key] = b"".join(self.parts)
        self.parts = []

    async def abort(self) -> None:
        self.parts = []


class SinkSpace:
    """Just enough of the Space protocol to measure the data plane alone."""

    capabilities = Capabilities()

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    async def open_writer(self, key: str) -> SinkWriter:
        return SinkWriter(self, key)

    async def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.objects[key]
        return data[offset : len(data) if length is None else offset + length]

    async def stat(self, key: str) -> Entry:
        return Entry(key, len(self.objects[key]), 0.0)

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)


def rate(nbytes: int, fn: Callable[[], object], repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, time.perf_counter() - t)
    return nbytes * repeat / best / MB


def bench_codec(k: int, n: int, seg_len: int) -> None:
    seg = os.urandom(seg_len)
    codec = ErasureCodec(k, n)
    raw = ECDriver(k=k, m=n - k, ec_type=EC_TYPE)
    frags = codec.encode(seg)
    with_parity = {i: frags[i] for i in range(n - k, n)}
    raw_parity = [frags[i] for i in range(n - k, n)]
    reps = max(4, (64 << 20) // seg_len)
    enc = rate(seg_len, lambda: codec.encode(seg), reps)
    enc_raw = rate(seg_len, lambda: raw.encode(seg), reps)
    dec = rate(seg_len, lambda: codec.decode(with_parity), reps)
    dec_raw = rate(seg_len, lambda: raw.decode(raw_parity), reps)
    ext = rate(seg_len, lambda: codec.extract(dict(enumerate(frags)), seg_len, 0, seg_len), reps)
    print(
        f"ec({k},{n}) seg {seg_len >> 20} MiB: encode {enc:6.0f} MB/s (pyeclib {enc_raw:6.0f}, "
        f"ratio {enc / enc_raw:.2f}); decode w/ parity {dec:6.0f} (pyeclib {dec_raw:6.0f}, "
        f"ratio {dec / dec_raw:.2f}); systematic extract {ext:6.0f}"
    )


async def stream_once(policy: Redundancy, pieces: list[bytes]) -> dict[str, float]:
    """One write + full read: wall MB/s and MB per CPU-second (all threads). The CPU
    figure is what the path costs even when other jobs share the machine."""
    size = sum(map(len, pieces))

    async def source() -> AsyncIterator[bytes]:
        for p in pieces:
            yield p

    spaces = [SinkSpace() for _ in range(policy.width)]
    blocks = [BlockRef(i, s, f"b/{i}", i) for i, s in enumerate(spaces)]  # type: ignore[arg-type]
    key = new_data_key()
    t, c = time.perf_counter(), time.process_time()
    result = await write_blocks(source(), policy, blocks, key)
    w_wall, w_cpu = time.perf_counter() - t, time.process_time() - c
    layout = Layout(policy, result.size, result.segment_size, result.chunk_len, key)
    t, c = time.perf_counter(), time.process_time()
    got = 0
    async for piece in read_range(layout, blocks, 0, None):
        got += len(piece)
    r_wall, r_cpu = time.perf_counter() - t, time.process_time() - c
    assert got == size
    return {
        "write": size / w_wall / MB,
        "write/cpu": size / w_cpu / MB,
        "read": size / r_wall / MB,
        "read/cpu": size / r_cpu / MB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-tune", action="store_true", help="keep glibc malloc defaults")
    parser.add_argument("--mib", type=int, default=64, help="object size for the stream test")
    parser.add_argument("--uvloop", action="store_true", help="run the stream test on uvloop")
    args = parser.parse_args()
    if not args.no_tune:
        print("malloc tuning applied:", apply_malloc_tuning())
    print(f"cpus: {os.cpu_count()}")
    bench_codec(4, 6, 4 << 20)
    bench_codec(4, 6, 1 << 20)
    data = os.urandom(args.mib << 20)
    runner = asyncio.run
    if args.uvloop:
        import uvloop

        runner = uvloop.run
    pieces = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    policies = {"none": NonePolicy(), "rep(3)": RepPolicy(3), "ec(4,6)": EcPolicy(4, 6)}
    figures: dict[str, dict[str, float]] = {name: {} for name in policies}
    # Rounds interleave the policies so a burst of outside load skews them alike;
    # each figure is the best of the rounds.
    for _ in range(3):
        for name, policy in policies.items():
            run = runner(stream_once(policy, pieces))
            for key, value in run.items():
                figures[name][key] = max(figures[name].get(key, 0.0), value)
    for name, f in figures.items():
        print(
            f"{name:8s} {args.mib} MiB: write_blocks {f['write']:5.0f} MB/s "
            f"({f['write/cpu']:5.0f} MB per CPU-s)   read_range {f['read']:5.0f} MB/s "
            f"({f['read/cpu']:5.0f} MB per CPU-s)"
        )
    base = figures["none"]
    for name, f in figures.items():
        print(
            f"write {name:8s}/ none: wall {f['write'] / base['write']:.2f}, "
            f"cpu {f['write/cpu'] / base['write/cpu']:.2f}"
        )


if __name__ == "__main__":
    main()
