"""Redundancy change: re-encode objects whose package's policy changed.

Per layout that needs it (see ``meta.recode`` for which do):

1. stream its plaintext out (``BlockStore.read_layout``: degraded reads work,
   bad blocks are queued for repair) into a new layout under the target
   policy on the owner's healthy spaces (``BlockStore.stage``: the intent is
   recorded first and every failure cleans up after itself);
2. ONE transaction: for every object that still points at the old layout,
   point it at the new one (compare-and-swap on the old layout id), make the
   new layout live, record the object's redundancy once all of its parts
   have the target policy, and release the old layout if nothing references
   it any more. If no object still points at it (overwritten or deleted
   meanwhile), the new layout is discarded instead.

Readers therefore see the old layout or the new one, never neither: a read
that started on the old layout keeps working because released layouts are
only deleted by GC after its safety delay. A crash before step 2 leaves a
pending layout that GC removes. Objects sharing a layout (clones) are
re-encoded together when they need the same policy, and each only if its own
package's policy differs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from jointcloud.core.blockstore import BlockStore
from jointcloud.core.models import StagedLayout
from jointcloud.core.placement import describe
from jointcloud.errors import DomainError, OperationFailed
from jointcloud.meta import layouts
from jointcloud.meta import recode as repo
from jointcloud.meta.db import Database
from jointcloud.meta.rows import load_policy_required

log = structlog.get_logger(__name__)

PAGE = 1000  # candidate rows read per pass
MAX_LAYOUTS = 64  # layouts re-encoded per pass
MAX_BYTES = 1 << 30  # ... and at most about this many bytes
CONCURRENCY = 2


@dataclass
class RecodeReport:
    layouts: int = 0  # re-encoded and swapped in
    objects: int = 0  # objects now pointing at a new layout
    bytes: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)
    more: bool = False
    cursor: int = 0  # resume after this layout id next pass (0: from the start)

    def summary(self) -> str:
        text = (
            f"re-encoded {self.layouts} layout{'s' if self.layouts != 1 else ''} "
            f"({self.bytes} bytes) of {self.objects} object{'s' if self.objects != 1 else ''}"
        )
        if self.failed:
            text += f"; {self.failed} failed: " + "; ".join(self.problems[:3])
        if self.more:
            text += "; more to do"
        return text


@dataclass(frozen=True)
class _Group:
    """One layout to re-encode to one policy, and the objects that want it."""

    layout_id: int
    target: str
    user_id: int
    size: int
    object_ids: tuple[int, ...]
    # SHA-256 (hex) of the single-layout objects among them: what the
    # re-encoded copy must hash to.
    full_hashes: frozenset[str]


def _groups(rows: list[repo.Candidate]) -> list[_Group]:
    by_key: dict[tuple[int, str], list[repo.Candidate]] = {}
    for c in rows:
        by_key.setdefault((c.layout_id, c.target), []).append(c)
    return [
        _Group(
            layout_id=lid,
            target=target,
            user_id=cs[0].user_id,
            size=cs[0].size,
            object_ids=tuple(dict.fromkeys(c.object_id for c in cs)),
            full_hashes=frozenset(
                c.file_hash.sha256 for c in cs if c.file_hash.sha256 and not c.file_hash.composite
            ),
        )
        for (lid, target), cs in by_key.items()
    ]


class Recoder:
    def __init__(self, db: Database, store: BlockStore) -> None:
        self.db = db
        self.store = store

    async def run_once(
        self,
        after_layout: int = 0,
        progress: Callable[[int, int, str], None] | None = None,
        *,
        max_layouts: int = MAX_LAYOUTS,
        max_bytes: int = MAX_BYTES,
    ) -> RecodeReport:
        """One bounded pass, resuming after layout ``after_layout``."""
        report = RecodeReport()
        async with self.db.read() as conn:
            rows = await repo.candidates(conn, after_layout, PAGE)
            if not rows and after_layout:
                after_layout = 0  # wrap around: earlier layouts may need work again
                rows = await repo.candidates(conn, 0, PAGE)
        groups = _groups(rows)
        if len(rows) == PAGE and len({g.layout_id for g in groups}) > 1:
            # The page may end inside a layout's objects: leave that layout whole.
            last = groups[-1].layout_id
            groups = [g for g in groups if g.layout_id != last]
        chosen: list[_Group] = []
        size = 0
        for g in groups:
            if chosen and (len(chosen) >= max_layouts or size >= max_bytes):
                break
            chosen.append(g)
            size += g.size
        report.more = len(chosen) < len(groups) or len(rows) == PAGE
        report.cursor = max((g.layout_id for g in chosen), default=0) if report.more else 0

        limit = asyncio.Semaphore(CONCURRENCY)
        done = 0

        async def one(g: _Group) -> None:
            nonlocal done
            async with limit:
                await self._recode(g, report)
            done += 1
            if progress is not None:
                progress(done, len(chosen), f"re-encoded {report.layouts} layouts")

        await asyncio.gather(*(one(g) for g in chosen))
        if not report.more:
            async with self.db.write() as conn:
                await repo.clear_finished(conn)
        return report

    async def _recode(self, g: _Group, report: RecodeReport) -> None:
        policy = load_policy_required(g.target)
        what = f"layout {g.layout_id} -> {describe(policy)}"
        try:
            async with self.db.read() as conn:
                rec = (await layouts.load(conn, [g.layout_id])).get(g.layout_id)
            if rec is None:
                return  # collected meanwhile: its objects were overwritten or deleted
            # Renewed while it runs, as an upload's: a re-encoding that
            # outlasts GC's delay keeps its intent (and its blocks) to the swap.
            async with self.store.renewals.held():
                staged = await self.store.stage(g.user_id, self.store.read_layout(rec), policy)
                swapped = await self._swap(g, staged, rec.size)
        except DomainError as exc:
            self._fail(report, what, exc.message)
            return
        except Exception as exc:
            self._fail(report, what, f"{type(exc).__name__}: {exc}")
            return
        if swapped:
            report.layouts += 1
            report.objects += swapped
            report.bytes += rec.size

    async def _swap(self, g: _Group, staged: StagedLayout, size: int) -> int:
        """Swap the objects over; returns how many moved (0: the copy is discarded)."""
        try:
            if staged.size != size or any(h != staged.sha256 for h in g.full_hashes):
                raise OperationFailed("the re-encoded bytes differ from the original")
            async with self.db.write() as conn:
                await repo.lock_objects(conn, g.object_ids)
                swapped = [
                    oid
                    for oid in g.object_ids
                    if await repo.swap_part(conn, oid, g.layout_id, staged.layout_id)
                ]
                if swapped:
                    await layouts.activate(conn, staged)
                    await repo.settle_policy(conn, swapped, g.target)
                    await layouts.release_unreferenced(conn, [g.layout_id])
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.discard([staged]))
            raise
        if not swapped:
            await self.store.discard([staged])
        return len(swapped)

    @staticmethod
    def _fail(report: RecodeReport, what: str, why: str) -> None:
        report.failed += 1
        report.problems.append(f"{what}: {why}")
        log.warning("recode failed", what=what, error=why)
