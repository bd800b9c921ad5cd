"""rebuild_blocks over memory spaces: rebuilt blocks are byte-identical
to the lost ones, EC uses reconstruct (not decode + re-encode), failures leave
nothing behind, and too few intact blocks say how many were found and needed."""

from __future__ import annotations

import asyncio
import itertools
import os
import random

import pytest

from jointcloud.errors import NotEnoughBlocks
from jointcloud.redundancy import reader
from jointcloud.redundancy.erasure import ErasureCodec
from jointcloud.redundancy.policy import EcPolicy, NonePolicy, Redundancy, RepPolicy
from jointcloud.redundancy.rebuild import REBUILD_AHEAD, rebuild_blocks
from jointcloud.redundancy.stream import BlockRef, Layout, read_range, verify_block
from jointcloud.spaces.memory import MemorySpace
from support.memblocks import SMALL_SEG
from support.memblocks import stored as store


async def read_all(layout: Layout, blocks: list[BlockRef]) -> bytes:
    return b"".join([p async for p in read_range(layout, blocks, 0, None)])


def new_target(index: int, space: MemorySpace | None = None) -> BlockRef:
    return BlockRef(index, space or MemorySpace(f"new{index}"), f"blocks/cd/y.{index}", 200 + index)


EC = EcPolicy(4, 6, 4096)


@pytest.mark.parametrize("size", [0, 1, 4 * 4096 - 1, 4 * 4096, 5 * 4 * 4096 + 777])
@pytest.mark.parametrize("lost", [[0], [5], [1, 4], [2, 3]])
async def test_ec_rebuild_is_byte_identical(size: int, lost: list[int]) -> None:
    data = os.urandom(size)
    spaces, blocks, layout = await store(EC, data)
    original = {i: spaces[i].contents()[blocks[i].key] for i in range(6)}
    for i in lost:
        await spaces[i].delete(blocks[i].key)
    sources = [b for b in blocks if b.index not in lost]
    targets = [new_target(i) for i in lost]
    await rebuild_blocks(layout, sources, targets)
    for t in targets:
        assert t.space.contents()[t.key] == original[t.index]  # type: ignore[attr-defined]
        await verify_block(layout, t)
    healed = [b for b in blocks if b.index not in lost] + targets
    assert await read_all(layout, sorted(healed, key=lambda b: b.index)) == data


@pytest.mark.parametrize("policy", [RepPolicy(2), RepPolicy(3), NonePolicy()], ids=str)
async def test_replica_rebuild_copies_ciphertext(policy: Redundancy) -> None:
    data = os.urandom(3 * SMALL_SEG + 11)
    spaces, blocks, layout = await store(policy, data)
    original = spaces[0].contents()[blocks[0].key]
    if policy.width > 1:
        await spaces[0].delete(blocks[0].key)
        sources, target = blocks[1:], new_target(0)
    else:  # none: a copy of the one block (a move)
        sources, target = blocks, new_target(0)
    await rebuild_blocks(layout, sources, [target])
    assert target.space.contents()[target.key] == original  # type: ignore[attr-defined]
    assert await read_all(layout, [target]) == data


async def test_ec_reconstructs_only_missing_fragments(monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 * EC.segment_size + 5)
    spaces, blocks, layout = await store(EC, data)
    calls: list[list[int]] = []
    orig = ErasureCodec.reconstruct

    def spy(
        self: ErasureCodec, fragments: dict[int, bytes], missing: list[int]
    ) -> dict[int, bytes]:
        calls.append(sorted(missing))
        assert len(fragments) == self.k
        return orig(self, fragments, missing)

    def no_encode(self: ErasureCodec, segment: bytes) -> list[bytes]:
        raise AssertionError("rebuild must not re-encode")

    monkeypatch.setattr(ErasureCodec, "reconstruct", spy)
    monkeypatch.setattr(ErasureCodec, "encode", no_encode)
    monkeypatch.setattr(ErasureCodec, "decode", no_encode)
    await spaces[3].delete(blocks[3].key)
    for s in spaces:
        s.stats.reset()
    await rebuild_blocks(layout, [b for b in blocks if b.index != 3], [new_target(3)])
    assert calls == [[3]] * 4
    # k fragments read per segment, each chunk once: the data fragments first
    assert [s.stats.reads for s in spaces] == [4, 4, 4, 0, 4, 0]


async def test_corrupt_chunks_of_different_blocks_still_rebuild() -> None:
    """Two replicas each with one bad chunk: together they hold every chunk."""
    policy = RepPolicy(2)
    data = os.urandom(4 * SMALL_SEG)
    spaces, blocks, layout = await store(policy, data)
    chunk_len = layout.chunk_len
    spaces[0].corrupt(blocks[0].key, at=5)  # chunk 0 of block 0
    spaces[1].corrupt(blocks[1].key, at=2 * chunk_len + 9)  # chunk 2 of block 1
    targets = [new_target(0), new_target(1)]
    await rebuild_blocks(layout, blocks, targets)
    for t in targets:
        await verify_block(layout, t)
    assert await read_all(layout, targets) == data


