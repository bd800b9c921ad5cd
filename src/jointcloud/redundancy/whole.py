"""Small objects handled whole in memory: ``encode_whole`` computes in one go
what ``write_blocks`` would store, ``decode_whole`` reads an inline object
back, and ``put_blocks`` stores whole blocks (one ``put_many`` per space where
the space has it).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Collection, Sequence
from typing import Protocol, runtime_checkable

from jointcloud.errors import BlockCorrupt
from jointcloud.redundancy.checksums import Checksums
from jointcloud.redundancy.cipher import ChunkCipher
from jointcloud.redundancy.erasure import ErasureCodec
from jointcloud.redundancy.policy import EcPolicy, Redundancy
from jointcloud.redundancy.segments import (
    Layout,
    WriteResult,
    chunk_len_for,
    segment_size_for,
)
from jointcloud.redundancy.tasks import _cpu
from jointcloud.spaces.base import Space


def encode_whole(
    data: bytes,
    policy: Redundancy,
    data_key: bytes,
    *,
    segment_size: int | None = None,
    checksums: Collection[str] = (),
) -> tuple[WriteResult, list[bytes]]:
    """What ``write_blocks`` would store for ``data`` (a small object already in
    memory), computed in one go: the result and every block's bytes, by block
    index (replicas share one bytes object). CPU only; run it off the loop."""
    seg_size = segment_size or segment_size_for(policy)
    chunk_len = chunk_len_for(policy, seg_size)
    codec = ErasureCodec(policy.k, policy.n) if isinstance(policy, EcPolicy) else None
    cipher = ChunkCipher(data_key)
    width = policy.width
    pieces: list[list[bytes]] = [[] for _ in range(width if codec else 1)]
    for j, start in enumerate(range(0, len(data), seg_size)):
        seg = data[start : start + seg_size]
        if codec is None:
            pieces[0].append(cipher.seal(0, j, seg))
        else:
            for i, frag in enumerate(codec.encode(seg)):
                pieces[i].append(cipher.seal(i, j, frag))
    joined = [p[0] if len(p) == 1 else b"".join(p) for p in pieces]
    blocks = joined if codec else joined * width
    sha = hashlib.sha256(data)
    extra: dict[str, str] = {}
    if checksums:
        summer = Checksums(checksums)
        summer.update(data)
        extra = summer.result(sha.digest())
    result = WriteResult(
        size=len(data),
        sha256=sha.hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        segment_size=seg_size,
        chunk_len=chunk_len,
        block_sizes=[len(b) for b in blocks],
        checksums=extra,
    )
    return result, blocks


def decode_whole(block: bytes, layout: Layout) -> bytes:
    """The plaintext of a one-block (policy none) layout held in memory: an
    inline small object. Every chunk is authenticated (``BlockCorrupt``)."""
    cipher = ChunkCipher(layout.data_key)
    out = []
    for j, start in enumerate(range(0, len(block), layout.chunk_len)):
        out.append(cipher.open(0, j, block[start : start + layout.chunk_len]))
    data = out[0] if len(out) == 1 else b"".join(out)
    if len(data) != layout.size:
        raise BlockCorrupt(f"inline block holds {len(data)} bytes, its layout {layout.size}")
    return data


async def encode_many(
    items: Sequence[tuple[bytes, bytes]], policy: Redundancy, checksums: Collection[str] = ()
) -> list[tuple[WriteResult, list[bytes]]]:
    """``encode_whole`` of each (data, data key), in one hop to the CPU pool."""

    def run() -> list[tuple[WriteResult, list[bytes]]]:
        return [encode_whole(data, policy, key, checksums=checksums) for data, key in items]

    return await _cpu(run)


@runtime_checkable
class BatchPut(Protocol):
    """A space that stores many small keys in one call, durable together (one
    durability point for the batch instead of one per key)."""

    async def put_many(self, items: Sequence[tuple[str, bytes]]) -> None: ...


PUT_PARALLEL = 16  # whole-block puts in flight at once to a space without ``put_many``


async def put_blocks(items: Sequence[tuple[Space, str, bytes]]) -> None:
    """Store whole blocks; every one is durable when this returns.

    Keys of one space go in one ``put_many`` call where the space has it,
    elsewhere up to ``PUT_PARALLEL`` plain puts at once. Nothing is left
    running when this returns or raises (it waits for every started put, and
    starts no new one after a failure); a failure leaves keys that the caller
    deletes."""
    by_space: dict[int, tuple[Space, list[tuple[str, bytes]]]] = {}
    for space, key, data in items:
        by_space.setdefault(id(space), (space, []))[1].append((key, data))
    gate = asyncio.Semaphore(PUT_PARALLEL)
    failed: list[BaseException] = []

    async def one(space: Space, key: str, data: bytes) -> None:
        async with gate:
            if not failed:
                await space.put(key, data)

    async def guarded(aw: Awaitable[None]) -> None:
        try:
            await aw
        except BaseException as exc:
            failed.append(exc)

    jobs: list[Awaitable[None]] = []
    for space, group in by_space.values():
        if isinstance(space, BatchPut):
            jobs.append(guarded(space.put_many(group)))
        else:
            jobs.extend(guarded(one(space, k, d)) for k, d in group)
    task = asyncio.ensure_future(asyncio.gather(*jobs))
    # Shielded: a cancelled caller still waits here until no put is running,
    # so its clean-up cannot race a put that lands afterwards.
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise
    if failed:
        raise failed[0]
