"""fsck: check the metadata against the blocks every user space holds.

For each block of each layout in use (live and not released): ``stat`` it —
absent is *missing*, a size other than the layout's geometry gives is
*corrupt*, a space that errors makes it *unreachable*; with ``deep`` every
chunk is read and authenticated as well (``verify_block``), so a flipped byte
is *corrupt* too. A layout with fewer intact blocks than its policy's width is
*under-replicated*; with fewer than it needs to be read it is *lost*, or
*unreadable* when its unreachable blocks would make up the difference (a
space that does not answer now has not lost them).

Then every key under ``blocks/`` in every space is listed: a key no block row
points at (of any layout: pending, live or released) is an *orphan*. Keys
younger than the GC safety delay are left out, so the blocks of uploads in
flight (and of repairs that have not swapped their block in yet) are never
reported. Spaces that share one physical location (the same directory or
bucket and root) are listed once and a key is an orphan only if no space of
that location references it: an orphan is something that may be deleted.

Every committed object is checked against its parts: they must follow
one another from offset 0, each a layout in use, and add up to the object's
size; otherwise the object is *inconsistent* (a read would break off or
serve another object's bytes). With ``deep`` its bytes are read and their
SHA-256 (or, for an object completed from parts, the SHA-256 of its parts'
digests) compared with the one recorded.

A finding about a block or an object is re-checked against the current metadata before it
is reported, so a repair or drain that moved the block meanwhile is not
reported as damage.

``repair=True`` queues the fixes: under-replicated layouts (that can still be
read) go to the repair queue; orphans are deleted (after checking once more
that nothing references them).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from jointcloud.core.models import INLINE_KEY, BlockRecord, LayoutRecord, UserSpace
from jointcloud.errors import BlockCorrupt, BlockNotFound, DomainError, NotFound
from jointcloud.meta import fsck as repo
from jointcloud.meta import layouts, repairs, strays
from jointcloud.redundancy.stream import (
    BlockRef,
    decode_whole,
    read_range,
    stored_block_size,
    verify_block,
)
from jointcloud.spaces.base import Entry, Space
from jointcloud.spaces.registry import storage_identity

if TYPE_CHECKING:
    from jointcloud.context import Context

log = structlog.get_logger(__name__)

BLOCKS_PREFIX = "blocks/"
PAGE = 100  # layouts per metadata page
KEYS_BATCH = 500  # listed keys looked up in the metadata at once
CONCURRENCY = 16  # blocks checked at once
# A layout read to decide whether it is lost gives up when no segment came
# for this long: its blocks were found, but a space whose reads hang (a
# mount that answers stat from its cache) would otherwise hold fsck for
# ever; OpenDAL's own clients give up on a first byte after 60 s.
DECIDING_STALL_SECONDS = 60.0

# Finding kinds, in the order a report shows them.
KINDS = (
    "lost",
    "unreadable",
    "inconsistent",
    "under-replicated",
    "missing",
    "corrupt",
    "unreachable",
    "orphan",
)
_BLOCK_BAD = ("missing", "corrupt", "unreachable")


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    layout_id: int | None  # None for orphans and whole spaces
    block_index: int | None  # None for layout-level findings
    space_id: int | None
    space_name: str
    key: str
    detail: str = ""


@dataclass
class FsckReport:
    findings: list[Finding] = field(default_factory=list)
    layouts_checked: int = 0
    blocks_checked: int = 0
    objects_checked: int = 0
    keys_listed: int = 0
    young_keys: int = 0  # unreferenced but younger than the GC delay: not judged
    unreachable_spaces: dict[str, str] = field(default_factory=dict)  # name -> why not listed
    deep: bool = False
    # with repair=True
    enqueued: int = 0
    orphans_deleted: int = 0

    def count(self, kind: str) -> int:
        return self.counts[kind]

    @property
    def counts(self) -> Counter[str]:
        return Counter(f.kind for f in self.findings)

    @property
    def clean(self) -> bool:
        return not self.findings and not self.unreachable_spaces

    def summary(self) -> str:
        c = self.counts
        line = (
            f"fsck: {self.blocks_checked} blocks checked, {c['missing']} missing, "
            f"{c['corrupt']} corrupt, {c['orphan']} orphans, "
            f"{c['under-replicated']} under-replicated"
        )
        if c["lost"]:
            line += f", {c['lost']} lost"
        if c["unreadable"]:
            line += f", {c['unreadable']} unreadable until their spaces answer"
        if c["inconsistent"]:
            line += f", {c['inconsistent']} inconsistent objects"
        if c["unreachable"]:
            line += f", {c['unreachable']} unreachable"
        if self.unreachable_spaces:
            line += f"; not listed: {', '.join(sorted(self.unreachable_spaces))}"
        return line

    def sorted_findings(self) -> list[Finding]:
        order = {k: i for i, k in enumerate(KINDS)}
        return sorted(
            self.findings,
            key=lambda f: (
                order.get(f.kind, len(order)),
                f.layout_id or 0,
                f.block_index if f.block_index is not None else -1,
                f.space_id or 0,
                f.key,
            ),
        )


Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class _Status:
    block: BlockRecord
    state: str  # ok | missing | corrupt | unreachable
    detail: str = ""


def _location(space: UserSpace) -> str:
    """Identity of where a space's keys physically live."""
    storage = space.storage
    path = storage.get("path")
    if storage.get("type") == "Local" and isinstance(path, str) and "\x00" not in path:
        return "Local:" + os.path.realpath(os.path.join(path, space.root_path))
    # The storage's identity, not its settings as written: an alias (the
    # endpoint with a trailing '/') scanned apart saw the other's blocks as
    # orphans, and --repair deleted a live one (found by review, 2026-12-06).
    return json.dumps([storage_identity(storage), space.root_path.strip("/")])


