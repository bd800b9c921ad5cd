"""Drain: move every block off the user spaces their owners marked ``Draining``.

A block's stored bytes do not depend on the space that holds them (chunks
are sealed with the layout's key and the block index), so a move is a raw
copy, streamed, each chunk authenticated on its way (a corrupt block is not
moved: repair rebuilds it). Per block:

1. record the intent: a ``pending`` layout whose one block is the copy, so a
   crash mid-copy leaves rows GC finds (and removes after its delay) rather
   than an untracked file;
2. stream the block to a space of the same owner chosen by the placement
   rule (``core.placement``: ``Normal``, no other block of that layout), the
   one that received fewest copies in this pass first;
3. one transaction: compare-and-swap the layout's block from the old
   location to the copy (``layouts.replace_block``) and drop the intent
   rows. If the block moved meanwhile (a repair or another drain won), the
   copy is deleted instead;
   Before that, the copy is looked up (``stat``): a target that acknowledged
   the write but holds nothing, or fewer bytes, fails the move and the block
   stays where it is;
4. delete the old key, owed (``meta.strays``) in the transaction of step 3
   and forgotten once deleted, so a crash between the two leaves GC a debt.

A block that cannot be read from the draining space, or fails its check, is
queued for repair, which rebuilds it from the layout's other blocks. Once a draining space
holds no block, ``userSpace/delete`` succeeds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog

from jointcloud.core import renewal
from jointcloud.core.blockstore import BlockStore
from jointcloud.core.models import BlockRecord, LayoutRecord, SpaceState, UserSpace
from jointcloud.core.placement import candidates, new_block_key
from jointcloud.errors import BlockCorrupt, DomainError, SpaceError
from jointcloud.meta import accounts, layouts, repairs, spacestate, strays
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.redundancy.stream import BlockVerifier
from jointcloud.spaces.base import Space, unlike_written

log = structlog.get_logger(__name__)

DRAIN_BATCH = 256  # blocks looked at per pass
# The blocks left on the draining spaces are counted up to this many, twice
# a pass: a count of them all made a drain of N blocks read N²/256 rows (a
# review of jobs with a large backlog); past it a pass says "over 100000".
COUNTED = 100_000
COPY_CONCURRENCY = 4  # layouts moved at once


class SourceUnreadable(Exception):
    """Reading the block from the draining space failed."""


@dataclass
class DrainReport:
    spaces: int = 0  # draining spaces
    total: int = 0  # blocks on them when the pass started (up to COUNTED + 1)
    moved: int = 0
    failed: int = 0
    remaining: int = 0  # up to COUNTED + 1: over COUNTED
    repair_queued: int = 0
    problems: list[str] = field(default_factory=list)
    # The next pass resumes after this layout (0: from the first one again).
    cursor: int = 0

    def summary(self) -> str:
        if not self.spaces:
            return "no user space is draining"
        n = self.spaces
        text = (
            f"moved {self.moved} block{'s' if self.moved != 1 else ''} off {n} draining "
            f"space{'s' if n != 1 else ''}, {_many(self.remaining)} left"
        )
        if self.failed:
            text += f"; {self.failed} failed"
            if self.repair_queued:
                text += f" ({self.repair_queued} layouts queued for repair)"
            text += ": " + "; ".join(self.problems[:3])
        return text


def _many(blocks: int) -> str:
    return f"over {COUNTED}" if blocks > COUNTED else str(blocks)


async def _copy(src: Space, key: str, dst: Space, new_key: str, verifier: BlockVerifier) -> int:
    """Stream ``key`` of ``src`` into ``new_key`` of ``dst``; the copy is
    committed only when every byte the source holds arrived, authenticated
    by ``verifier`` (a corrupt block moved was one that looked moved while
    the layout had lost a block, found by review)."""
    try:
        size = (await src.stat(key)).size
    except SpaceError as exc:
        raise SourceUnreadable(exc.message) from exc
    writer = await dst.open_writer(new_key)
    copied = 0
    try:
        stream = src.read_stream(key)
        while True:
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                break
            except SpaceError as exc:
                raise SourceUnreadable(exc.message) from exc
            with _corrupt_is_unreadable():
                await verifier.feed(chunk)
            await writer.write(chunk)
            copied += len(chunk)
        if copied != size:
            raise SourceUnreadable(f"read {copied} of its {size} bytes")
        with _corrupt_is_unreadable():
            verifier.close()
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    return copied


async def _check_stored(space: Space, key: str, size: int, where: UserSpace) -> None:
    """The copy is there before the old block is let go: a cloud that
    acknowledged a write it did not store (or stored short) would otherwise
    cost the layout that block, silently (found by review)."""
    got = await unlike_written(space, key, size)
    if got is not None:
        raise SpaceError(
            f"user space {where.user_space_id} acknowledged the copy ({size} bytes) "
            f"but holds {got} under its key: the block stays where it is"
        )


@contextlib.contextmanager
def _corrupt_is_unreadable() -> Iterator[None]:
    try:
        yield
    except BlockCorrupt as exc:
        raise SourceUnreadable(exc.message) from exc


class _Pass:
    def __init__(self, db: Database, store: BlockStore, report: DrainReport) -> None:
        self.db = db
        self.store = store
        self.pool = store.pool
        self.report = report
        self.spaces_of: dict[int, list[UserSpace]] = {}
        self.load: collections.Counter[int] = collections.Counter()  # copies per target
        self.repair: set[int] = set()

    def target(self, owner: int, holders: set[int]) -> UserSpace | None:
        free = candidates(self.spaces_of.get(owner, []), exclude=holders, load=self.load)
        if not free:
            return None
        best = free[0]
        self.load[best.user_space_id] += 1
        return best

    def fail(self, rec: LayoutRecord, block: BlockRecord, why: str) -> None:
        self.report.failed += 1
        self.report.problems.append(
            f"block {block.index} of layout {rec.layout_id} on space {block.user_space_id}: {why}"
        )
        log.warning(
            "drain: block not moved",
            layout=rec.layout_id,
            block=block.index,
            space=block.user_space_id,
            error=why,
        )

    async def move_layout(
        self, rec: LayoutRecord, moving: list[BlockRecord], owner_of: dict[int, int]
    ) -> None:
        holders = {b.user_space_id for b in rec.blocks}
        for block in moving:
            dst = self.target(owner_of[block.user_space_id], holders)
            if dst is None:
                self.fail(rec, block, "no Normal user space of its owner is free for it")
                continue
            try:
                moved = await self.move_block(rec, block, dst)
            except SourceUnreadable as exc:
                self.fail(rec, block, f"cannot read it: {exc}")
                self.repair.add(rec.layout_id)
                continue
            except DomainError as exc:
                self.fail(rec, block, exc.message)
                continue
            except Exception as exc:
                self.fail(rec, block, f"{type(exc).__name__}: {exc}")
                continue
            if moved:
                holders.discard(block.user_space_id)
                holders.add(dst.user_space_id)
                self.report.moved += 1

    async def move_block(self, rec: LayoutRecord, block: BlockRecord, dst: UserSpace) -> bool:
        try:
            src = await self.pool.get_by_id(block.user_space_id)
        except SpaceError as exc:
            raise SourceUnreadable(exc.message) from exc
        target = await self.pool.get(dst)
        new_key = new_block_key(block.index)
        # Renewed while the copy runs, as an upload's: a copy that outlasts
        # GC's delay keeps its intent (and its file) to the swap.
        async with self.store.renewals.held():
            return await self._move(rec, block, dst, src, target, new_key)

    async def _move(
        self,
        rec: LayoutRecord,
        block: BlockRecord,
        dst: UserSpace,
        src: Space,
        target: Space,
        new_key: str,
    ) -> bool:
        async with self.db.write() as conn:
            await spacestate.hold_locations(conn, [dst])
            intent = await layouts.create_pending(
                conn, rec.policy, rec.wrapped_key, [(block.index, dst.user_space_id, new_key)]
            )
        renewal.join([intent], [(target, new_key)])
        try:
            verifier = BlockVerifier(self.store.layout(rec), block.index)
            copied = await _copy(src, block.key, target, new_key, verifier)
            await _check_stored(target, new_key, copied, dst)
            async with self.db.write() as conn:
                old = (block.user_space_id, block.key)
                swapped = await layouts.hold_for_swap(
                    conn, rec.layout_id, intent
                ) and await layouts.replace_block(
                    conn, rec.layout_id, block.index, old, (dst.user_space_id, new_key)
                )
                if swapped:
                    await layouts.delete_layouts(conn, [intent])
                    # Owed with the swap that lets it go: a process that
                    # dies (or a pass cancelled) before the delete below
                    # leaves GC a debt, not an untracked file.
                    await strays.owe(conn, [old], now())
        except BaseException:
            await asyncio.shield(self._drop(intent, target, new_key))
            raise
        if not swapped:  # moved or gone meanwhile: ours is not needed
            await self._drop(intent, target, new_key)
            return False
        await self.store.delete_owed([old])
        return True

    async def _drop(self, intent: int, space: Space, key: str) -> None:
        """Delete an unneeded copy, then its intent rows; if the delete fails the
        rows stay and GC retries after its delay."""
        try:
            await space.delete(key)
        except Exception as exc:
            log.warning("drain: copy not deleted; GC retries", key=key, error=str(exc))
            return
        async with self.db.write() as conn:
            await layouts.delete_layouts(conn, [intent])


async def drain_once(
    db: Database,
    store: BlockStore,
    limit: int = DRAIN_BATCH,
    progress: Callable[[int, int, str], None] | None = None,
    *,
    after_layout: int = 0,
) -> DrainReport:
    """Move up to ``limit`` blocks off draining spaces, of layouts after
    ``after_layout`` (from the first one again when none is left there);
    ``DrainReport.cursor`` is where the next pass resumes. Always starting
    from the first layout, blocks that cannot move (nowhere to go, or
    unreadable) filled every batch once there were ``limit`` of them, and
    the blocks after them were never moved (found by review)."""
    report = DrainReport()
    async with db.read() as conn:
        draining = {
            s.user_space_id: s for s in await spacestate.list_all(conn, [SpaceState.DRAINING])
        }
        if not draining:
            return report
        report.spaces = len(draining)
        report.total = await spacestate.count_live_blocks(conn, list(draining), COUNTED + 1)
        batch = await layouts.blocks_in_spaces(conn, list(draining), limit, after_layout)
        if not batch and after_layout:
            batch = await layouts.blocks_in_spaces(conn, list(draining), limit)
        if len(batch) == limit:
            # A full batch may end inside a layout: that one is left whole
            # to the next pass, unless it is the only one.
            report.cursor = batch[-1][0]
            if batch[0][0] != report.cursor:
                batch = [(lid, b) for lid, b in batch if lid != report.cursor]
                report.cursor = batch[-1][0]
        records = await layouts.load(conn, {lid for lid, _ in batch})
        work = _Pass(db, store, report)
        for owner in {s.user_id for s in draining.values()}:
            work.spaces_of[owner] = await accounts.list_spaces(conn, owner)
    owner_of = {sid: s.user_id for sid, s in draining.items()}
    by_layout: dict[int, list[BlockRecord]] = {}
    for layout_id, block in batch:
        by_layout.setdefault(layout_id, []).append(block)

    limit_sem = asyncio.Semaphore(COPY_CONCURRENCY)

    async def one(layout_id: int, moving: list[BlockRecord]) -> None:
        rec = records.get(layout_id)
        if rec is None:  # collected meanwhile
            return
        async with limit_sem:
            await work.move_layout(rec, moving, owner_of)
        if progress is not None:
            progress(
                report.moved + report.failed,
                report.total,
                f"moved {report.moved} of {_many(report.total)} blocks",
            )

    await asyncio.gather(*(one(lid, blocks) for lid, blocks in by_layout.items()))
    async with db.write() as conn:
        if work.repair:
            report.repair_queued = await repairs.enqueue(
                conn, work.repair, "drain: block unreadable on a draining space"
            )
        report.remaining = await spacestate.count_live_blocks(conn, list(draining), COUNTED + 1)
    return report
