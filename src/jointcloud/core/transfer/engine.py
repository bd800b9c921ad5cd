"""One run of a transfer task: plan, copy in parallel with retries, record.

The plan compares the source listing with what this task recorded (and, in
diff mode, with what each destination holds). Workers stream each file from
source to destination; a finished file is recorded durably before it counts,
through a group commit so that many small files do not mean as many
transactions. The caller saves ``progress`` periodically and cancels the run
to stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from jointcloud.core.models import Compare, FileRecord, FileState, TaskMode, TransferProgress
from jointcloud.core.transfer.spec import TransferFilter
from jointcloud.core.transfer.trees import SMALL, Item, Sink, Source
from jointcloud.errors import BlockNotFound, DomainError, SpaceAuthError, SpaceError, SpaceRefused
from jointcloud.meta import transfers as repo
from jointcloud.meta.db import Database

log = structlog.get_logger(__name__)

T = TypeVar("T")

ATTEMPTS = 5  # the first try and four retries: 0.5 s, 1 s, 2 s, 4 s (+ jitter)
PARALLEL = 16
BATCH_FILES = 64  # small files copied in one worker-thread call ...
BATCH_BYTES = 8 << 20  # ... or this many bytes, so a cancel waits little
# Batch threads run Python between short system calls: more than a couple of
# them only fight over the GIL (measured: 16 at once were 2-3x slower than 2).
BATCH_THREADS = 2
MAX_FAILURES_KEPT = 100
# Files in a row that failed on one destination, each after its retries and
# for a reason another try might fix, before the run stops: a cloud that is
# gone failed every file after about 8 s of retries, so a sync of 2,000
# files ran for 11 minutes and one of 100,000 for hours (found by review).
# The next run (manual or scheduled) resumes where this one stopped.
GIVE_UP_AFTER = 32
# A source file modified this close to the run's start (or after it) may be
# rewritten after it was read and keep its modification time: clocks tick
# coarsely (S3 keeps whole seconds, FAT two, Linux a few milliseconds). Its
# size and time prove nothing then ("racy" files, in git's words): its copy
# is recorded ``RECENT`` and the next diff run compares bytes, and
# deleteSource compares bytes again before it deletes it (found by review,
# 2026-12-07: a rewrite in the second of the copy was never synced, or was
# deleted with the source).
RACY_SLACK = 2.0


class TransferFailed(DomainError):
    """A file could not be copied (after its retries, if it was worth retrying)."""


# Local file-system errors that another try will not fix.
_PERMANENT_ERRNOS = frozenset(
    {
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.EINVAL,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
    }
)


def transient(exc: BaseException) -> bool:
    """Worth another try: network trouble, a 5xx, a timeout, a source that
    changed under us. Not: a missing file, bad credentials, bad input, a
    local error like "not a directory" or "disk full"."""
    if isinstance(exc, BlockNotFound | SpaceAuthError | SpaceRefused):
        return False
    cause = exc.__cause__ if isinstance(exc, SpaceError) else exc
    if isinstance(cause, OSError) and cause.errno in _PERMANENT_ERRNOS:
        return False
    if isinstance(exc, SpaceError | TransferFailed):
        return True
    return isinstance(exc, TimeoutError | ConnectionError | OSError)


def source_changed(listed: int, read: int | str) -> TransferFailed:
    return TransferFailed(f"source changed while it was copied: listed {listed} bytes, read {read}")


def retrying() -> AsyncRetrying:
    return AsyncRetrying(
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.25),
        retry=retry_if_exception(transient),
        reraise=True,
    )


async def retried(fn: Callable[[], Awaitable[T]]) -> T:
    """``fn()`` under the ``retrying`` policy. The first try runs bare: for
    thousands of small files that all succeed, building the retry machinery
    per file cost more than copying them; a transient failure is replayed
    into the policy as its first attempt."""
    try:
        return await fn()
    except Exception as exc:
        if not transient(exc):
            raise
        failed: Exception | None = exc
    async for attempt in retrying():
        with attempt:
            if failed is not None:
                first, failed = failed, None
                raise first
            return await fn()
    raise AssertionError("the retry policy ends by returning or raising")


def describe(exc: BaseException) -> str:
    if isinstance(exc, DomainError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _utf8_named(items: list[Item]) -> tuple[list[Item], list[Item]]:
    """Split a listing: files whose names are UTF-8, and those that are not
    (a local disk hands those over with the odd bytes as surrogates)."""
    good: list[Item] = []
    bad: list[Item] = []
    for item in items:
        if item.rel.isascii():
            good.append(item)
            continue
        try:
            item.rel.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(item)
        else:
            good.append(item)
    return good, bad


@dataclass
class Unit:
    """One source file and the destinations it still has to reach."""

    item: Item
    dests: list[int]
    hash_check: list[int] = field(default_factory=list)  # equal size: compare digests first
    delete_after: bool = False


class Recorder:
    """Writes file records in batches, in the background (every quarter
    second or 500 records), so that thousands of small files do not cost a
    transaction each. Records lost to a crash are recovered on resume: a
    destination file written since the run started, at the source's size, is
    taken as done (``TransferRun.plan``)."""

    EVERY = 0.25
    BATCH = 500

    def __init__(self, db: Database, task_id: int) -> None:
        self.db = db
        self.task_id = task_id
        self._pending: list[tuple[int, str, FileRecord]] = []
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def note(self, dest: int, path: str, rec: FileRecord) -> None:
        self._pending.append((dest, path, rec))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._loop())
        if len(self._pending) >= self.BATCH:
            self._full.set()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            async with self.db.write() as conn:
                await repo.save_records(conn, self.task_id, batch)
        except BaseException:
            self._pending[:0] = batch  # kept for the next try
            raise

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.EVERY)
            self._full.clear()
            try:
                await self._flush()
            except Exception as exc:
                log.warning("saving file records failed; will retry", error=describe(exc))

    async def close(self) -> None:
        """Stop the background writer and save what is left (also when the
        run was cancelled: those files are done)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await asyncio.shield(self._flush())


