"""write_blocks / read_range / verify_block over memory spaces (with injected faults),
and over local ones where the page cache matters."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jointcloud.errors import BlockCorrupt, BlockNotFound, NotEnoughBlocks, SpaceUnavailable
from jointcloud.redundancy import reader, stream
from jointcloud.redundancy.cipher import OVERHEAD, new_data_key
from jointcloud.redundancy.erasure import ErasureCodec
from jointcloud.redundancy.policy import EcPolicy, NonePolicy, Redundancy, RepPolicy
from jointcloud.redundancy.stream import (
    READ_AHEAD,
    REPLICA_SEGMENT,
    BlockRef,
    Layout,
    WriteResult,
    read_range,
    verify_block,
    write_blocks,
)
from jointcloud.spaces.local import LocalSpace
from jointcloud.spaces.memory import MemorySpace
from support.hotreads import evict, require_loop_reads

SMALL_SEG = 16384  # none/rep segment size in these tests
POLICIES: list[Redundancy] = [
    NonePolicy(),
    RepPolicy(3),
    EcPolicy(4, 6, 4096),
    EcPolicy(2, 3, 4096),
]
IDS = ["none", "rep3", "ec4-6", "ec2-3"]


def seg_size(policy: Redundancy) -> int:
    return policy.segment_size if isinstance(policy, EcPolicy) else SMALL_SEG


def make_blocks(policy: Redundancy) -> tuple[list[MemorySpace], list[BlockRef]]:
    spaces = [MemorySpace(f"s{i}") for i in range(policy.width)]
    return spaces, [BlockRef(i, s, f"objs/abc/{i}", 100 + i) for i, s in enumerate(spaces)]


async def chunked(data: bytes, seed: int = 0, max_chunk: int = 7000) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rng.randint(1, max_chunk)
        yield data[pos : pos + n]
        pos += n


async def store(
    policy: Redundancy, data: bytes, *, seed: int = 0, max_chunk: int = 7000
) -> tuple[list[MemorySpace], list[BlockRef], Layout, WriteResult]:
    spaces, blocks = make_blocks(policy)
    key = new_data_key()
    seg = None if isinstance(policy, EcPolicy) else SMALL_SEG
    result = await write_blocks(
        chunked(data, seed, max_chunk), policy, blocks, key, segment_size=seg
    )
    layout = Layout(policy, result.size, result.segment_size, result.chunk_len, key)
    return spaces, blocks, layout, result


async def read_all(
    layout: Layout, blocks: list[BlockRef], offset: int = 0, length: int | None = None, **kw: object
) -> bytes:
    return b"".join([p async for p in read_range(layout, blocks, offset, length, **kw)])  # type: ignore[arg-type]


def sizes_for(policy: Redundancy) -> list[int]:
    s = seg_size(policy)
    return [0, 1, s - 1, s, s + 1, 3 * s + 17]


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
async def test_round_trip_sizes(policy: Redundancy) -> None:
    for size in sizes_for(policy):
        data = os.urandom(size)
        spaces, blocks, layout, result = await store(policy, data, seed=size)
        assert result.size == size
        assert result.sha256 == hashlib.sha256(data).hexdigest()
        assert result.md5 == hashlib.md5(data).hexdigest()
        assert result.segment_size == seg_size(policy)
        nseg = -(-size // result.segment_size)
        for space, block, stored in zip(spaces, blocks, result.block_sizes, strict=True):
            assert len(space.contents()[block.key]) == stored
            assert space.stats.commits == space.stats.writers
            if size % result.segment_size == 0:
                assert stored == nseg * result.chunk_len
        assert await read_all(layout, blocks) == data
        for block in blocks:
            await verify_block(layout, block)


def test_chunk_len_geometry() -> None:
    async def go() -> None:
        _, _, _, r = await store(EcPolicy(4, 6, 4096), b"x" * 10)
        assert r.chunk_len == ErasureCodec(4, 6).fragment_len(4 * 4096) + OVERHEAD
        _, _, _, r = await store(RepPolicy(2), b"x" * 10)
        assert r.chunk_len == SMALL_SEG + OVERHEAD

    asyncio.run(go())


async def test_empty_object_commits_empty_blocks() -> None:
    spaces, blocks, layout, result = await store(EcPolicy(4, 6, 4096), b"")
    assert result.block_sizes == [0] * 6
    assert all(s.contents()[b.key] == b"" for s, b in zip(spaces, blocks, strict=True))
    assert result.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read_all(layout, blocks) == b""
    assert sum(s.stats.reads for s in spaces) == 0


async def test_replica_layouts_written_with_4_mib_segments_still_read() -> None:
    # The default replica segment went from 4 MiB to 1 MiB; a layout keeps the
    # segment size it was written with, and reads use that one.
    assert REPLICA_SEGMENT == 1024 * 1024
    data = os.urandom(9 * 1024 * 1024 + 77)
    policy = RepPolicy(2)
    _spaces, blocks = make_blocks(policy)
    key = new_data_key()
    old = 4 * 1024 * 1024
    result = await write_blocks(chunked(data, 1, 1 << 20), policy, blocks, key, segment_size=old)
    assert result.segment_size == old
    layout = Layout(policy, result.size, result.segment_size, result.chunk_len, key)
    assert await read_all(layout, blocks) == data
    start = 4 * 1024 * 1024 - 3
    assert await read_all(layout, blocks, start, 2 << 20) == data[start:][: 2 << 20]


async def test_multi_mib_default_segments() -> None:
    data = os.urandom(9 * 1024 * 1024 + 123)
    for policy in (EcPolicy(4, 6), RepPolicy(2), NonePolicy()):
        _spaces, blocks = make_blocks(policy)
        key = new_data_key()
        result = await write_blocks(chunked(data, 1, 1 << 20), policy, blocks, key)
        expected_seg = 4 * 1024 * 1024 if isinstance(policy, EcPolicy) else REPLICA_SEGMENT
        assert result.segment_size == expected_seg
        assert result.md5 == hashlib.md5(data).hexdigest()
        layout = Layout(policy, result.size, result.segment_size, result.chunk_len, key)
        assert await read_all(layout, blocks) == data
        start = 5 * 1024 * 1024 - 10
        assert await read_all(layout, blocks, start, 3 * 1024 * 1024) == data[start:][: 3 << 20]


async def test_source_chunk_types_and_big_chunks() -> None:
    data = os.urandom(5 * SMALL_SEG + 3)

    async def mixed() -> AsyncIterator[bytes]:
        yield bytearray(data[:100])  # type: ignore[misc]
        yield memoryview(data)[100 : 3 * SMALL_SEG]  # type: ignore[misc]
        yield b""
        yield data[3 * SMALL_SEG :]

    _spaces, blocks = make_blocks(RepPolicy(2))
    key = new_data_key()
    result = await write_blocks(mixed(), RepPolicy(2), blocks, key, segment_size=SMALL_SEG)
    layout = Layout(RepPolicy(2), result.size, result.segment_size, result.chunk_len, key)
    assert await read_all(layout, blocks) == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
async def test_ranged_reads_at_boundaries(policy: Redundancy) -> None:
    s = seg_size(policy)
    data = os.urandom(3 * s + 17)
    _, blocks, layout, _ = await store(policy, data)
    points = sorted(
        {0, 1, 2, s - 1, s, s + 1, 2 * s - 1, 2 * s, 2 * s + 1, 3 * s, 3 * s + 16, 3 * s + 17}
        | {s // 4 - 1, s // 4, s // 2 + 1}
    )
    for off, end in itertools.product(points, [*points, len(data) + 50]):
        if end < off:
            continue
        got = await read_all(layout, blocks, off, end - off)
        assert got == data[off:end], (off, end)
    assert await read_all(layout, blocks, 5, None) == data[5:]
    assert await read_all(layout, blocks, len(data) + 10, 5) == b""
    with pytest.raises(ValueError):
        read_range(layout, blocks, -1, 5)


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_ranged_reads_property(policy: Redundancy) -> None:
    s = seg_size(policy)
    data = os.urandom(4 * s + 123)
    _, blocks, layout, _ = asyncio.run(store(policy, data))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(data) + 10), st.one_of(st.none(), st.integers(0, len(data) + 10)))
    def check(offset: int, length: int | None) -> None:
        got = asyncio.run(read_all(layout, blocks, offset, length))
        end = len(data) if length is None else offset + length
        assert got == data[offset:end]

    check()


async def test_ranged_reads_fetch_only_needed_chunks() -> None:
    # rep: a range inside segment 2 reads one chunk of the first replica only
    data = os.urandom(5 * SMALL_SEG)
    spaces, blocks, layout, result = await store(RepPolicy(3), data)
    spaces[0].stats.read_log = []
    await read_all(layout, blocks, 2 * SMALL_SEG + 10, 100)
    assert spaces[0].stats.read_log == [(blocks[0].key, 2 * result.chunk_len, result.chunk_len)]
    assert spaces[1].stats.reads == spaces[2].stats.reads == 0
    # a range across segments 1..3 reads exactly those chunks, in one read
    spaces[0].stats.reset()
    await read_all(layout, blocks, SMALL_SEG + 5, 2 * SMALL_SEG)
    assert spaces[0].stats.read_log == [(blocks[0].key, result.chunk_len, 3 * result.chunk_len)]
    assert spaces[0].stats.bytes_read == 3 * result.chunk_len

    # ec: a small range reads only the one data fragment holding it
    policy = EcPolicy(4, 6, 4096)
    data = os.urandom(5 * policy.segment_size)
    spaces, blocks, layout, result = await store(policy, data)
    off = 1 * policy.segment_size + 2 * 4096 + 100
    spaces[2].stats.read_log = []
    assert await read_all(layout, blocks, off, 50) == data[off : off + 50]
    assert [s.stats.reads for s in spaces] == [0, 0, 1, 0, 0, 0]
    assert spaces[2].stats.read_log == [(blocks[2].key, result.chunk_len, result.chunk_len)]
    # a whole segment reads the k data fragments, no parity
    for s in spaces:
        s.stats.reset()
    await read_all(layout, blocks, 3 * policy.segment_size, policy.segment_size)
    assert [s.stats.reads for s in spaces] == [1, 1, 1, 1, 0, 0]
    # whole object: k chunks per segment
    for s in spaces:
        s.stats.reset()
    await read_all(layout, blocks)
    assert [s.stats.reads for s in spaces] == [5, 5, 5, 5, 0, 0]
    assert sum(s.stats.bytes_read for s in spaces) == 5 * 4 * result.chunk_len


def expected_reports(bad: set[int], k: int, n: int) -> set[int]:
    """Blocks a full read tries: data fragments, then parity in order until k good."""
    reported = {i for i in bad if i < k}
    missing = len(reported)
    for p in range(k, n):
        if missing == 0:
            break
        if p in bad:
            reported.add(p)
        else:
            missing -= 1
    return reported


@pytest.mark.parametrize("mode", ["missing", "corrupt", "unavailable", "truncated"])
@pytest.mark.parametrize("policy", [EcPolicy(4, 6, 4096), EcPolicy(2, 3, 4096)], ids=["4-6", "2-3"])
async def test_ec_survives_any_n_minus_k_bad_blocks(policy: EcPolicy, mode: str) -> None:
    data = os.urandom(3 * policy.segment_size + 999)
    spaces, blocks, layout, _ = await store(policy, data)
    pristine = {s.name: s.contents() for s in spaces}
    for count in range(1, policy.n - policy.k + 1):
        for bad in itertools.combinations(range(policy.n), count):
            for s in spaces:
                for key in s.contents():
                    await s.delete(key)
                for key, stored in pristine[s.name].items():
                    await s.put(key, stored)
                s.faults.fail_reads = False
            for i in bad:
                key = blocks[i].key
                if mode == "missing":
                    await spaces[i].delete(key)
                elif mode == "corrupt":
                    spaces[i].corrupt(key, at=len(spaces[i].contents()[key]) // 2)
                elif mode == "unavailable":
                    spaces[i].faults.fail_reads = True
                else:
                    await spaces[i].put(key, spaces[i].contents()[key][:-1])
            reports: list[tuple[int, Exception]] = []

            def report(
                i: int, e: Exception, reports: list[tuple[int, Exception]] = reports
            ) -> None:
                reports.append((i, e))

            got = await read_all(layout, blocks, on_bad_block=report)
            assert got == data, bad
            # corruption in the middle is only seen by reads of that segment
            want = expected_reports(set(bad), policy.k, policy.n)
            assert sorted(i for i, _ in reports) == sorted(want), (bad, reports)
            kinds = {"missing": BlockNotFound, "corrupt": BlockCorrupt, "truncated": BlockCorrupt}
            for _, err in reports:
                assert isinstance(err, kinds.get(mode, SpaceUnavailable))


async def test_ec_too_many_missing_raises_not_enough_blocks() -> None:
    policy = EcPolicy(4, 6, 4096)
    data = os.urandom(2 * policy.segment_size)
    spaces, blocks, layout, _ = await store(policy, data)
    for i in (0, 3, 5):
        await spaces[i].delete(blocks[i].key)
    reports: list[int] = []
    with pytest.raises(NotEnoughBlocks) as info:
        await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append(i))
    assert (info.value.found, info.value.needed) == (3, 4)
    assert "found 3 of 4 blocks needed" in info.value.message
    assert sorted(reports) == [0, 3, 5]


async def test_ec_read_with_blocks_omitted_by_caller() -> None:
    policy = EcPolicy(4, 6, 4096)
    data = os.urandom(2 * policy.segment_size + 5)
    _, blocks, layout, _ = await store(policy, data)
    assert await read_all(layout, [blocks[i] for i in (5, 1, 4, 2)]) == data
    with pytest.raises(NotEnoughBlocks):
        await read_all(layout, blocks[:3])


async def test_replica_reads_go_in_runs_and_a_bad_chunk_comes_from_the_next_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reader, "READ_RUN", 2 * SMALL_SEG)
    data = os.urandom(5 * SMALL_SEG - 7)
    spaces, blocks, layout, result = await store(RepPolicy(2), data)
    c = result.chunk_len
    for sp in spaces:
        sp.stats.read_log = []
    assert await read_all(layout, blocks) == data
    # segments 0-1, 2-3 and 4 (the short last one), one read each
    assert [(off, n) for _, off, n in spaces[0].stats.read_log] == [
        (0, 2 * c),
        (2 * c, 2 * c),
        (4 * c, result.size - 4 * SMALL_SEG + OVERHEAD),
    ]
    for sp in spaces:
        sp.stats.reset()
        sp.stats.read_log = []
    spaces[0].corrupt(blocks[0].key, at=3 * c + OVERHEAD + 5)  # segment 3
    reports: list[tuple[int, Exception]] = []
    got = await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append((i, e)))
    assert got == data
    assert [(i, type(e)) for i, e in reports] == [(0, BlockCorrupt)]
    assert "chunk 3" in str(reports[0][1])
    # segment 3 alone comes from replica 1 (segment 2 of its run was good on
    # replica 0, and the run ahead was already under way there)
    assert [(off, n) for _, off, n in spaces[1].stats.read_log] == [(3 * c, c)]


async def test_a_run_bad_half_way_takes_only_its_rest_from_the_next_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every segment has one good copy: replica 0 is bad in segment 3, replica
    # 1 in segment 0, and runs are 4 segments long. Each chunk is
    # authenticated on its own, so the chunks before a bad one are kept.
    monkeypatch.setattr(reader, "READ_RUN", 4 * SMALL_SEG)
    data = os.urandom(8 * SMALL_SEG)
    spaces, blocks, layout, result = await store(RepPolicy(2), data)
    c = result.chunk_len
    spaces[0].corrupt(blocks[0].key, at=3 * c + 5)
    spaces[1].corrupt(blocks[1].key, at=5)
    reports: list[tuple[int, Exception]] = []
    got = await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append((i, e)))
    assert got == data
    assert [(i, type(e)) for i, e in reports] == [(0, BlockCorrupt)]
    assert "chunk 3 " in str(reports[0][1])


@pytest.mark.parametrize("run_segments", [1, 4])
async def test_replicas_bad_in_different_chunks_still_read(
    monkeypatch: pytest.MonkeyPatch, run_segments: int
) -> None:
    # Replica 0 is bad in segment 0, replica 1 in segment 1 (and 3): every
    # segment has a good copy. A replica that failed one chunk's check was
    # not asked again by the read, so segment 1 found no replica at all.
    monkeypatch.setattr(reader, "READ_RUN", run_segments * SMALL_SEG)
    data = os.urandom(5 * SMALL_SEG + 3)
    spaces, blocks, layout, result = await store(RepPolicy(2), data)
    c = result.chunk_len
    spaces[0].corrupt(blocks[0].key, at=5)
    spaces[1].corrupt(blocks[1].key, at=c + 5)
    spaces[1].corrupt(blocks[1].key, at=3 * c + 5)
    reports: list[tuple[int, Exception]] = []
    got = await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append((i, e)))
    assert got == data
    assert sorted((i, type(e)) for i, e in reports) == [(0, BlockCorrupt), (1, BlockCorrupt)]
    for off, n in ((c - 10, 30), (SMALL_SEG + 1, 2 * SMALL_SEG)):
        assert await read_all(layout, blocks, off, n) == data[off : off + n]
    # the same chunk bad in both: no copy of it, and the read says so
    spaces[0].corrupt(blocks[0].key, at=3 * c + 9)
    with pytest.raises(NotEnoughBlocks) as info:
        await read_all(layout, blocks)
    assert "segment 3" in info.value.message


async def test_ec_fragments_bad_in_different_segments_still_read() -> None:
    # ec(4,6): fragments 0, 1 and 2 are each bad in one segment of their
    # own, so every segment has 5 good fragments of the 4 it needs; once
    # ruled out for the whole read, three of six were left for segment 3.
    policy = EcPolicy(4, 6, 4096)
    data = os.urandom(4 * policy.segment_size + 5)
    spaces, blocks, layout, result = await store(policy, data)
    c = result.chunk_len
    for i in range(3):
        spaces[i].corrupt(blocks[i].key, at=i * c + 100)
    reports: list[tuple[int, Exception]] = []
    got = await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append((i, e)))
    assert got == data
    assert sorted((i, type(e)) for i, e in reports) == [(i, BlockCorrupt) for i in range(3)]
    seg = policy.segment_size
    assert await read_all(layout, blocks, seg - 7, 2 * seg) == data[seg - 7 : 3 * seg - 7]


async def test_a_truncated_replica_names_the_first_missing_chunk() -> None:
    data = os.urandom(5 * SMALL_SEG)
    spaces, blocks, layout, result = await store(RepPolicy(2), data)
    whole = spaces[0].contents()[blocks[0].key]
    await spaces[0].put(blocks[0].key, whole[: 2 * result.chunk_len + 10])
    reports: list[tuple[int, Exception]] = []
    got = await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append((i, e)))
    assert got == data
    assert [(i, str(e)) for i, e in reports] == [
        (0, f"block {blocks[0].key} is truncated at chunk 2")
    ]


async def test_rep_falls_over_to_next_replica() -> None:
    data = os.urandom(3 * SMALL_SEG + 1)
    spaces, blocks, layout, _ = await store(RepPolicy(3), data)
    spaces[0].corrupt(blocks[0].key, at=SMALL_SEG + OVERHEAD + 5)  # segment 1
    await spaces[1].delete(blocks[1].key)
    reports: list[tuple[int, Exception]] = []
    got = await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append((i, e)))
    assert got == data
    assert [(i, type(e)) for i, e in reports] == [(0, BlockCorrupt), (1, BlockNotFound)]
    # preference order is the caller's
    for s in spaces:
        s.stats.reset()
    assert await read_all(layout, [blocks[2], blocks[0]], 0, 10) == data[:10]
    assert spaces[2].stats.reads == 1 and spaces[0].stats.reads == 0
    # all replicas bad
    spaces[2].faults.fail_reads = True
    with pytest.raises(NotEnoughBlocks) as info:
        await read_all(layout, blocks)
    assert (info.value.found, info.value.needed) == (0, 1)
    assert "found 0 of 1 blocks needed" in info.value.message


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
async def test_blocks_are_ciphertext(policy: Redundancy) -> None:
    marker = b"PLAINTEXT-MARKER"
    data = marker * (3 * seg_size(policy) // len(marker) + 7)
    spaces, blocks, _, _ = await store(policy, data)
    for s, b in zip(spaces, blocks, strict=True):
        assert marker not in s.contents()[b.key]


async def test_replicas_are_identical() -> None:
    spaces, blocks, _, _ = await store(RepPolicy(3), os.urandom(2 * SMALL_SEG + 9))
    stored = [s.contents()[b.key] for s, b in zip(spaces, blocks, strict=True)]
    assert stored[0] == stored[1] == stored[2]


def assert_nothing_left(spaces: list[MemorySpace]) -> None:
    for s in spaces:
        assert s.contents() == {}, s.name
        assert s.stats.open_writers == 0, s.name


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
async def test_space_failing_mid_write_leaves_nothing(policy: Redundancy) -> None:
    spaces, blocks = make_blocks(policy)
    spaces[-1].faults.fail_writes_after = 2
    data = os.urandom(6 * seg_size(policy))
    with pytest.raises(SpaceUnavailable):
        await write_blocks(chunked(data), policy, blocks, new_data_key(), segment_size=SMALL_SEG)
    assert_nothing_left(spaces)


async def test_commit_failure_deletes_committed_blocks() -> None:
    policy = EcPolicy(4, 6, 4096)
    spaces, blocks = make_blocks(policy)
    spaces[3].faults.fail_commit = True
    with pytest.raises(SpaceUnavailable):
        await write_blocks(chunked(os.urandom(50_000)), policy, blocks, new_data_key())
    assert_nothing_left(spaces)


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
async def test_failing_source_leaves_nothing(policy: Redundancy) -> None:
    class Boom(Exception):
        pass

    async def source() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield os.urandom(5000)
        raise Boom("client went away")

    spaces, blocks = make_blocks(policy)
    with pytest.raises(Boom):
        await write_blocks(source(), policy, blocks, new_data_key(), segment_size=SMALL_SEG)
    assert_nothing_left(spaces)


async def test_cancellation_leaves_nothing() -> None:
    policy = EcPolicy(4, 6, 4096)
    spaces, blocks = make_blocks(policy)
    writing = asyncio.Event()

    async def stall() -> None:  # every write hangs until the cancel
        writing.set()
        await asyncio.Event().wait()

    for s in spaces:
        s.faults.before_write = stall
    task = asyncio.create_task(
        write_blocks(chunked(os.urandom(400_000)), policy, blocks, new_data_key())
    )
    await writing.wait()
    assert any(s.stats.write_calls for s in spaces)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_left(spaces)


def committed_then_refused() -> tuple[list[MemorySpace], list[BlockRef]]:
    """rep(2) whose second copy's commit fails: the first, committed, must
    be deleted again."""
    spaces, blocks = make_blocks(RepPolicy(2))
    spaces[1].faults.fail_commit = True
    return spaces, blocks


async def test_a_delete_that_hangs_leaves_its_block_owed_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream, "DELETE_SECONDS", 0.2)
    spaces, blocks = committed_then_refused()

    async def hang() -> None:
        await asyncio.Event().wait()

    spaces[0].faults.before_delete = hang
    undeleted: list[BlockRef] = []
    async with asyncio.timeout(10):  # not the cloud's own minute
        with pytest.raises(SpaceUnavailable):
            await write_blocks(
                chunked(os.urandom(50_000)),
                RepPolicy(2),
                blocks,
                new_data_key(),
                undeleted=undeleted,
            )
    assert blocks[0] in undeleted
    assert list(spaces[0].contents()) == [blocks[0].key]  # still there, owed


async def test_cancelled_again_while_deleting_owes_every_committed_block() -> None:
    """The caller (a request's task) is cancelled again while the clean-up
    deletes: the deletes go on, but the caller hears only of blocks owed,
    so it owes every committed one rather than forget one whose delete then
    fails."""
    spaces, blocks = committed_then_refused()
    deleting, release = asyncio.Event(), asyncio.Event()

    async def gate() -> None:
        deleting.set()
        await release.wait()
        raise SpaceUnavailable("injected delete failure")

    spaces[0].faults.before_delete = gate
    undeleted: list[BlockRef] = []
    task = asyncio.create_task(
        write_blocks(
            chunked(os.urandom(50_000)),
            RepPolicy(2),
            blocks,
            new_data_key(),
            undeleted=undeleted,
        )
    )
    await deleting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert blocks[0] in undeleted
    release.set()  # the delete fails after all: the block stays, and is owed
    await asyncio.wait(list(stream._background))
    assert list(spaces[0].contents()) == [blocks[0].key]


async def test_block_count_and_indexes_are_checked() -> None:
    policy = EcPolicy(4, 6, 4096)
    _, blocks = make_blocks(policy)
    with pytest.raises(ValueError):
        await write_blocks(chunked(b"x"), policy, blocks[:5], new_data_key())
    bad = [*blocks[:5], BlockRef(7, blocks[5].space, "k", 1)]
    with pytest.raises(ValueError):
        await write_blocks(chunked(b"x"), policy, bad, new_data_key())
    # any order of correct indexes is accepted
    _spaces, blocks = make_blocks(policy)
    key = new_data_key()
    r = await write_blocks(chunked(b"y" * 40000), policy, blocks[::-1], key)
    layout = Layout(policy, r.size, r.segment_size, r.chunk_len, key)
    assert await read_all(layout, blocks) == b"y" * 40000


async def test_memory_stays_bounded() -> None:
    """The source is never read more than ~3 segments ahead of the writes."""
    policy = EcPolicy(2, 3, 4096)
    seg = policy.segment_size
    spaces, blocks = make_blocks(policy)
    produced = 0
    ahead: list[int] = []
    written = 0

    async def source() -> AsyncIterator[bytes]:
        nonlocal produced
        for _ in range(40):
            produced += 1000
            yield os.urandom(1000)

    orig_open = spaces[0].open_writer

    async def open_writer(key: str):  # type: ignore[no-untyped-def]
        w = await orig_open(key)
        orig_write = w.write

        async def write(data: bytes) -> None:
            nonlocal written
            ahead.append(produced - written)
            await orig_write(data)
            await asyncio.sleep(0.001)
            written += seg

        w.write = write  # type: ignore[method-assign]
        return w

    spaces[0].open_writer = open_writer  # type: ignore[method-assign]
    await write_blocks(source(), policy, blocks, new_data_key())
    assert ahead and max(ahead) <= 3 * seg + 1000


@pytest.mark.parametrize("policy", [RepPolicy(2), EcPolicy(2, 3, 4096)], ids=["rep", "ec"])
async def test_verify_block_reads_in_runs_and_names_the_bad_chunk(
    policy: Redundancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(7 * seg_size(policy) + 11)
    spaces, blocks, layout, result = await store(policy, data)
    c = result.chunk_len
    monkeypatch.setattr(reader, "READ_RUN", 3 * c)
    block = blocks[1]  # EC: a data fragment with its own nonce index
    spaces[1].stats.read_log = []
    await verify_block(layout, block)
    assert [off for _, off, _ in spaces[1].stats.read_log] == [0, 3 * c, 6 * c]
    spaces[1].corrupt(block.key, at=4 * c + 7)  # chunk 4, inside the second run
    with pytest.raises(BlockCorrupt, match=f"block {block.key} chunk 4 failed"):
        await verify_block(layout, block)


async def test_verify_block_detects_damage() -> None:
    policy = EcPolicy(4, 6, 4096)
    spaces, blocks, layout, _ = await store(policy, os.urandom(3 * policy.segment_size + 5))
    for b in blocks:
        await verify_block(layout, b)
    spaces[1].corrupt(blocks[1].key, at=len(spaces[1].contents()[blocks[1].key]) - 1)
    with pytest.raises(BlockCorrupt):
        await verify_block(layout, blocks[1])
    await spaces[2].put(blocks[2].key, spaces[2].contents()[blocks[2].key] + b"\0")
    with pytest.raises(BlockCorrupt):
        await verify_block(layout, blocks[2])
    await spaces[3].put(blocks[3].key, spaces[3].contents()[blocks[3].key][:-20])
    with pytest.raises(BlockCorrupt):
        await verify_block(layout, blocks[3])
    await spaces[4].delete(blocks[4].key)
    with pytest.raises(BlockNotFound):
        await verify_block(layout, blocks[4])
    # a fragment stored under the wrong index does not authenticate
    await spaces[0].put(blocks[0].key, spaces[5].contents()[blocks[5].key])
    with pytest.raises(BlockCorrupt):
        await verify_block(layout, blocks[0])
    # replicas verify with the shared nonce
    spaces, blocks, layout, _ = await store(RepPolicy(2), os.urandom(SMALL_SEG + 1))
    for b in blocks:
        await verify_block(layout, b)


async def test_abandoned_read_cancels_prefetch() -> None:
    data = os.urandom(8 * SMALL_SEG)
    spaces, blocks, layout, _ = await store(NonePolicy(), data)
    gen = read_range(layout, blocks, 0, None)
    first = await anext(gen)
    assert first == data[:SMALL_SEG]
    await gen.aclose()  # type: ignore[attr-defined]
    # The prefetches it cancelled end (they are the loop's only other tasks).
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=5)
    assert not any(not t.done() for t in others)
    reads = spaces[0].stats.reads
    assert reads <= 1 + READ_AHEAD < 8  # the rest of the 8 segments is never read


async def test_read_ahead_bounds_reads_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that stores what it reads (part copy, recode) asks for one
    read ahead: no more is held than that, and every byte still comes."""
    monkeypatch.setattr(reader, "READ_RUN", SMALL_SEG)  # a read per segment
    data = os.urandom(8 * SMALL_SEG)
    spaces, blocks, layout, _ = await store(NonePolicy(), data)
    for depth in (1, READ_AHEAD):
        spaces[0].stats.reads = 0
        gen = read_range(layout, blocks, 0, None, read_ahead=depth)
        assert await anext(gen) == data[:SMALL_SEG]
        for _ in range(3):  # let every read started run to its end
            await asyncio.sleep(0)
        assert spaces[0].stats.reads == 1 + depth
        rest = b"".join([chunk async for chunk in gen])
        assert data == data[:SMALL_SEG] + rest


async def test_read_ahead_below_one_is_refused() -> None:
    """No read ahead would read nothing at all: refused, not an empty body."""
    _, blocks, layout, _ = await store(NonePolicy(), b"x" * 100)
    with pytest.raises(ValueError, match="read_ahead"):
        read_range(layout, blocks, 0, None, read_ahead=0)


async def test_ec_ranged_read_falls_back_to_k_fragments() -> None:
    policy = EcPolicy(4, 6, 4096)
    data = os.urandom(3 * policy.segment_size)
    spaces, blocks, layout, _ = await store(policy, data)
    await spaces[2].delete(blocks[2].key)
    off = policy.segment_size + 2 * 4096 + 7  # inside fragment 2 of segment 1
    reports: list[int] = []
    got = await read_all(layout, blocks, off, 100, on_bad_block=lambda i, e: reports.append(i))
    assert got == data[off : off + 100]
    assert reports == [2]
    assert [s.stats.reads for s in spaces] == [1, 1, 1, 1, 1, 0]
    # a range held by an intact fragment does not notice the missing one
    for s in spaces:
        s.stats.reset()
    reports.clear()
    got = await read_all(layout, blocks, 10, 100, on_bad_block=lambda i, e: reports.append(i))
    assert got == data[10:110]
    assert reports == []
    assert [s.stats.reads for s in spaces] == [1, 0, 0, 0, 0, 0]


def _local_spaces(root: Path, tag: str) -> tuple[list[LocalSpace], list[BlockRef]]:
    spaces = []
    for i in range(2):
        (root / f"s{i}").mkdir()
        spaces.append(LocalSpace(root / f"s{i}"))
    return spaces, [BlockRef(i, s, f"objs/{tag}/{i}", 100 + i) for i, s in enumerate(spaces)]


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys local spaces read in a worker thread (not on the loop)."""
    keys: list[str] = []
    original = LocalSpace.read_blocking

    def counted(self: LocalSpace, key: str, offset: int = 0, length: int | None = None) -> bytes:
        keys.append(key)
        return original(self, key, offset, length)

    monkeypatch.setattr(LocalSpace, "read_blocking", counted)
    return keys


async def _stored(blocks: list[BlockRef], data: bytes, segment_size: int | None = None) -> Layout:
    key = new_data_key()
    result = await write_blocks(chunked(data), RepPolicy(2), blocks, key, segment_size=segment_size)
    return Layout(RepPolicy(2), result.size, result.segment_size, result.chunk_len, key)


async def test_hot_local_reads_skip_the_worker_thread_and_cold_ones_use_it(
    tmp_path: Path, threaded: list[str]
) -> None:
    """A segment whose block is in the page cache is read and opened on the
    loop; one that would wait for the disk goes to a worker thread, and so
    do scrub's checks (background work)."""
    require_loop_reads(tmp_path)
    spaces, blocks = _local_spaces(tmp_path, "ab")
    data = os.urandom(REPLICA_SEGMENT)  # one segment: one run of CACHED_RUN bytes
    layout = await _stored(blocks, data)
    assert layout.chunk_len == reader.CACHED_RUN
    assert await read_all(layout, blocks) == data
    assert threaded == []
    evict(spaces[0].root / blocks[0].key)
    assert await read_all(layout, blocks) == data
    assert threaded == [blocks[0].key]
    threaded.clear()
    assert await read_all(layout, blocks) == data  # the thread's read cached it again
    assert threaded == []
    await verify_block(layout, blocks[1])
    assert threaded == [blocks[1].key]


async def test_a_hot_corrupt_chunk_is_reported_and_the_next_replica_serves(
    tmp_path: Path, threaded: list[str]
) -> None:
    """Runs of several chunks, served from memory: the chunks before a bad
    one are kept, the rest comes from the next replica, all on the loop; a
    truncated replica (not all of the run in memory) goes to a thread,
    which names the truncation."""
    require_loop_reads(tmp_path)
    spaces, blocks = _local_spaces(tmp_path, "cd")
    data = os.urandom(300_000)
    layout = await _stored(blocks, data, segment_size=SMALL_SEG)  # 19 chunks, one run
    path = spaces[0].root / blocks[0].key
    damaged = bytearray(path.read_bytes())
    damaged[7 * layout.chunk_len + 100] ^= 1  # chunk 7
    path.write_bytes(damaged)  # through the page cache: the bad bytes are hot
    reports: list[tuple[int, Exception]] = []
    got = await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append((i, e)))
    assert got == data
    assert [(i, type(e)) for i, e in reports] == [(0, BlockCorrupt)]
    assert "chunk 7 " in str(reports[0][1])
    assert threaded == []
    path.write_bytes(bytes(damaged[:5000]))
    reports.clear()
    got = await read_all(layout, blocks, on_bad_block=lambda i, e: reports.append((i, e)))
    assert got == data
    assert [(i, type(e)) for i, e in reports] == [(0, BlockCorrupt)]
    assert "truncated" in str(reports[0][1])
    assert threaded == [blocks[0].key]