async def test_ec_corrupt_block_used_for_its_good_segments() -> None:
    data = os.urandom(3 * EC.segment_size)
    spaces, blocks, layout = await store(EC, data)
    # lose two fragments entirely and corrupt segment 0 of a third
    await spaces[4].delete(blocks[4].key)
    await spaces[5].delete(blocks[5].key)
    spaces[1].corrupt(blocks[1].key, at=3)
    targets = [new_target(1), new_target(4), new_target(5)]
    with pytest.raises(NotEnoughBlocks) as err:
        await rebuild_blocks(layout, blocks, targets)
    assert (err.value.found, err.value.needed) == (3, 4)
    assert "found 3 of 4 blocks needed" in err.value.message
    assert all(not t.space.contents() for t in targets)  # type: ignore[attr-defined]
    # one lost and two with a bad chunk each (in different segments): every
    # segment still has k good fragments
    spaces, blocks, layout = await store(EC, data)
    original = spaces[1].contents()[blocks[1].key]
    await spaces[5].delete(blocks[5].key)
    spaces[1].corrupt(blocks[1].key, at=3)
    spaces[2].corrupt(blocks[2].key, at=layout.chunk_len + 3)
    targets = [new_target(1), new_target(2), new_target(5)]
    await rebuild_blocks(layout, blocks, targets)
    assert targets[0].space.contents()[targets[0].key] == original  # type: ignore[attr-defined]
    for t in targets:
        await verify_block(layout, t)


@pytest.mark.parametrize("policy", [RepPolicy(2), EC], ids=["rep2", "ec4-6"])
async def test_too_few_sources_leaves_nothing(policy: Redundancy) -> None:
    data = os.urandom(2 * 16384 + 1)
    spaces, blocks, layout = await store(policy, data)
    keep = policy.needed - 1
    for b in blocks[keep:]:
        await spaces[b.index].delete(b.key)
    target_space = MemorySpace("t")
    targets = [new_target(i, target_space) for i in range(keep, policy.width)]
    with pytest.raises(NotEnoughBlocks) as err:
        await rebuild_blocks(layout, blocks[:keep], targets)
    assert (err.value.found, err.value.needed) == (keep, policy.needed)
    assert f"found {keep} of {policy.needed} blocks needed" in err.value.message
    assert target_space.contents() == {}
    assert target_space.stats.aborts == target_space.stats.writers


async def test_unreachable_source_is_skipped() -> None:
    data = os.urandom(3 * EC.segment_size)
    spaces, blocks, layout = await store(EC, data)
    spaces[0].faults.fail_reads = True
    await spaces[1].delete(blocks[1].key)
    await rebuild_blocks(layout, [b for b in blocks if b.index != 1], [new_target(1)])
    # the failing space is not asked again once it failed (segments already in
    # flight may have asked it too)
    assert spaces[0].stats.reads <= REBUILD_AHEAD < 3


async def test_failed_commit_deletes_committed_targets() -> None:
    data = os.urandom(2 * EC.segment_size)
    _, blocks, layout = await store(EC, data)
    ok_space, bad_space = MemorySpace("ok"), MemorySpace("bad")
    bad_space.faults.fail_commit = True
    targets = [new_target(4, ok_space), new_target(5, bad_space)]
    with pytest.raises(Exception, match="injected commit failure"):
        await rebuild_blocks(layout, blocks[:4], targets)
    assert ok_space.contents() == {} and bad_space.contents() == {}


async def test_failed_write_and_cancellation_leave_nothing() -> None:
    data = os.urandom(6 * EC.segment_size)
    _, blocks, layout = await store(EC, data)
    target_space = MemorySpace("t")
    target_space.faults.fail_writes_after = 2
    with pytest.raises(Exception, match="injected write failure"):
        await rebuild_blocks(layout, blocks[:4], [new_target(5, target_space)])
    assert target_space.contents() == {}

    slow = MemorySpace("slow")
    writing = asyncio.Event()

    async def stall() -> None:  # the first write hangs until the cancel
        writing.set()
        await asyncio.Event().wait()

    slow.faults.before_write = stall
    task = asyncio.ensure_future(rebuild_blocks(layout, blocks[:4], [new_target(5, slow)]))
    await writing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slow.contents() == {}
    assert slow.stats.writers == slow.stats.aborts == 1


