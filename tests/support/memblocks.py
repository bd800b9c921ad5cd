"""A layout written over memory spaces, one per block: the fixture of the
data path's unit tests (reads, rebuilds, hedging)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from jointcloud.redundancy.cipher import new_data_key
from jointcloud.redundancy.policy import EcPolicy, Redundancy
from jointcloud.redundancy.stream import BlockRef, Layout, write_blocks
from jointcloud.spaces.memory import MemorySpace

SMALL_SEG = 16384  # none/rep segment size (EC layouts keep their own)


async def chunked(data: bytes, size: int = 5000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def stored(
    policy: Redundancy, data: bytes
) -> tuple[list[MemorySpace], list[BlockRef], Layout]:
    """``data`` written under ``policy``, a memory space per block, with the
    spaces' counters reset afterwards."""
    spaces = [MemorySpace(f"s{i}") for i in range(policy.width)]
    blocks = [BlockRef(i, s, f"blocks/ab/x.{i}", 100 + i) for i, s in enumerate(spaces)]
    key = new_data_key()
    seg = None if isinstance(policy, EcPolicy) else SMALL_SEG
    r = await write_blocks(chunked(data), policy, blocks, key, segment_size=seg)
    for s in spaces:
        s.stats.reset()
    return spaces, blocks, Layout(policy, r.size, r.segment_size, r.chunk_len, key)