@pytest.mark.parametrize("policy", [RepPolicy(2), EcPolicy(2, 3, 4096)], ids=["rep2", "ec2-3"])
async def test_block_verifier_checks_a_block_fed_in_pieces(policy: Redundancy) -> None:
    data = os.urandom(3 * seg_size(policy) + 11)
    spaces, blocks, layout, _ = await store(policy, data)
    index = 1
    whole = spaces[index].contents()[blocks[index].key]

    async def check(stored: bytes, piece: int = 1000) -> None:
        verifier = stream.BlockVerifier(layout, index)
        for at in range(0, len(stored), piece):
            await verifier.feed(stored[at : at + piece])
        verifier.close()

    await check(whole)
    await check(whole, piece=len(whole))
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0x01
    for bad in (bytes(flipped), whole[:-1], whole + b"x", b""):
        with pytest.raises(BlockCorrupt):
            await check(bad)
    if isinstance(policy, EcPolicy):  # another fragment's bytes do not pass for this one
        with pytest.raises(BlockCorrupt):
            await check(spaces[0].contents()[blocks[0].key])


async def test_writes_that_end_while_their_spaces_are_checked_are_not_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writes past their patience make the upload check its spaces (the
    ``stalled`` hook). When the writes end while the check is still out (a
    cloud, or a proxy before it, that serves one request at a time answers
    the check only after them), the cloud has answered: the upload goes on,
    the check is dropped. Before, the upload waited for the check, which
    then gave it up (here: it never answers)."""
    monkeypatch.setattr(stream, "patience", lambda nbytes: 0.01)
    policy = NonePolicy()
    spaces, blocks = make_blocks(policy)
    release = asyncio.Event()

    async def held() -> None:
        await release.wait()

    spaces[0].faults.before_write = held
    checks: list[asyncio.Task[None] | None] = []

    async def stalled() -> None:
        checks.append(asyncio.current_task())
        release.set()  # the writes end while the check waits for its answer
        await asyncio.Event().wait()

    data = os.urandom(3 * SMALL_SEG)
    async with asyncio.timeout(10):  # the code before waited for the check
        r = await write_blocks(
            chunked(data), policy, blocks, new_data_key(), segment_size=SMALL_SEG, stalled=stalled
        )
    assert r.size == len(data)
    assert len(checks) == 1
    task = checks[0]
    assert task is not None
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert spaces[0].stats.commits == 1


async def test_writes_still_waiting_when_the_check_fails_are_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cloud that hangs: the check fails while the writes still wait, and
    the upload is given up at once with the check's error, nothing left."""
    monkeypatch.setattr(stream, "patience", lambda nbytes: 0.01)
    policy = RepPolicy(2)
    spaces, blocks = make_blocks(policy)
    hung = asyncio.Event()

    async def held() -> None:
        await hung.wait()

    spaces[1].faults.before_write = held

    async def stalled() -> None:
        raise SpaceUnavailable("user space 101 did not answer a write in time")

    with pytest.raises(SpaceUnavailable, match="did not answer a write in time"):
        async with asyncio.timeout(10):
            await write_blocks(
                chunked(os.urandom(3 * SMALL_SEG)),
                policy,
                blocks,
                new_data_key(),
                segment_size=SMALL_SEG,
                stalled=stalled,
            )
    assert_nothing_left(spaces)


