"""Reads that do not wait on a block whose cloud hangs (redundancy/reader.py):
once a read has waited its patience, the next block is asked as well and
the first answer is taken; the slow block is asked last for the rest of
that read, and is not reported as bad."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from jointcloud.errors import SpaceUnavailable
from jointcloud.redundancy import reader
from jointcloud.redundancy.cipher import new_data_key
from jointcloud.redundancy.policy import EcPolicy, RepPolicy
from jointcloud.redundancy.stream import BlockRef, Layout, read_range, write_blocks
from jointcloud.spaces.local import LocalSpace
from support.memblocks import SMALL_SEG as SEG
from support.memblocks import chunked, stored

# Far longer than any read here takes when it is not kept waiting: a read
# that waits on a hung block at all fails the test.
BOUND = 20.0


@pytest.fixture(autouse=True)
def impatient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "HEDGE_SECONDS", 0.05)
    monkeypatch.setattr(reader, "HEDGE_RATE", 10**12)
    monkeypatch.setattr(reader, "READ_RUN", SEG)  # a replica read per segment


def hung(asked: list[int]) -> Callable[[], Awaitable[None]]:
    """A cloud that takes the request and never answers."""

    async def hang() -> None:
        asked.append(1)
        await asyncio.Event().wait()

    return hang


async def read_all(
    layout: Layout,
    blocks: list[BlockRef],
    reports: list[tuple[int, Exception]],
    *args: int,
    slow: list[int] | None = None,
) -> bytes:
    offset, length = (args[0], args[1]) if args else (0, None)
    chunks = read_range(
        layout,
        blocks,
        offset,
        length,
        on_bad_block=lambda i, e: reports.append((i, e)),
        on_slow_block=None if slow is None else slow.append,
    )
    async with asyncio.timeout(BOUND):
        return b"".join([c async for c in chunks])


async def nothing_left_running() -> None:
    """The asks that lost were cancelled: no task of the read is left."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=5)
    assert all(t.done() for t in others)


async def test_a_hung_replica_is_outrun_and_asked_last_from_then_on() -> None:
    data = os.urandom(8 * SEG)
    spaces, blocks, layout = await stored(RepPolicy(3), data)
    asked: list[int] = []
    spaces[0].faults.before_read = hung(asked)
    reports: list[tuple[int, Exception]] = []
    slow: list[int] = []
    assert await read_all(layout, blocks, reports, slow=slow) == data
    assert reports == []  # slow is not bad: its bytes are not known to be wrong
    assert slow == [0]  # said once (a health probe is worth asking for)
    # only the reads started before the first was outrun asked it
    assert 1 <= len(asked) <= reader.READ_AHEAD
    assert spaces[1].stats.reads == 8 and spaces[2].stats.reads == 0
    await nothing_left_running()


async def test_the_first_answer_wins_even_from_the_block_asked_first() -> None:
    """A slow replica that answers before the one asked after it is taken."""
    data = os.urandom(SEG)
    spaces, blocks, layout = await stored(RepPolicy(2), data)
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()

    async def hang_but_release_the_first() -> None:
        gate.set()
        await asyncio.Event().wait()

    spaces[0].faults.before_read = slow
    spaces[1].faults.before_read = hang_but_release_the_first
    reports: list[tuple[int, Exception]] = []
    assert await read_all(layout, blocks, reports) == data
    assert reports == []
    assert spaces[0].stats.reads == 1
    await nothing_left_running()


async def test_a_failing_replica_is_reported_while_a_hung_one_is_outrun() -> None:
    data = os.urandom(3 * SEG)
    spaces, blocks, layout = await stored(RepPolicy(3), data)
    spaces[0].faults.before_read = hung([])
    spaces[1].faults.fail_reads = True
    reports: list[tuple[int, Exception]] = []
    assert await read_all(layout, blocks, reports) == data
    assert [(i, type(e)) for i, e in reports] == [(1, SpaceUnavailable)]
    await nothing_left_running()


async def test_a_replica_failing_its_check_does_not_cancel_a_slower_one_at_work() -> None:
    """A slow replica is outrun by one whose first chunk fails its check:
    the read waits for the slow one's answer rather than cancelling it and
    asking it again from the start (found by review; the old code asked
    the slow replica twice)."""
    data = os.urandom(SEG)
    spaces, blocks, layout = await stored(RepPolicy(2), data)
    spaces[1].corrupt(blocks[1].key, at=10)  # chunk 0 of replica 1
    reported = asyncio.Event()
    asks = 0

    async def slow_until_the_other_failed() -> None:
        nonlocal asks
        asks += 1
        await reported.wait()

    spaces[0].faults.before_read = slow_until_the_other_failed
    reports: list[tuple[int, Exception]] = []

    def on_bad_block(index: int, error: Exception) -> None:
        reports.append((index, error))
        reported.set()

    chunks = read_range(layout, blocks, 0, None, on_bad_block=on_bad_block)
    async with asyncio.timeout(BOUND):
        assert b"".join([c async for c in chunks]) == data
    assert [i for i, _ in reports] == [1]
    assert asks == 1
    await nothing_left_running()


