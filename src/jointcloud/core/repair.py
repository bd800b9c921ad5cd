"""Repair: restore a layout's full redundancy by rebuilding its bad blocks.

``inspect`` checks every block of a layout (size and every chunk's GCM tag);
a block is ``ok``, ``missing``, ``corrupt`` or ``unreachable``. A block on a
user space whose state is ``Unavailable`` counts as unreachable without being
touched.

``repair`` rebuilds every block that is not ok:

1. targets: each bad block goes to one of the owner's spaces chosen by the
   placement rule (``core.placement``: ``Normal``, holding no block of the
   layout, lowest latency first). When none is free, a block that is missing
   or corrupt on a space that is itself ``Normal`` is rewritten in the same
   space under a new key (the old key is deleted after the swap, so the space
   still holds one block of the layout). A block on an unreachable space
   never stays there.
2. intent: the planned new block keys are recorded as a ``pending`` layout in
   one transaction before any byte is written, so a crash mid-repair leaves
   rows that GC cleans up rather than untracked blocks.
3. ``rebuild_blocks`` streams the new blocks from the surviving ones (the
   corrupt ones too: their good chunks count), all or nothing.
4. one write transaction swaps each block row with a compare-and-swap on its
   old location (a concurrent repair, drain or GC wins: our new block is
   deleted) and drops the intent rows.
5. the old block is deleted; when its space is Unavailable, or the delete
   fails, it is owed (``meta.strays``) and GC deletes it once the space
   answers.

Degraded reads report skipped blocks through ``note_bad_block`` (a sync hook
on the read path): reports are coalesced and queued from a background task,
so they never fail or slow the read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from jointcloud.core import renewal
from jointcloud.core.blockstore import BlockStore
from jointcloud.core.models import INLINE_KEY, LayoutRecord, SpaceState, UserSpace
from jointcloud.core.placement import candidates, describe, new_block_key
from jointcloud.core.userspaces import SpacePool
from jointcloud.errors import (
    BlockCorrupt,
    BlockNotFound,
    DomainError,
    NotEnoughBlocks,
    SpaceError,
)
from jointcloud.meta import accounts, layouts, repairs, spacestate, strays, sweeps
from jointcloud.meta.db import Database
from jointcloud.meta.repairs import RepairItem as RepairItem  # the queue's rows, for jobs/
from jointcloud.meta.rows import now
from jointcloud.redundancy.policy import Redundancy
from jointcloud.redundancy.rebuild import rebuild_blocks
from jointcloud.redundancy.stream import (
    BlockRef,
    Layout,
    decode_whole,
    stored_block_size,
    verify_block,
)
from jointcloud.spaces.base import unlike_written

log = structlog.get_logger(__name__)


class BlockState(StrEnum):
    """What ``inspect`` found of one block."""

    OK = "ok"
    MISSING = "missing"
    CORRUPT = "corrupt"
    UNREACHABLE = "unreachable"


class RepairStatus(StrEnum):
    """The outcome of one repair; the first three take the layout off the queue."""

    REPAIRED = "repaired"
    HEALTHY = "healthy"
    GONE = "gone"
    NO_SPACES = "no_spaces"  # too few usable spaces for the new blocks
    UNRECOVERABLE = "unrecoverable"  # fewer intact blocks than the policy needs
    FAILED = "failed"  # anything else (a space failed mid-rebuild, a lost race)


# The members under their short names, as scrub, the repair job and tests use them.
OK = BlockState.OK
MISSING = BlockState.MISSING
CORRUPT = BlockState.CORRUPT
UNREACHABLE = BlockState.UNREACHABLE
REPAIRED = RepairStatus.REPAIRED
HEALTHY = RepairStatus.HEALTHY
GONE = RepairStatus.GONE
NO_SPACES = RepairStatus.NO_SPACES
UNRECOVERABLE = RepairStatus.UNRECOVERABLE
FAILED = RepairStatus.FAILED

# A layout reported by a degraded read is not queued again for this long.
REPORT_QUIET = 10.0

Throttle = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class BlockHealth:
    index: int
    space_id: int
    key: str
    state: BlockState
    detail: str = ""


@dataclass(frozen=True)
class LayoutHealth:
    layout_id: int
    policy: Redundancy | None  # None: the layout no longer exists (or is not live)
    blocks: tuple[BlockHealth, ...] = ()
    status: str | None = None  # live | released | pending | None

    @property
    def exists(self) -> bool:
        return self.policy is not None

    @property
    def bad(self) -> tuple[BlockHealth, ...]:
        return tuple(b for b in self.blocks if b.state != OK)

    @property
    def intact(self) -> int:
        return sum(1 for b in self.blocks if b.state == OK)

    @property
    def healthy(self) -> bool:
        return self.policy is not None and not self.bad

    def summary(self) -> str:
        if self.policy is None:
            return f"layout {self.layout_id} does not exist"
        counts: dict[str, int] = {}
        for b in self.blocks:
            counts[b.state] = counts.get(b.state, 0) + 1
        parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        return f"layout {self.layout_id} ({describe(self.policy)}): {parts}"


@dataclass(frozen=True)
class BlockMove:
    index: int
    old_space: int
    old_key: str
    new_space: int
    new_key: str


@dataclass(frozen=True)
class RepairOutcome:
    layout_id: int
    status: RepairStatus
    message: str
    repaired: tuple[int, ...] = ()  # block indexes rebuilt and swapped in
    moves: tuple[BlockMove, ...] = ()

    @property
    def finished(self) -> bool:
        """Nothing left to do for this layout (it leaves the repair queue)."""
        return self.status in (REPAIRED, HEALTHY, GONE)


@dataclass
class _Examined:
    health: LayoutHealth
    record: LayoutRecord | None = None
    layout: Layout | None = None
    refs: dict[int, BlockRef] = field(default_factory=dict)  # by block index
    spaces: dict[int, UserSpace] = field(default_factory=dict)  # the owner's, by id


async def check_block(layout: Layout, ref: BlockRef) -> tuple[BlockState, str]:
    """(state, detail) of one block: stat, then every chunk's tag."""
    try:
        await verify_block(layout, ref)
    except BlockNotFound as exc:
        return MISSING, exc.message
    except BlockCorrupt as exc:
        return CORRUPT, exc.message
    except SpaceError as exc:
        return UNREACHABLE, exc.message
    return OK, ""