async def test_writes_and_commits_wait_for_the_bytes_their_writers_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer that holds bytes after its write returned (OpenDAL's: a part
    being filled and two in flight, 24 MiB) sends them before a later write
    or its commit ends; their patience counts them (at most what was written
    so far). Before, each had the patience of its own chunk, and a cloud
    sending parts at a steady 2 MB/s was checked while it did (a check
    queued behind them then gave it up)."""
    held = 4 * SMALL_SEG

    class Holding(MemorySpace):
        async def open_writer(self, key: str) -> Any:
            w = await super().open_writer(key)
            setattr(w, "held", held)  # noqa: B010 (MemoryWriter has none)
            return w

    asked: list[int] = []

    def patience(nbytes: int) -> float:
        asked.append(nbytes)
        return 60.0

    async def stalled() -> None:
        raise AssertionError("no write here waits its patience")

    monkeypatch.setattr(stream, "patience", patience)
    policy = NonePolicy()
    space = Holding("s0")
    r = await write_blocks(
        chunked(os.urandom(10 * SMALL_SEG)),
        policy,
        [BlockRef(0, space, "objs/abc/0", 100)],
        new_data_key(),
        segment_size=SMALL_SEG,
        stalled=stalled,
    )
    chunk = r.chunk_len
    opening, writes, commit = asked[0], asked[1:-1], asked[-1]
    assert opening == chunk
    assert writes == [min(i * chunk, chunk + held) for i in range(1, 11)]
    assert commit == chunk + held


def test_an_opendal_writer_holds_a_part_being_filled_and_those_in_flight() -> None:
    from jointcloud.spaces.opendal_space import OpenDALSpace, OpenDALWriter

    space = OpenDALSpace("memory", write_chunk=8 << 20, write_concurrency=2)
    assert OpenDALWriter(space, "k", object()).held == 24 << 20