async def test_a_run_is_served_by_the_replica_that_failed_last_then_the_others() -> None:
    """Three replicas each bad in a different chunk of one run, all asked
    at once (the first two outrun), answering together: every chunk has a
    good copy, and the read takes it, each replica's failure reported once
    (the old code took the first answer of the batch and dropped the
    others, so replica 1's bad chunk was never reported for repair)."""
    data = os.urandom(4 * SEG)
    spaces, blocks, layout = await stored(RepPolicy(3), data)
    reader_run = 4 * SEG
    chunk = layout.chunk_len
    for i, bad in enumerate((0, 1, 3)):
        spaces[i].corrupt(blocks[i].key, at=bad * chunk + 5)
    gate = asyncio.Event()
    waiting = 0

    async def answer_together() -> None:
        nonlocal waiting
        waiting += 1
        if waiting == 3:
            gate.set()
        await gate.wait()

    for space in spaces:
        space.faults.before_read = answer_together
    reports: list[tuple[int, Exception]] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reader, "READ_RUN", reader_run)
        assert await read_all(layout, blocks, reports) == data
    assert sorted(i for i, _ in reports) == [0, 1, 2]
    await nothing_left_running()


async def test_a_partial_answer_is_not_held_for_a_hung_replica() -> None:
    """A hung replica outrun by two that fail their checks in different
    chunks of a run: the longer partial answer is taken once the hung one
    has had its patience, and the rest comes from the replica that failed
    earlier (found by review: the read waited on the hung replica for ever,
    though every chunk had a good copy)."""
    data = os.urandom(4 * SEG)
    spaces, blocks, layout = await stored(RepPolicy(3), data)
    chunk = layout.chunk_len
    spaces[0].faults.before_read = hung([])
    spaces[1].corrupt(blocks[1].key, at=2 * chunk + 5)
    spaces[2].corrupt(blocks[2].key, at=chunk + 5)
    reports: list[tuple[int, Exception]] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reader, "READ_RUN", 4 * SEG)
        assert await read_all(layout, blocks, reports) == data
    assert sorted(i for i, _ in reports) == [1, 2]
    await nothing_left_running()


async def test_a_partial_answer_waits_for_the_only_replica_that_can_serve_the_rest() -> None:
    """A slow replica, still at work many patiences after the other's
    answer was cut short by a bad first chunk, is the only one that can
    serve the run: it is waited for, not cancelled and asked again."""
    data = os.urandom(SEG)
    spaces, blocks, layout = await stored(RepPolicy(2), data)
    spaces[1].corrupt(blocks[1].key, at=10)
    asks = 0

    async def slow() -> None:
        nonlocal asks
        asks += 1
        await asyncio.sleep(20 * reader.HEDGE_SECONDS)

    spaces[0].faults.before_read = slow
    reports: list[tuple[int, Exception]] = []
    assert await read_all(layout, blocks, reports) == data
    assert [i for i, _ in reports] == [1]
    assert asks == 1
    await nothing_left_running()


@pytest.mark.parametrize("hung_index", [0, 2, 4])  # data fragments 0 and 2, parity 4
async def test_ec_reads_around_a_hung_fragment(hung_index: int) -> None:
    policy = EcPolicy(4, 6, 4096)
    data = os.urandom(3 * policy.segment_size + 100)
    spaces, blocks, layout = await stored(policy, data)
    asked: list[int] = []
    spaces[hung_index].faults.before_read = hung(asked)
    reports: list[tuple[int, Exception]] = []
    assert await read_all(layout, blocks, reports) == data
    # a range held by fragment 2 of segment 1 alone
    off = policy.segment_size + 2 * 4096 + 7
    assert await read_all(layout, blocks, reports, off, 100) == data[off : off + 100]
    assert reports == []
    if hung_index >= 4:
        assert asked == []  # parity is not asked while the data fragments answer
    await nothing_left_running()


async def test_ec_with_fewer_than_k_answering_fragments_waits_for_the_slow_ones() -> None:
    """Hedging never gives up on a slow fragment the read still needs: with
    two of three fragments slow (k = 2), the read takes them when they
    answer."""
    policy = EcPolicy(2, 3, 4096)
    data = os.urandom(2 * policy.segment_size)
    spaces, blocks, layout = await stored(policy, data)
    gate = asyncio.Event()

    async def slow() -> None:
        await gate.wait()

    spaces[0].faults.before_read = slow
    spaces[1].faults.before_read = slow
    parity_asked = asyncio.Event()

    async def ask_parity() -> None:
        parity_asked.set()

    spaces[2].faults.before_read = ask_parity  # asked when the others were slow
    spaces[2].faults.fail_reads = True  # and it fails
    reports: list[tuple[int, Exception]] = []
    reading = asyncio.ensure_future(read_all(layout, blocks, reports))
    async with asyncio.timeout(BOUND):
        await parity_asked.wait()
    assert not reading.done()
    gate.set()
    assert await reading == data
    assert [i for i, _ in reports] == [2]
    await nothing_left_running()