class RepairService:
    def __init__(self, db: Database, store: BlockStore, pool: SpacePool) -> None:
        self.db = db
        self.store = store
        self.pool = pool
        self._reported: dict[int, str] = {}  # layout id -> reason, not queued yet
        self._quiet_until: dict[int, float] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    # --- queue ------------------------------------------------------------

    async def enqueue(self, layout_ids: Iterable[int], reason: str) -> int:
        """Queue layouts for repair (idempotent); returns how many were added."""
        async with self.db.write() as conn:
            return await repairs.enqueue(conn, layout_ids, reason)

    async def queued(self) -> int:
        async with self.db.read() as conn:
            return await repairs.count(conn)

    async def due(self, limit: int) -> list[RepairItem]:
        """Up to ``limit`` queued layouts whose next attempt has come, the
        longest waiting first."""
        async with self.db.read() as conn:
            return await repairs.due(conn, limit)

    async def settle(self, item: RepairItem, outcome: RepairOutcome) -> None:
        """After an attempt: a finished layout leaves the queue; any other is
        tried again after a back-off that grows with its attempts."""
        async with self.db.write() as conn:
            if outcome.finished:
                await repairs.done(conn, item.layout_id)
            else:
                await repairs.failed(conn, item.layout_id, outcome.message, item.attempts)

    def note_bad_block(self, layout_id: int, index: int, error: Exception) -> None:
        """``BlockStore.on_bad_block``: called on the read path, never raises."""
        try:
            if self._closed:
                return
            now = time.monotonic()
            if self._quiet_until.get(layout_id, 0.0) > now or layout_id in self._reported:
                return
            self._reported[layout_id] = f"read skipped block {index}: {error}"
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush_reports())
        except Exception:  # the read must go on whatever happens here
            log.warning("could not note a bad block", layout=layout_id, exc_info=True)

    async def _flush_reports(self) -> None:
        await asyncio.sleep(0)  # let the read go on; gather reports of the same moment
        while self._reported:
            batch, self._reported = self._reported, {}
            try:
                async with self.db.write() as conn:
                    for layout_id, reason in batch.items():
                        await repairs.enqueue(conn, [layout_id], reason)
            except Exception as exc:
                log.warning("could not queue layouts for repair", error=str(exc))
                continue
            quiet = time.monotonic() + REPORT_QUIET
            self._quiet_until = {k: v for k, v in self._quiet_until.items() if v > time.monotonic()}
            for layout_id in batch:
                self._quiet_until[layout_id] = quiet
            log.info("queued for repair after degraded reads", layouts=sorted(batch))

    async def flush(self) -> None:
        """Wait until bad-block reports made so far are in the queue."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def close(self) -> None:
        await self.flush()
        self._closed = True

    # --- inspection -----------------------------------------------------------

    async def inspect(self, layout_id: int, throttle: Throttle | None = None) -> LayoutHealth:
        """The state of every block of a layout (``throttle(bytes)`` is awaited
        before the blocks are read: scrub's rate limit)."""
        return (await self._examine(layout_id, throttle)).health

    async def _examine(self, layout_id: int, throttle: Throttle | None = None) -> _Examined:
        async with self.db.read() as conn:
            status = await sweeps.layout_status(conn, layout_id)
            records = await layouts.load(conn, [layout_id]) if status == "live" else {}
            rec = records.get(layout_id)
            owner_spaces: list[UserSpace] = []
            if rec is not None and rec.blocks:
                first = await accounts.get_space(conn, rec.blocks[0].user_space_id)
                if first is not None:
                    owner_spaces = await accounts.list_spaces(conn, first.user_id)
        if rec is None:
            return _Examined(LayoutHealth(layout_id, None, status=status))
        spaces = {s.user_space_id: s for s in owner_spaces}
        layout = self.store.layout(rec)
        refs: dict[int, BlockRef] = {}
        results: dict[int, BlockHealth] = {}
        to_check: list[BlockRef] = []
        for b in rec.blocks:
            space = spaces.get(b.user_space_id)
            if space is None or space.state == SpaceState.UNAVAILABLE:
                results[b.index] = BlockHealth(
                    b.index, b.user_space_id, b.key, UNREACHABLE, "user space is Unavailable"
                )
                continue
            try:
                backend = await self.pool.get(space)
            except SpaceError as exc:
                results[b.index] = BlockHealth(
                    b.index, b.user_space_id, b.key, UNREACHABLE, exc.message
                )
                continue
            ref = BlockRef(index=b.index, space=backend, key=b.key, space_id=b.user_space_id)
            refs[b.index] = ref
            to_check.append(ref)

        async def check(ref: BlockRef) -> None:
            state, detail = await check_block(layout, ref)
            results[ref.index] = BlockHealth(ref.index, ref.space_id, ref.key, state, detail)

        if throttle is not None and to_check:
            await throttle(stored_block_size(layout) * len(to_check))
        await asyncio.gather(*(check(ref) for ref in to_check))
        if rec.inline is not None:  # a small object's one block, in the database
            try:
                decode_whole(rec.inline, layout)
            except BlockCorrupt as exc:
                results[0] = BlockHealth(0, 0, INLINE_KEY, CORRUPT, exc.message)
        health = LayoutHealth(
            layout_id,
            rec.policy,
            tuple(results[i] for i in sorted(results)),
            status=status,
        )
        return _Examined(health, rec, layout, refs, spaces)

    # --- repair ---------------------------------------------------------------

    async def repair(self, layout_id: int) -> RepairOutcome:
        """Rebuild every bad block of a layout; see the module docstring."""
        ex = await self._examine(layout_id)
        health = ex.health
        if ex.record is None or ex.layout is None:
            why = "is released (GC removes it)" if health.status == "released" else "is gone"
            if health.status == "pending":
                why = "is not committed"
            return RepairOutcome(layout_id, GONE, f"layout {layout_id} {why}: nothing to repair")
        if health.healthy:
            return RepairOutcome(
                layout_id, HEALTHY, f"layout {layout_id}: every block is intact, nothing to do"
            )
        if ex.record.inline is not None:  # its only copy is the database's
            return RepairOutcome(
                layout_id,
                UNRECOVERABLE,
                f"cannot repair layout {layout_id}: its inline data in the metadata database "
                f"is corrupt and there is no other copy ({health.summary()})",
            )
        policy = ex.record.policy
        bad = health.bad
        # Corrupt blocks may still have good chunks; missing/unreachable ones do not.
        usable = health.intact + sum(1 for b in bad if b.state == CORRUPT)
        # An empty layout's blocks hold no byte: each is rebuilt from none
        # (it was called unrecoverable and retried for ever, while it read).
        if usable < policy.needed and ex.record.size > 0:
            return RepairOutcome(
                layout_id,
                UNRECOVERABLE,
                f"cannot repair layout {layout_id}: found {health.intact} of "
                f"{policy.needed} blocks needed ({health.summary()})",
            )
        placed, unplaced = self._place(ex, bad)
        if not placed:
            return RepairOutcome(layout_id, NO_SPACES, self._no_spaces(ex, unplaced))
        try:
            moves, unstored = await self._rebuild_and_swap(ex, placed)
        except NotEnoughBlocks as exc:
            return RepairOutcome(
                layout_id,
                UNRECOVERABLE,
                f"cannot repair layout {layout_id}: {exc.message} ({health.summary()})",
            )
        except DomainError as exc:  # a space failed mid-rebuild
            return RepairOutcome(
                layout_id, FAILED, f"repair of layout {layout_id} failed: {exc.message}"
            )
        repaired = tuple(m.index for m in moves)
        lost = [b.index for b, _ in placed if b.index not in repaired]
        text = f"layout {layout_id}: rebuilt block{'s' if len(repaired) != 1 else ''} " + (
            ", ".join(f"{m.index} (space {m.old_space} -> {m.new_space})" for m in moves) or "none"
        )
        if unstored:
            return RepairOutcome(
                layout_id,
                FAILED,
                f"{text}; " + "; ".join(unstored),
                repaired,
                tuple(moves),
            )
        if lost:
            return RepairOutcome(
                layout_id,
                FAILED,
                f"{text}; block(s) {', '.join(map(str, lost))} changed meanwhile "
                "(another repair or drain)",
                repaired,
                tuple(moves),
            )
        if unplaced:
            return RepairOutcome(
                layout_id,
                NO_SPACES,
                f"{text}; {self._no_spaces(ex, unplaced)}",
                repaired,
                tuple(moves),
            )
        return RepairOutcome(layout_id, REPAIRED, text, repaired, tuple(moves))

    def _place(
        self, ex: _Examined, bad: Sequence[BlockHealth]
    ) -> tuple[list[tuple[BlockHealth, UserSpace]], list[BlockHealth]]:
        """A target space for each bad block (see the module docstring)."""
        assert ex.record is not None
        holders = {b.user_space_id for b in ex.record.blocks}
        free = candidates(ex.spaces.values(), exclude=holders)
        placed: list[tuple[BlockHealth, UserSpace]] = []
        unplaced: list[BlockHealth] = []
        for b in bad:
            own = ex.spaces.get(b.space_id)
            if free:
                placed.append((b, free.pop(0)))
            elif (
                b.state in (MISSING, CORRUPT) and own is not None and own.state == SpaceState.NORMAL
            ):
                placed.append((b, own))  # rewrite in place under a new key
            else:
                unplaced.append(b)
        return placed, unplaced

    @staticmethod
    def _no_spaces(ex: _Examined, unplaced: Sequence[BlockHealth]) -> str:
        assert ex.record is not None
        normal = len(candidates(ex.spaces.values()))
        return (
            f"cannot repair block{'s' if len(unplaced) != 1 else ''} "
            f"{', '.join(str(b.index) for b in unplaced)} of layout {ex.health.layout_id}: "
            f"{describe(ex.record.policy)} needs {ex.record.policy.width} user spaces, "
            f"one per block, but only {normal} of the owner's {len(ex.spaces)} are usable"
        )

    async def _rebuild_and_swap(
        self, ex: _Examined, placed: list[tuple[BlockHealth, UserSpace]]
    ) -> tuple[list[BlockMove], list[str]]:
        plan = [(b.index, s.user_space_id, new_block_key(b.index)) for b, s in placed]
        # Renewed while the rebuild runs, as an upload's: one that outlasts
        # GC's delay keeps its intent (and its files) to the swap.
        async with self.store.renewals.held():
            return await self._rebuild_held(ex, placed, plan)

    async def _rebuild_held(
        self,
        ex: _Examined,
        placed: list[tuple[BlockHealth, UserSpace]],
        plan: list[tuple[int, int, str]],
    ) -> tuple[list[BlockMove], list[str]]:
        """The blocks swapped in, and why each rebuilt block that was not
        stored (its target acknowledged it but does not hold it) was not."""
        assert ex.record is not None and ex.layout is not None
        rec, layout = ex.record, ex.layout
        async with self.db.write() as conn:
            await spacestate.hold_locations(conn, [s for _, s in placed])
            intent = await layouts.create_pending(conn, rec.policy, rec.wrapped_key, plan)
        try:
            targets = [
                BlockRef(index=i, space=await self.pool.get(s), key=k, space_id=sid)
                for (i, sid, k), (_, s) in zip(plan, placed, strict=True)
            ]
            renewal.join([intent], [(r.space, r.key) for r in targets])
            states = {b.index: b.state for b in ex.health.blocks}
            usable = [r for r in ex.refs.values() if states.get(r.index) in (OK, CORRUPT)]
            usable.sort(
                key=lambda r: (states[r.index] != OK, self.pool.preference(r.space_id), r.index)
            )
            await rebuild_blocks(layout, usable, targets)
            # Looked up before the swap lets the old blocks go: a target that
            # acknowledged a block it did not store would cost the layout one
            # that may have been good all along (one only unreachable for a
            # moment; found by review). A stat, not a read back.
            unstored = await _unstored(targets, stored_block_size(layout))
        except BaseException:
            await asyncio.shield(self._drop_intent(intent))
            raise
        moves: list[BlockMove] = []
        lost: list[BlockRef] = []
        async with self.db.write() as conn:
            # GC took the intent (a rebuild that outlasted its delay): it
            # deleted the new blocks too, so none may be swapped in.
            held = await layouts.hold_for_swap(conn, rec.layout_id, intent)
            for (b, _), t in zip(placed, targets, strict=True):
                swapped = (
                    held
                    and t.index not in unstored
                    and await layouts.replace_block(
                        conn, rec.layout_id, t.index, (b.space_id, b.key), (t.space_id, t.key)
                    )
                )
                if swapped:
                    moves.append(BlockMove(t.index, b.space_id, b.key, t.space_id, t.key))
                else:
                    lost.append(t)
            await layouts.delete_layouts(conn, [intent])
            # Every block let go of here (the old ones swapped out, the new
            # ones not swapped in, whose intent rows go now) is owed with
            # the swap: a process that dies before the deletes below leaves
            # GC a debt, not an untracked file. One on a space that is
            # Unavailable is not asked now: GC deletes it when it is back.
            away = {m.old_space for m in moves if _unavailable(ex.spaces.get(m.old_space))}
            unneeded = [(t.space_id, t.key) for t in lost]
            unneeded += [(m.old_space, m.old_key) for m in moves]
            await strays.owe(conn, unneeded, now())
        await self.store.delete_owed([b for b in unneeded if b[0] not in away])
        return moves, list(unstored.values())

    async def _drop_intent(self, intent: int) -> None:
        try:
            async with self.db.write() as conn:
                await layouts.delete_layouts(conn, [intent])
        except Exception as exc:  # GC removes the pending rows after its delay
            log.warning("could not drop repair intent", intent=intent, error=str(exc))

    # --- periodic scan --------------------------------------------------------

    async def scan_unavailable(self, page: int = 1000) -> int:
        """Queue every live layout with a block on an Unavailable space; returns
        how many were newly queued."""
        async with self.db.read() as conn:
            ids = [
                s.user_space_id for s in await spacestate.list_all(conn, [SpaceState.UNAVAILABLE])
            ]
        added, after = 0, 0
        while ids:
            async with self.db.read() as conn:
                rows = await layouts.blocks_in_spaces(conn, ids, page, after)
            if not rows:
                break
            found = sorted({layout_id for layout_id, _ in rows})
            added += await self.enqueue(found, "block on an Unavailable user space")
            if len(rows) < page:
                break
            after = found[-1]
        return added


async def _unstored(targets: Sequence[BlockRef], size: int) -> dict[int, str]:
    """Rebuilt blocks their space does not hold as written (absent, or
    another size), by index, with why; a space that does not answer the
    stat counts as not holding it."""
    out: dict[int, str] = {}

    async def look(t: BlockRef) -> None:
        try:
            got = await unlike_written(t.space, t.key, size)
        except SpaceError as exc:
            out[t.index] = (
                f"block {t.index} not found written to user space {t.space_id}: {exc.message}"
            )
            return
        if got is not None:
            out[t.index] = (
                f"user space {t.space_id} acknowledged block {t.index} ({size} bytes) but "
                f"holds {got}: not swapped in, the old block stays"
            )

    await asyncio.gather(*(look(t) for t in targets))
    return out


def _unavailable(space: UserSpace | None) -> bool:
    return space is not None and space.state == SpaceState.UNAVAILABLE