class _Checker:
    def __init__(self, ctx: Context, deep: bool, repair: bool, progress: Progress | None) -> None:
        self.ctx = ctx
        self.deep = deep
        self.repair = repair
        self.progress = progress
        self.delay: timedelta = ctx.settings.gc_delay
        self.report = FsckReport(deep=deep)
        self.spaces: dict[int, UserSpace] = {}
        self.down: dict[int, str] = {}  # space id -> why it could not be listed
        self.sem = asyncio.Semaphore(CONCURRENCY)

    def _progress(self, done: int, total: int, message: str) -> None:
        if self.progress is not None:
            self.progress(done, total, message)

    def _name(self, space_id: int) -> str:
        rec = self.spaces.get(space_id)
        return rec.name if rec is not None else f"#{space_id}"

    async def _backend(self, space_id: int) -> Space:
        rec = self.spaces.get(space_id)
        if rec is None:
            return await self.ctx.pool.get_by_id(space_id)
        return await self.ctx.pool.get(rec)

    # -- orphans -----------------------------------------------------------

    async def scan_spaces(self) -> None:
        async with self.ctx.db.read() as conn:
            spaces = await repo.all_spaces(conn)
        self.spaces = {s.user_space_id: s for s in spaces}
        groups: dict[str, list[UserSpace]] = {}
        for s in spaces:
            groups.setdefault(_location(s), []).append(s)
        for i, members in enumerate(groups.values()):
            self._progress(i, len(groups), f"listing {members[0].name}")
            try:
                await self._scan_location(members)
            except DomainError as exc:
                for s in members:
                    self.down[s.user_space_id] = exc.message
                    self.report.unreachable_spaces[s.name] = exc.message
                log.warning("fsck: space cannot be listed", space=members[0].name, error=str(exc))

    async def _scan_location(self, members: list[UserSpace]) -> None:
        owner = members[0]
        ids = [s.user_space_id for s in members]
        backend = await self.ctx.pool.get(owner)
        cutoff = time.time() - self.delay.total_seconds()
        batch: list[Entry] = []
        orphans: list[str] = []

        owed: set[str] = set()

        async def judge() -> None:
            async with self.ctx.db.read() as conn:
                known = await repo.referenced_keys(conn, ids, [e.key for e in batch])
                owed.update(await strays.owed_keys(conn, ids, [e.key for e in batch]))
            for e in batch:
                if e.key in known:
                    continue
                if e.mtime > cutoff:
                    self.report.young_keys += 1
                else:
                    orphans.append(e.key)
            batch.clear()

        # Listed first, looked up after: a block committed meanwhile is found
        # by the lookup, and one written meanwhile is too young to be judged.
        async for entry in backend.list(BLOCKS_PREFIX):
            if not entry.key.startswith(BLOCKS_PREFIX):
                continue
            self.report.keys_listed += 1
            batch.append(entry)
            if len(batch) >= KEYS_BATCH:
                await judge()
        if batch:
            await judge()
        deleted = await self._delete_orphans(backend, ids, orphans) if self.repair else set()
        for key in orphans:
            self.report.findings.append(
                Finding(
                    "orphan",
                    None,
                    None,
                    owner.user_space_id,
                    owner.name,
                    key,
                    "deleted" if key in deleted else "owed: GC deletes it" if key in owed else "",
                )
            )

    async def _delete_orphans(self, backend: Space, ids: list[int], keys: list[str]) -> set[str]:
        deleted: set[str] = set()
        for start in range(0, len(keys), KEYS_BATCH):
            chunk = keys[start : start + KEYS_BATCH]
            async with self.ctx.db.read() as conn:
                known = await repo.referenced_keys(conn, ids, chunk)
            for key in chunk:
                if key in known:
                    continue
                try:
                    await backend.delete(key)
                    deleted.add(key)
                except DomainError as exc:
                    log.warning("fsck: orphan delete failed", key=key, error=exc.message)
        self.report.orphans_deleted += len(deleted)
        return deleted

    # -- layouts -----------------------------------------------------------

    async def _check_block(self, rec: LayoutRecord, block: BlockRecord) -> _Status:
        if block.user_space_id in self.down:
            return _Status(block, "unreachable", self.down[block.user_space_id])
        async with self.sem:
            try:
                space = await self._backend(block.user_space_id)
                if self.deep:
                    ref = BlockRef(block.index, space, block.key, block.user_space_id)
                    await verify_block(self.ctx.store.layout(rec), ref)
                else:
                    entry = await space.stat(block.key)
                    expected = stored_block_size(self.ctx.store.layout(rec))
                    if entry.size != expected:
                        return _Status(block, "corrupt", f"{entry.size} bytes, expected {expected}")
            except BlockNotFound:
                return _Status(block, "missing")
            except NotFound as exc:  # the space row itself is gone
                return _Status(block, "missing", exc.message)
            except BlockCorrupt as exc:
                return _Status(block, "corrupt", exc.message)
            except DomainError as exc:
                return _Status(block, "unreachable", exc.message)
        return _Status(block, "ok")

    async def _check_layout(self, rec: LayoutRecord) -> list[_Status]:
        if rec.inline is not None:
            return self._check_inline(rec)
        return list(await asyncio.gather(*(self._check_block(rec, b) for b in rec.blocks)))

    def _check_inline(self, rec: LayoutRecord) -> list[_Status]:
        """An inline layout has no block in any space; ``--deep``
        authenticates its sealed bytes in the database."""
        if not self.deep:
            return []
        block = BlockRecord(index=0, user_space_id=0, key=INLINE_KEY)
        try:
            decode_whole(rec.inline or b"", self.ctx.store.layout(rec))
        except BlockCorrupt as exc:
            return [_Status(block, "corrupt", exc.message)]
        return [_Status(block, "ok")]

    async def check_layouts(self) -> list[int]:
        """Check every layout in use; returns the ids that want repair."""
        async with self.ctx.db.read() as conn:
            _, total = await repo.count_live(conn)
        to_repair: list[int] = []
        after = 0
        while True:
            async with self.ctx.db.read() as conn:
                page = await repo.live_page(conn, after, PAGE)
            if not page:
                return to_repair
            after = page[-1].layout_id
            results = await asyncio.gather(*(self._check_layout(r) for r in page))
            checked = dict(zip((r.layout_id for r in page), results, strict=True))
            await self._recheck(page, checked)
            for rec in page:
                statuses = checked.get(rec.layout_id)
                if statuses is None:
                    continue  # released or deleted meanwhile
                self.report.layouts_checked += 1
                self.report.blocks_checked += len(statuses)
                readable = (
                    await self._readable(rec, statuses) if _maybe_readable(rec, statuses) else False
                )
                if self._judge(rec, statuses, readable):
                    to_repair.append(rec.layout_id)
            self._progress(self.report.blocks_checked, total, "checking blocks")

    async def _recheck(
        self, page: Sequence[LayoutRecord], checked: dict[int, list[_Status]]
    ) -> None:
        """Layouts with a bad block: compare with the current rows; a layout
        released meanwhile is dropped, one whose blocks moved is checked again."""
        suspect = [r.layout_id for r in page if any(s.state != "ok" for s in checked[r.layout_id])]
        if not suspect:
            return
        async with self.ctx.db.read() as conn:
            current = await repo.still_in_use(conn, suspect)
        for rec in page:
            if rec.layout_id not in suspect:
                continue
            now_rec = current.get(rec.layout_id)
            if now_rec is None:
                del checked[rec.layout_id]
            elif now_rec.blocks != rec.blocks:
                checked[rec.layout_id] = await self._check_layout(now_rec)

    async def _readable(self, rec: LayoutRecord, statuses: list[_Status]) -> bool | None:
        """Whether every segment of a layout can be read, the good chunks of
        its corrupt blocks counting (as reads and repair use them); None when
        the read stalled (``DECIDING_STALL_SECONDS`` without a segment).
        Only blocks found there are read: one on a space that did not answer
        is not waited for again (found by review)."""
        found = {(s.block.index, s.block.key) for s in statuses if s.state in ("ok", "corrupt")}
        refs: list[BlockRef] = []
        for b in rec.blocks:
            if b.user_space_id in self.down or (b.index, b.key) not in found:
                continue
            try:
                space = await self._backend(b.user_space_id)
            except DomainError:
                continue
            refs.append(BlockRef(b.index, space, b.key, b.user_space_id))
        segments = read_range(self.ctx.store.layout(rec), refs, 0, None, read_ahead=1)
        try:
            while True:
                async with asyncio.timeout(DECIDING_STALL_SECONDS):
                    await anext(segments)
        except StopAsyncIteration:
            return True
        except DomainError:
            return False
        except TimeoutError:
            log.warning("fsck: a layout's deciding read stalled", layout_id=rec.layout_id)
            return None
        finally:
            await segments.aclose()  # type: ignore[attr-defined]

    def _judge(
        self, rec: LayoutRecord, statuses: list[_Status], readable: bool | None = False
    ) -> bool:
        """Record the findings of one layout; True if repair can help it.
        ``readable``: read whole although fewer blocks than it needs are
        intact (corrupt ones in different chunks); None: that read stalled."""
        for s in statuses:
            if s.state in _BLOCK_BAD:
                b = s.block
                self.report.findings.append(
                    Finding(
                        s.state,
                        rec.layout_id,
                        b.index,
                        b.user_space_id,
                        self._name(b.user_space_id),
                        b.key,
                        s.detail,
                    )
                )
        if rec.inline is not None:
            return False  # no other copy: repair cannot help
        intact = len({s.block.index for s in statuses if s.state == "ok"})
        width, needed = rec.policy.width, rec.policy.needed
        if intact >= width:
            return False
        away = len({s.block.index for s in statuses if s.state == "unreachable"})
        detail = f"{intact} of {width} blocks intact, {needed} needed to read"
        kind = "under-replicated"
        if intact < needed and rec.size == 0:
            # Its blocks hold no byte: it reads without them, and repair
            # makes them again from none (it was reported lost).
            detail += "; it holds no byte, so it reads whole without them"
        elif intact < needed and readable:
            detail += "; the good chunks of its corrupt ones still read it whole"
        elif intact < needed and readable is None:
            # Not known to be gone either: the read that would tell stalled.
            kind = "unreadable"
            detail += (
                f"; reading it with its corrupt ones sent nothing for {DECIDING_STALL_SECONDS:g} s"
            )
        elif intact < needed:
            # Blocks on spaces that do not answer now are not known to be
            # gone: with them the layout may read again.
            kind = "unreadable" if intact + away >= needed else "lost"
            if away:
                detail += f", {away} on spaces that did not answer"
        self.report.findings.append(Finding(kind, rec.layout_id, None, None, "", "", detail))
        return kind == "under-replicated"

    # -- objects -----------------------------------------------------------

    async def check_objects(self) -> None:
        after = 0
        while True:
            async with self.ctx.db.read() as conn:
                page = await repo.object_page(conn, after, PAGE)
            if not page:
                return
            after = page[-1].object_id
            problems = {o.object_id: await self._object_problem(o) for o in page}
            suspect = [o for o in page if problems[o.object_id]]
            if suspect:
                # Compared with the rows as they are now: an object
                # overwritten or deleted meanwhile is not damage.
                async with self.ctx.db.read() as conn:
                    rows = await repo.object_page(conn, 0, 0, only=[o.object_id for o in suspect])
                current = {o.object_id: o for o in rows}
                for o in suspect:
                    now_o = current.get(o.object_id)
                    why = "" if now_o is None else problems[o.object_id]
                    if now_o is not None and now_o != o:
                        why = await self._object_problem(now_o)
                    if why:
                        self._inconsistent(now_o or o, why)
            self.report.objects_checked += len(page)
            self._progress(self.report.objects_checked, 0, "checking objects")

    def _inconsistent(self, o: repo.ObjectParts, why: str) -> None:
        first = o.parts[0].layout_id if o.parts else None
        detail = f"object {o.object_id} of package {o.package_id}: {why}"
        self.report.findings.append(Finding("inconsistent", first, None, None, "", o.path, detail))

    async def _object_problem(self, o: repo.ObjectParts) -> str:
        shape = _shape(o)
        if shape or not self.deep or not o.file_hash.sha256:
            return shape
        return await self._hash_problem(o)

    async def _hash_problem(self, o: repo.ObjectParts) -> str:
        """Its bytes against its recorded hash (``deep``). A part that
        cannot be read is the layout check's finding, not this one's."""
        async with self.ctx.db.read() as conn:
            records = await layouts.load(conn, [p.layout_id for p in o.parts])
        whole = hashlib.sha256()
        digests: list[bytes] = []
        try:
            for p in o.parts:
                part = hashlib.sha256()
                async for chunk in self.ctx.store.read_layout(records[p.layout_id]):
                    part.update(chunk)
                    if not o.file_hash.composite:
                        whole.update(chunk)
                digests.append(part.digest())
        except (DomainError, KeyError):
            return ""
        if o.file_hash.composite:
            got = hashlib.sha256(b"".join(digests)).hexdigest()
        else:
            got = whole.hexdigest()
        if got == o.file_hash.sha256:
            return ""
        kind = "the SHA-256 of its parts' digests" if o.file_hash.composite else "its SHA-256"
        return f"{kind} is {got}, recorded {o.file_hash.sha256}"

    async def enqueue(self, layout_ids: list[int]) -> None:
        if not layout_ids:
            return
        async with self.ctx.db.write() as conn:
            self.report.enqueued = await repairs.enqueue(conn, layout_ids, "fsck: under-replicated")