@pytest.mark.parametrize("stagger", [0.0, 0.1], ids=["together", "staggered"])
@pytest.mark.parametrize(
    ("policy", "needed"), [(EcPolicy(4, 6, 4096), 4), (RepPolicy(3), 1)], ids=["ec4-6", "rep3"]
)
async def test_when_every_cloud_is_slow_the_read_stops_asking_them_all(
    monkeypatch: pytest.MonkeyPatch, policy: EcPolicy | RepPolicy, needed: int, stagger: float
) -> None:
    """Every cloud answers, each after more than the read's patience (a
    throttled link): the first segments (those read ahead at once) ask
    them all, the later ones only as many as they need, since asking the
    others too would not be faster. The old code asked every block of
    every segment (36 and 18 asks here, against 30 and 12). ``staggered``:
    the clouds answer one after the other, so a later segment hears from
    the blocks it asked one at a time; an EC read then asked the others
    at each answer (36 asks; under load, the clouds answering together
    sometimes did the same: a flaky 31)."""
    monkeypatch.setattr(reader, "SLOW_HEDGE_FACTOR", 100)  # 5 s: never reached here
    size = policy.segment_size if isinstance(policy, EcPolicy) else SEG
    segments, ahead = 6, reader.READ_AHEAD
    data = os.urandom(segments * size)
    spaces, blocks, layout = await stored(policy, data)
    asked = 0

    def throttled(latency: float) -> Callable[[], Awaitable[None]]:
        async def wait() -> None:
            nonlocal asked
            asked += 1
            await asyncio.sleep(latency)  # 20 patiences or more, under a fifth of the long wait

        return wait

    for i, space in enumerate(spaces):
        space.faults.before_read = throttled(1.0 + stagger * i)
    assert await read_all(layout, blocks, []) == data
    assert asked <= ahead * policy.width + (segments - ahead) * needed
    await nothing_left_running()


async def test_slow_replicas_that_answer_are_asked_before_a_hung_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One cloud hangs, the two others are slow but answer (slower than even
    the longer wait of every-cloud-slow): once all three have been outrun,
    the slow ones that answered are asked before the hung one, so the hung
    one is asked only by the first reads, before it was known."""
    monkeypatch.setattr(reader, "SLOW_HEDGE_FACTOR", 20)  # 1 s
    data = os.urandom(9 * SEG)
    spaces, blocks, layout = await stored(RepPolicy(3), data)
    asked: list[int] = []
    spaces[0].faults.before_read = hung(asked)

    async def throttled() -> None:
        # between one and two of the longer waits, with half a second of
        # margin either way on a loaded machine
        await asyncio.sleep(1.5)

    spaces[1].faults.before_read = spaces[2].faults.before_read = throttled
    assert await read_all(layout, blocks, []) == data
    assert len(asked) <= reader.READ_AHEAD  # the reads that started together
    await nothing_left_running()


async def test_a_local_mount_that_hangs_holds_only_its_own_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Local reads ran in the CPU pool (4 threads here): reads hung on a
    mount (NFS, FUSE) kept those threads, so the reads that outran them,
    and every upload's hashing and sealing, waited for good (found by
    review). A Local space's blocking calls run in its own threads now."""
    roots = [tmp_path / "nas", tmp_path / "disk"]
    for root in roots:
        root.mkdir()
    writing = [LocalSpace(root) for root in roots]
    refs = [BlockRef(i, s, f"blocks/ab/x.{i}", 100 + i) for i, s in enumerate(writing)]
    data = os.urandom(3 * SEG)
    key = new_data_key()
    r = await write_blocks(chunked(data), RepPolicy(2), refs, key, segment_size=SEG)
    layout = Layout(RepPolicy(2), r.size, r.segment_size, r.chunk_len, key)
    reading = [LocalSpace(root) for root in roots]  # nothing of them in memory yet
    blocks = [BlockRef(b.index, s, b.key, b.space_id) for b, s in zip(refs, reading, strict=True)]
    released = threading.Event()
    real = LocalSpace.read_blocking

    def read_blocking(
        self: LocalSpace, key: str, offset: int = 0, length: int | None = None
    ) -> bytes:
        if self is reading[0]:
            released.wait()  # the mount hangs
        return real(self, key, offset, length)

    monkeypatch.setattr(LocalSpace, "read_blocking", read_blocking)
    try:
        async with asyncio.timeout(BOUND):
            reads = [read_all(layout, blocks, []) for _ in range(12)]
            assert await asyncio.gather(*reads) == [data] * 12
    finally:
        released.set()
        for space in (*writing, *reading):
            await space.close()