async def test_bad_arguments() -> None:
    _, blocks, layout = await store(EC, b"abc")
    with pytest.raises(ValueError):
        await rebuild_blocks(layout, blocks[:4], [new_target(6)])
    with pytest.raises(ValueError):
        await rebuild_blocks(layout, blocks[:4], [new_target(5), new_target(5)])
    await rebuild_blocks(layout, blocks, [])  # nothing to do


async def test_memory_is_bounded_by_segments() -> None:
    """Sources are read at most a few segments ahead of the target writes."""
    data = os.urandom(30 * EC.segment_size)
    spaces, blocks, layout = await store(EC, data)
    target = MemorySpace("t")
    written = 0
    ahead: list[int] = []
    orig_read = MemorySpace.read
    max_read_seg = 0

    async def read(
        self: MemorySpace, key: str, offset: int = 0, length: int | None = None
    ) -> bytes:
        nonlocal max_read_seg
        max_read_seg = max(max_read_seg, offset // layout.chunk_len)
        return await orig_read(self, key, offset, length)

    orig_open = target.open_writer

    async def open_writer(key: str):  # type: ignore[no-untyped-def]
        w = await orig_open(key)
        orig_write = w.write

        async def write(chunk: bytes) -> None:
            nonlocal written
            ahead.append(max_read_seg - written)
            await orig_write(chunk)
            await asyncio.sleep(0.001)
            written += 1

        w.write = write  # type: ignore[method-assign]
        return w

    target.open_writer = open_writer  # type: ignore[method-assign]
    for s in spaces:
        s.read = read.__get__(s)  # type: ignore[method-assign]
    await rebuild_blocks(layout, blocks[:4], [new_target(5, target)])
    assert ahead and max(ahead) <= 3


@pytest.mark.parametrize("seed", range(6))
async def test_random_loss_patterns(seed: int) -> None:
    rng = random.Random(seed)
    policy = EcPolicy(3, 6, 4096)
    data = os.urandom(rng.randint(1, 5 * policy.segment_size))
    spaces, blocks, layout = await store(policy, data)
    for lost in itertools.islice(itertools.combinations(range(6), 3), seed, None, 5):
        targets = [new_target(i) for i in lost]
        sources = [b for b in blocks if b.index not in lost]
        await rebuild_blocks(layout, sources, targets)
        for t in targets:
            assert t.space.contents()[t.key] == spaces[t.index].contents()[blocks[t.index].key]  # type: ignore[attr-defined]


async def test_replicas_are_copied_in_runs_and_a_bad_chunk_comes_from_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = os.urandom(9 * SMALL_SEG + 5)
    spaces, blocks, layout = await store(RepPolicy(3), data)
    original = spaces[0].contents()[blocks[0].key]
    c = layout.chunk_len
    monkeypatch.setattr(reader, "READ_RUN", 4 * SMALL_SEG)  # runs of 4 chunks
    await spaces[0].delete(blocks[0].key)
    spaces[1].corrupt(blocks[1].key, at=5 * c + 3)  # segment 5, in the second run
    for sp in spaces:
        sp.stats.read_log = []
    target = new_target(0)
    await rebuild_blocks(layout, [blocks[1], blocks[2]], [target])
    assert target.space.contents()[target.key] == original  # type: ignore[attr-defined]
    # source 1 in runs of four chunks (0-3, 4-7 good up to its bad chunk 5,
    # and 8-9), read once each; source 2 for chunk 5 and the rest of its run
    assert sorted((off, n) for _, off, n in spaces[1].stats.read_log) == [
        (0, 4 * c),
        (4 * c, 4 * c),
        (8 * c, c + 5 + (c - SMALL_SEG)),  # the last chunk: 5 bytes and the overhead
    ]
    assert sorted((off, n) for _, off, n in spaces[2].stats.read_log) == [
        (5 * c, c),
        (6 * c, 2 * c),
    ]


async def test_a_replica_bad_throughout_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # After a source fails inside a run, the rest of that run comes from
    # another: a source bad at every chunk costs one read of its bytes.
    data = os.urandom(12 * SMALL_SEG + 9)
    spaces, blocks, layout = await store(RepPolicy(3), data)
    original = spaces[0].contents()[blocks[0].key]
    monkeypatch.setattr(reader, "READ_RUN", 4 * SMALL_SEG)
    await spaces[0].delete(blocks[0].key)
    for j in range(13):
        spaces[1].corrupt(blocks[1].key, at=j * layout.chunk_len + 1)
    for sp in spaces:
        sp.stats.reset()
    target = new_target(0)
    await rebuild_blocks(layout, [blocks[1], blocks[2]], [target])
    assert target.space.contents()[target.key] == original  # type: ignore[attr-defined]
    assert spaces[1].stats.bytes_read == len(original)
    assert spaces[2].stats.bytes_read == len(original)