def _maybe_readable(rec: LayoutRecord, statuses: list[_Status]) -> bool:
    """Too few intact blocks to read the layout, but enough with its
    corrupt ones, whose other chunks may still be good: worth reading to
    tell (a flipped byte in each of two replicas is no lost object)."""
    if rec.inline is not None:
        return False
    intact = len({s.block.index for s in statuses if s.state == "ok"})
    corrupt = len({s.block.index for s in statuses if s.state == "corrupt"})
    return intact < rec.policy.needed <= intact + corrupt


def _shape(o: repo.ObjectParts) -> str:
    """What is wrong with how an object's parts make it ("": nothing)."""
    offset = 0
    for p in o.parts:
        if p.size is None:
            return f"its part at byte {p.offset} names layout {p.layout_id}, which does not exist"
        if not p.in_use:
            return f"its part at byte {p.offset} is layout {p.layout_id}, which is not in use"
        if p.offset != offset:
            return f"its part of layout {p.layout_id} starts at byte {p.offset}, not {offset}"
        offset += p.size
    if offset != o.size:
        return f"its parts hold {offset} bytes, its size is {o.size}"
    return ""


async def fsck(
    ctx: Context, *, deep: bool = False, repair: bool = False, progress: Progress | None = None
) -> FsckReport:
    """Check every space against the metadata; see the module docstring."""
    checker = _Checker(ctx, deep, repair, progress)
    await checker.scan_spaces()
    to_repair = await checker.check_layouts()
    await checker.check_objects()
    if repair:
        await checker.enqueue(to_repair)
    return checker.report