@dataclass
class TransferRun:
    db: Database
    task_id: int
    run_no: int
    source: Source
    sinks: Sequence[Sink]
    mode: TaskMode = TaskMode.FULL
    compare: Compare = Compare.SIZE_MTIME
    select: TransferFilter = field(default_factory=TransferFilter)
    delete_source: bool = False
    parallel: int = PARALLEL
    prelisted: list[Item] | None = None
    resumed: bool = False  # the run was open before (crash, restart, window)
    run_started: float = 0.0  # epoch seconds
    progress: TransferProgress = field(default_factory=TransferProgress)
    failures: list[tuple[str, str]] = field(default_factory=list)
    copied: list[Item] = field(default_factory=list)
    selected: list[Item] = field(default_factory=list)
    to_delete: list[Item] = field(default_factory=list)
    written: set[int] = field(default_factory=set)  # destinations this run wrote to
    # destination -> files that failed there in a row (``GIVE_UP_AFTER``)
    failing: dict[int, int] = field(default_factory=dict)
    planned: bool = False  # the counters describe this run (``plan`` ended)

    # -- plan ----------------------------------------------------------------

    async def _list_source(self) -> list[Item]:
        if self.prelisted is not None:
            return self.prelisted

        async def listing() -> list[Item]:
            bulk = getattr(self.source, "all_items", None)
            if bulk is not None:
                found: list[Item] = await bulk()
                return found
            return [i async for i in self.source.items()]

        return await retried(listing)

    async def _holdings(self) -> list[dict[str, Item]]:
        return [await retried(sink.holdings) for sink in self.sinks]

    async def plan(self) -> list[Unit]:
        # One after the other: two listing threads fight over the GIL at every
        # stat (measured: 0.09 s each alone, 0.3-0.4 s each side by side).
        listed = await self._list_source()
        async with self.db.read() as conn:
            records = await repo.load_records(conn, self.task_id)
        held = await self._holdings() if self.mode == TaskMode.DIFF or self.resumed else []
        listed = await self.select.chosen(listed)
        # After the filter: a file it leaves out is not this run's failure.
        items, unnamed = _utf8_named(listed)
        self.selected = items
        p = self.progress
        units: list[Unit] = []
        unchanged: list[tuple[int, str, FileRecord]] = []
        for item in items:
            unit = Unit(item, [])
            done_here = 0
            for d in range(len(self.sinks)):
                p.files_total += 1
                rec = records.get((d, item.rel))
                same_src = (
                    rec is not None
                    and rec.state in (FileState.DONE, FileState.RECENT)
                    and rec.src_size == item.size
                    and rec.src_mtime == item.mtime
                )
                # Copied when its time could not prove later changes.
                racy = same_src and rec is not None and rec.state == FileState.RECENT
                this_run = same_src and rec is not None and rec.run_no == self.run_no
                if this_run and self.resumed:
                    # Recorded, but was it made durable before the crash?
                    there = held[d].get(item.rel)
                    this_run = there is not None and there.size == item.size
                unrecorded = rec is None or rec.run_no != self.run_no
                if not this_run and self.resumed and unrecorded:
                    this_run = self._copied_unrecorded(item, held[d].get(item.rel))
                    if this_run:
                        unchanged.append((d, item.rel, self._done(item)))
                if this_run and self.resumed and self.delete_source:
                    # The source may go only after a verified copy; a crash
                    # may have cut the verification short: compare bytes.
                    unit.hash_check.append(d)
                    unit.dests.append(d)
                    p.bytes_total += item.size
                    continue
                if this_run:
                    p.files_done += 1  # finished earlier in this (resumed) run
                    p.bytes_total += item.size
                    p.bytes_done += item.size
                    done_here += 1
                    continue
                if self.mode == TaskMode.DIFF:
                    there = held[d].get(item.rel)
                    if there is not None and there.size == item.size:
                        # deleteSource: "unchanged" must be proven before the
                        # source goes, so the bytes are compared too.
                        if self.compare == Compare.HASH or self.delete_source or racy:
                            unit.hash_check.append(d)
                            unit.dests.append(d)
                            p.bytes_total += item.size
                            continue
                        if same_src or (rec is None and there.mtime >= item.mtime):
                            # Not recorded: the same rule decides next time,
                            # and a diff over a big unchanged tree stays cheap.
                            p.files_skipped += 1
                            continue
                unit.dests.append(d)
                p.bytes_total += item.size
            if unit.dests:
                unit.delete_after = self.delete_source
                units.append(unit)
            elif self.delete_source and done_here == len(self.sinks):
                unit.delete_after = True  # copied and verified before a restart
                units.append(unit)
        for item in unnamed:
            # Not copied: an object key, the records and every answer are
            # UTF-8. Reported under its name with the odd bytes escaped.
            shown = item.rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            message = "its name is not valid UTF-8: rename it to copy it"
            for d in range(len(self.sinks)):
                p.files_total += 1
                p.files_failed += 1
                if len(self.failures) < MAX_FAILURES_KEPT:
                    self.failures.append((shown, message))
                failed = FileRecord(item.size, item.mtime, self.run_no, FileState.FAILED, message)
                unchanged.append((d, shown, failed))
        if unchanged:
            async with self.db.write() as conn:
                await repo.save_records(conn, self.task_id, unchanged)
        self.planned = True
        return units

    def _copied_unrecorded(self, item: Item, there: Item | None) -> bool:
        """A resumed run: was this file copied before the crash, after the run
        started, without its record reaching the database? (2 s of slack for
        coarse file-system and cloud clocks.) Not if the source changed after
        that copy (while the server was down, say): a copy older than its
        source is stale, and recorded as done, no later diff run would look
        at it again."""
        return (
            self.resumed
            and there is not None
            and there.size == item.size
            and there.mtime >= self.run_started - 2.0
            and there.mtime >= item.mtime
        )

    def _racy(self, item: Item) -> bool:
        """Modified too close to the run's start for its size and time to
        show a later rewrite (``RACY_SLACK``). The start, not now: every
        read of this run, before a crash too, came after it."""
        return item.mtime >= self.run_started - RACY_SLACK

    def _done(self, item: Item) -> FileRecord:
        state = FileState.RECENT if self._racy(item) else FileState.DONE
        return FileRecord(item.size, item.mtime, self.run_no, state)

    # -- copy ----------------------------------------------------------------

    async def run(self) -> None:
        if self.resumed:
            # A process that died mid-file left its temporary file behind;
            # nothing of ours is writing yet, so anything older goes.
            started = time.time()
            for sink in self.sinks:
                with contextlib.suppress(SpaceError):
                    await sink.sweep(started)
        units = await self.plan()
        recorder = Recorder(self.db, self.task_id)
        batched = [u for u in units if self._batchable(u)]
        single = [u for u in units if not self._batchable(u)]

        batch_threads = asyncio.Semaphore(BATCH_THREADS)

        async def worker() -> None:
            while batched:
                batch: list[Unit] = []
                size = 0
                while batched and len(batch) < BATCH_FILES and size < BATCH_BYTES:
                    unit = batched.pop()
                    batch.append(unit)
                    size += unit.item.size * len(unit.dests)
                async with batch_threads:
                    await self._batch(batch, recorder)
            while single:
                await self._unit(single.pop(), recorder)

        try:
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(max(1, min(self.parallel, len(units)))):
                        group.create_task(worker())
            except ExceptionGroup as failed:
                # The first failure says why the run stopped ("ExceptionGroup:
                # unhandled errors in a TaskGroup" said nothing; found by review).
                raise failed.exceptions[0] from None
            # Success means durable: destinations that skipped per-file
            # fsyncs flush once (if this run wrote to them, or a crashed one
            # may have), and only then may sources be deleted. Before any
            # deletion every destination flushes: a copy proven by its bytes
            # may be one an earlier run wrote and never flushed (a run that
            # stopped on failures ends without its flush).
            for d, sink in enumerate(self.sinks):
                if d in self.written or self.resumed or self.to_delete:
                    await sink.flush()
            await self._delete_sources(recorder)
        finally:
            await recorder.close()

    async def _delete_sources(self, recorder: Recorder) -> None:
        pending = list(self.to_delete)

        async def worker() -> None:
            while pending:
                await self._delete_source(pending.pop(), recorder)

        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(self.parallel, len(pending)))):
                group.create_task(worker())

    def _batchable(self, unit: Unit) -> bool:
        """Small plain copies between local disks go in thread-side batches."""
        return (
            unit.item.size <= SMALL
            and not unit.hash_check
            and not unit.delete_after
            and bool(unit.dests)
            and getattr(self.source, "blocking", False)
            and all(getattr(self.sinks[d], "blocking", False) for d in unit.dests)
        )

    async def _batch(self, units: list[Unit], recorder: Recorder) -> None:
        """Copy small files in one worker-thread call (two thread hops per file
        cost more than the copy itself); what fails there goes through the
        one-file path, with its retries."""
        source: Any = self.source
        sinks: list[Any] = list(self.sinks)
        stop = threading.Event()  # set on cancel: the thread ends after its current file
        results: list[list[Exception | None]] = []

        def work() -> None:
            for unit in units:
                if stop.is_set():
                    return
                item = unit.item
                try:
                    data = source.read_blocking(item)
                    if len(data) != item.size:
                        raise source_changed(item.size, len(data))
                except Exception as exc:
                    results.append([exc] * len(unit.dests))
                    continue
                row: list[Exception | None] = []
                for d in unit.dests:
                    if stop.is_set():
                        return
                    try:
                        sinks[d].put_blocking(item, data)
                        row.append(None)
                    except Exception as exc:
                        row.append(exc)
                results.append(row)

        for unit in units:
            self.written.update(unit.dests)
        try:
            await source.in_thread(work)
        except asyncio.CancelledError:
            stop.set()
            self._count_batch(units, list(results), recorder)  # what is already there
            raise
        for unit, again in self._count_batch(units, results, recorder):
            await self._unit(Unit(unit.item, again), recorder)

    def _count_batch(
        self, units: list[Unit], results: list[list[Exception | None]], recorder: Recorder
    ) -> list[tuple[Unit, list[int]]]:
        """Count and record the copies a batch made; the (unit, destinations)
        left to try again."""
        retry: list[tuple[Unit, list[int]]] = []
        for unit, row in zip(units, results, strict=False):
            again = []
            for d, exc in zip(unit.dests, row, strict=False):
                if exc is None:
                    self.progress.files_done += 1
                    self.progress.bytes_done += unit.item.size
                    recorder.note(d, unit.item.rel, self._done(unit.item))
                else:
                    again.append(d)
            if again:
                retry.append((unit, again))
        return retry

    async def _unit(self, unit: Unit, recorder: Recorder) -> None:
        item = unit.item
        ok = True
        for d in unit.dests:
            try:
                copied = await self._to_dest(item, d, d in unit.hash_check)
            except Exception as exc:
                ok = False
                message = describe(exc)
                log.info("transfer file failed", task=self.task_id, path=item.rel, error=message)
                self.progress.files_failed += 1
                if len(self.failures) < MAX_FAILURES_KEPT:
                    self.failures.append((item.rel, message))
                rec = FileRecord(item.size, item.mtime, self.run_no, FileState.FAILED, message)
                recorder.note(d, item.rel, rec)
                self._give_up_if_failing(d, exc, message)
                continue
            self.failing[d] = 0
            if copied:
                self.progress.files_done += 1
            else:
                self.progress.files_skipped += 1
            recorder.note(d, item.rel, self._done(item))
        if ok:
            self.copied.append(item)
            if unit.delete_after:
                self.to_delete.append(item)

    def _give_up_if_failing(self, d: int, exc: Exception, message: str) -> None:
        """Count a file that failed on destination ``d``; stop the run once
        ``GIVE_UP_AFTER`` did in a row for reasons a retry might fix (a
        source or destination that is gone), rather than retry every file."""
        self.failing[d] = self.failing.get(d, 0) + 1 if transient(exc) else 0
        if self.failing[d] >= GIVE_UP_AFTER:
            raise TransferFailed(
                f"{self.failing[d]} files in a row failed, the last with: {message}; "
                "the run stopped, and the next one resumes where it ended"
            )

    async def _to_dest(self, item: Item, d: int, hash_check: bool) -> bool:
        """Copy ``item`` to destination ``d``; False when a digest comparison
        found it already there."""
        sink = self.sinks[d]
        if hash_check:

            async def compare() -> bool:
                return await self.source.digest(item.rel) == await sink.digest(item.rel)

            if await retried(compare):
                self.progress.bytes_total -= item.size
                return False
        verify = self.delete_source
        self.written.add(d)
        await retried(lambda: self._copy_once(item, sink, verify))
        return True

    async def _copy_once(self, item: Item, sink: Sink, verify: bool) -> None:
        counted = 0
        hasher = hashlib.sha256() if verify else None

        def on_chunk(n: int) -> None:
            nonlocal counted
            counted += n
            self.progress.bytes_done += n

        try:
            if item.size <= SMALL:
                data = await self.source.read_small(item)
                written = len(data)
                if written == item.size:
                    if hasher is not None:
                        hasher.update(data)
                    await sink.put_small(item, data)
                    on_chunk(written)
            else:
                stream = _tap(self.source.open(item), item.size, on_chunk, hasher)
                written = await sink.write(item, stream)
            if written != item.size:
                raise source_changed(item.size, written)
            if hasher is not None and await sink.digest(item.rel) != hasher.hexdigest():
                raise TransferFailed("the copy read back differs from the source (SHA-256)")
        except BaseException:
            self.progress.bytes_done -= counted  # this attempt's bytes start over
            raise

    async def _delete_source(self, item: Item, recorder: Recorder) -> None:
        """Delete a verified file unless it changed since it was listed."""
        try:
            now = await self.source.stat(item.rel)
            if now is None:
                return
            if now.size != item.size or now.mtime != item.mtime:
                log.info("source changed after copy; kept", task=self.task_id, path=item.rel)
                return
            if self._racy(item) and not await self._still_copied(item.rel):
                # Rewritten within its clock's tick since it was read.
                log.info("source changed after copy; kept", task=self.task_id, path=item.rel)
                return
            await self.source.delete(item.rel)
        except Exception as exc:
            # A failure of this file alone, recorded: an error escaping here
            # ended the TaskGroup and dropped every deletion after it.
            message = f"copied, but the source was not deleted: {describe(exc)}"
            log.info("source delete failed", task=self.task_id, path=item.rel, error=message)
            self.progress.files_failed += 1
            if len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append((item.rel, message))
            # Recorded failed: the next run looks at the file again.
            rec = FileRecord(item.size, item.mtime, self.run_no, FileState.FAILED, message)
            for d in range(len(self.sinks)):
                recorder.note(d, item.rel, rec)

    async def _still_copied(self, rel: str) -> bool:
        """Whether the source's bytes now are those every destination holds."""
        now = await retried(lambda: self.source.digest(rel))
        for sink in self.sinks:
            held = await retried(functools.partial(sink.digest, rel))
            if held != now:
                return False
        return True


def _tap(
    stream: AsyncIterator[bytes],
    size: int,
    on_chunk: Callable[[int], None],
    hasher: hashlib._Hash | None,
) -> AsyncIterator[bytes]:
    """Count (and hash) the chunks; a source that turns out longer or shorter
    than listed fails the stream *before* the destination commits."""

    async def gen() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in stream:
            seen += len(chunk)
            if seen > size:
                break
            if hasher is not None:
                hasher.update(chunk)
            on_chunk(len(chunk))
            yield chunk
        if seen != size:
            raise source_changed(size, "more" if seen > size else seen)

    return gen()
