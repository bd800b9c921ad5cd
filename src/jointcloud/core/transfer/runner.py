"""Runs transfer tasks: claims due ones under a lease, builds their two ends,
saves progress every second, stops on cancel or when a window closes, and
hands orphaned runs (a dead process's) to whoever claims them next."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from jointcloud.core.leases import new_owner, owner_dead, renewed_by
from jointcloud.core.models import TaskKind, TaskState, TransferTask, UserSpace
from jointcloud.core.objects import ObjectService
from jointcloud.core.transfer.areas import block_areas, paths
from jointcloud.core.transfer.engine import TransferRun, describe
from jointcloud.core.transfer.spec import Trigger
from jointcloud.core.transfer.tasks import (
    ExportSpec,
    ImportSpec,
    SyncSpec,
    TaskResult,
    result_to_json,
    spec_from_json,
)
from jointcloud.core.transfer.trees import (
    Item,
    PackageSink,
    PackageSource,
    Sink,
    Source,
    SpaceTree,
)
from jointcloud.core.userspaces import SpacePool
from jointcloud.errors import BadArgument, SpaceNotFound
from jointcloud.meta import accounts, spacestate
from jointcloud.meta import transfers as repo
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now
from jointcloud.spaces.base import Space

log = structlog.get_logger(__name__)

LEASE = timedelta(seconds=60)
SAVE_EVERY = 1.0
MAX_TASKS = 4
DUE_PAGE = 64  # due tasks read at a time while looking for work

Progress = Callable[[int, int, str], None]


def _held(task: TransferTask, ts: datetime) -> bool:
    """Leased by a live process (ours or another)."""
    return (
        task.lease_owner is not None
        and task.lease_until is not None
        and task.lease_until > ts
        and not owner_dead(task.lease_owner)
    )


@dataclass
class _Stop:
    reason: str | None = None


def _package_id(task: TransferTask) -> int | None:
    spec = spec_from_json(task.kind, task.spec, strict=False)
    return spec.package_id if isinstance(spec, (ImportSpec, ExportSpec)) else None


class TaskRunner:
    def __init__(
        self, db: Database, pool: SpacePool, objects: ObjectService, owner: str | None = None
    ) -> None:
        self.db = db
        self.pool = pool
        self.objects = objects
        self.owner = owner or new_owner()
        self.wake = asyncio.Event()
        self._cancel: dict[int, asyncio.Event] = {}
        self._resumed: set[int] = set()  # claimed with their run already open
        self._inline: set[int] = set()  # run inside a request (their package goes on failure)
        self.parallel = 8

    def poke(self) -> None:
        """A task became due: a waiting ``run_due`` looks now, not in a second."""
        self.wake.set()

    def cancelled(self, task_id: int) -> None:
        event = self._cancel.get(task_id)
        if event is not None:
            event.set()

    # -- claiming --------------------------------------------------------------

    async def _claim(self, task: TransferTask, ts: datetime) -> TransferTask | None:
        async with self.db.write() as conn:
            if not await repo.claim(conn, task, self.owner, ts + LEASE, ts):
                return None
            if task.run_open:
                self._resumed.add(task.task_id)
            return await repo.get(conn, task.task_id)

    async def _candidates(self, ts: datetime) -> AsyncGenerator[TransferTask]:
        """Tasks that may be due: open runs (held, or orphaned by a dead
        process) first, then those whose next run time has come, a page at a
        time, so that a caller stopping early reads what it used."""
        async with self.db.read() as conn:
            opened = await repo.open_runs(conn)
        for task in opened:
            yield task
        seen = {task.task_id for task in opened}
        after: tuple[datetime, int] | None = None
        while True:
            async with self.db.read() as conn:
                page = await repo.due(conn, ts, DUE_PAGE, after)
            for task in page:
                if task.task_id not in seen:
                    yield task
            if len(page) < DUE_PAGE:
                return
            last = page[-1]
            assert last.next_run_time is not None
            after = (last.next_run_time, last.task_id)

    async def claim_due(self, limit: int) -> list[TransferTask]:
        ts = now()
        claimed: list[TransferTask] = []
        if limit <= 0:
            return claimed
        candidates = self._candidates(ts)
        try:
            async for task in candidates:
                if task.task_id in self._cancel:
                    continue  # running here already
                if _held(task, ts):
                    continue
                got = await self._claim(task, ts)
                if got is not None:
                    claimed.append(got)
                    if len(claimed) >= limit:
                        break
        finally:
            await candidates.aclose()
        return claimed

    async def has_due(self) -> bool:
        """Whether some task is due or orphaned (what ``claim_due`` would take)."""
        ts = now()
        candidates = self._candidates(ts)
        try:
            async for task in candidates:
                if task.task_id not in self._cancel and not _held(task, ts):
                    return True
        finally:
            await candidates.aclose()
        return False

    async def run_due(self, progress: Progress | None = None) -> tuple[int, int]:
        """Run every due task, and those becoming due meanwhile, until none is
        running; returns (runs, failed runs)."""
        running: dict[int, asyncio.Task[TransferTask]] = {}
        runs = failed = 0
        try:
            while True:
                self.wake.clear()
                if len(running) < MAX_TASKS:
                    for task in await self.claim_due(MAX_TASKS - len(running)):
                        running[task.task_id] = asyncio.create_task(self.execute(task))
                        runs += 1
                if not running:
                    return runs, failed
                waker = asyncio.create_task(self.wake.wait())
                await asyncio.wait(
                    [*running.values(), waker], timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                waker.cancel()
                for task_id, job in list(running.items()):
                    if job.done():
                        del running[task_id]
                        if job.exception() is not None or job.result().state == TaskState.FAILED:
                            failed += 1
                if progress is not None:
                    progress(runs - len(running), runs, f"{len(running)} task(s) running")
        finally:
            for job in running.values():
                job.cancel()
            for job in running.values():
                with contextlib.suppress(BaseException):
                    await job

    async def run_inline(
        self, user_id: int, kind: TaskKind, spec: dict[str, Any], items: list[Item]
    ) -> TransferTask:
        """Create a task and run it in the caller (a small import/export)."""
        ts = now()
        async with self.db.write() as conn:
            task = await repo.create(conn, user_id, kind, spec, ts, None)
        claimed = await self._claim(task, ts)
        assert claimed is not None
        self._inline.add(task.task_id)
        try:
            return await self.execute(claimed, items)
        finally:
            self._inline.discard(task.task_id)

    # -- one run ---------------------------------------------------------------

    async def _space(self, space_id: int) -> UserSpace:
        # The run is open (claimed) before this: a delete or storage move
        # of the space either sees it and is refused, or ends before this
        # read, which then finds the space gone or where it went.
        async with self.db.write() as conn:
            await spacestate.share_space(conn, space_id)
            space = await accounts.get_space(conn, space_id)
        if space is None:
            raise SpaceNotFound(f"user space {space_id} no longer exists")
        return space

    async def _tree(self, space_id: int, path: str, opened: list[Space]) -> SpaceTree:
        record = await self._space(space_id)
        backend = await self.pool.open_tree(record)
        opened.append(backend)
        # Every block area on this storage, other spaces' too (transfer/areas.py).
        return SpaceTree(backend, path, paths(await block_areas(self.db, record)))

    async def _build(
        self, task: TransferTask, prelisted: list[Item] | None, opened: list[Space]
    ) -> TransferRun:
        # The trigger was checked (strictly) by ``execute``.
        spec = spec_from_json(task.kind, task.spec, strict=False)
        source: Source
        sinks: list[Sink]
        extra: dict[str, Any] = {"select": spec.filter}
        if isinstance(spec, SyncSpec):
            source = await self._tree(spec.src_space_id, spec.src_path, opened)
            sinks = [await self._tree(d.space_id, d.path, opened) for d in spec.dests]
            extra.update(mode=spec.mode, compare=spec.compare, delete_source=spec.delete_source)
        elif isinstance(spec, ImportSpec):
            source = await self._tree(spec.src_space_id, spec.src_path, opened)
            sinks = [
                PackageSink(self.objects, task.user_id, spec.package_id, affinity=spec.affinity)
            ]
        else:
            source = PackageSource(self.objects, task.user_id, spec.package_id)
            sinks = [await self._tree(spec.space_id, spec.root_path, opened)]
        return TransferRun(
            self.db,
            task.task_id,
            task.run_no,
            source,
            sinks,
            parallel=self.parallel,
            prelisted=prelisted,
            resumed=task.task_id in self._resumed,
            run_started=(task.last_run_time or now()).timestamp(),
            **extra,
        )

    async def execute(
        self, task: TransferTask, prelisted: list[Item] | None = None
    ) -> TransferTask:
        """Run (or resume) the claimed task's current run to its end, a pause,
        or a cancel; returns the task as stored afterwards."""
        try:
            trigger = (
                Trigger.from_json(task.spec.get("trigger"))
                if task.kind == TaskKind.SYNC
                else Trigger("once")
            )
        except BadArgument as exc:
            # Stored before a bound it breaks existed (e.g. an interval beyond
            # a year): fail it visibly, once, instead of every lease period.
            await self._finish(
                task,
                TaskState.FAILED,
                None,
                None,
                False,
                error=f"the task's trigger: {exc.message}",
            )
            return await self._reload(task)
        started = task.last_run_time or now()
        window_end: datetime | None = None
        if trigger.type == "window":
            window = trigger.window_at(now())
            if window is None:
                await self._finish(
                    task, TaskState.PENDING, None, trigger.next_window_start(now()), True
                )
                return await self._reload(task)
            window_end = window[1]
        self._cancel[task.task_id] = cancel = asyncio.Event()
        opened: list[Space] = []
        run: TransferRun | None = None
        stop = _Stop()
        work: asyncio.Task[None] | None = None
        keeper: asyncio.Task[None] | None = None
        try:
            run = await self._build(task, prelisted, opened)
            work = asyncio.create_task(run.run())
            keeper = asyncio.create_task(self._keep(task, run, work, stop, cancel, window_end))
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                if stop.reason is None:
                    raise  # we are being shut down
            outcome = stop.reason or "done"
            if outcome == "lost":
                return await self._reload(task)
            if outcome == "cancelled":
                await self._finish(task, TaskState.CANCELLED, run, None, False)
            elif outcome == "window":
                await self._finish(
                    task, TaskState.PENDING, run, trigger.next_window_start(now()), True
                )
            else:
                state = TaskState.FAILED if run.progress.files_failed else TaskState.SUCCEEDED
                result = None
                if task.kind != TaskKind.SYNC and state == TaskState.SUCCEEDED:
                    result = self._result(task, run)
                await self._finish(
                    task, state, run, trigger.next_run(started, now()), False, result=result
                )
        except asyncio.CancelledError:
            # Shutting down: leave the run open with no lease, so the next
            # server (or this one, restarted) resumes it at once.
            await asyncio.shield(self._finish(task, TaskState.RUNNING, run, now(), True))
            raise
        except Exception as exc:
            log.warning("transfer task failed", task=task.task_id, error=describe(exc))
            await self._finish(
                task,
                TaskState.FAILED,
                run,
                trigger.next_run(started, now()),
                False,
                error=describe(exc),
            )
        finally:
            for child in (keeper, work):
                if child is not None and not child.done():
                    child.cancel()
                    with contextlib.suppress(BaseException):
                        await child
            self._cancel.pop(task.task_id, None)
            self._resumed.discard(task.task_id)
            for backend in opened:
                with contextlib.suppress(Exception):
                    await backend.close()
        return await self._reload(task)

    @staticmethod
    def _result(task: TransferTask, run: TransferRun) -> dict[str, Any]:
        spec = spec_from_json(task.kind, task.spec, strict=False)
        package_id = spec.package_id if isinstance(spec, ImportSpec) else None
        selected = run.selected
        return result_to_json(TaskResult(len(selected), sum(i.size for i in selected), package_id))

    async def _reload(self, task: TransferTask) -> TransferTask:
        async with self.db.read() as conn:
            found = await repo.get(conn, task.task_id)
        return found or task

    @staticmethod
    def _summary(run: TransferRun | None) -> str | None:
        if run is None or not run.failures:
            return None
        path, error = run.failures[0]
        more = run.progress.files_failed - 1
        tail = f" (and {more} more)" if more > 0 else ""
        return f"{path}: {error}{tail}"

    async def _finish(
        self,
        task: TransferTask,
        state: TaskState,
        run: TransferRun | None,
        next_run: datetime | None,
        run_open: bool,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        progress = run.progress if run is not None else task.progress
        last_error = error or self._summary(run)
        if (
            task.kind == TaskKind.IMPORT
            and state == TaskState.FAILED
            and task.task_id not in self._inline
        ):
            last_error = (
                f"package {_package_id(task)} keeps the {progress.files_done} object(s) "
                f"imported; {last_error}"
            )
        async with self.db.write() as conn:
            await repo.finish(
                conn,
                task.task_id,
                self.owner,
                state=state,
                ts=now(),
                progress=progress,
                last_error=last_error,
                next_run=next_run,
                result=result,
                run_open=run_open,
            )

    async def _save(self, task: TransferTask, run: TransferRun, ts: datetime) -> TaskState | None:
        async with self.db.write() as conn:
            # Counters of a run still planning are not saved: a resumed run
            # counts again from zero while it plans, and the saved counters
            # went back to zero for a while (found by an e2e test under load).
            progress = run.progress if run.planned else None
            return await repo.renew(
                conn, task.task_id, self.owner, ts + LEASE, progress, self._summary(run)
            )

    async def _keep(
        self,
        task: TransferTask,
        run: TransferRun,
        work: asyncio.Task[None],
        stop: _Stop,
        cancel: asyncio.Event,
        window_end: datetime | None,
    ) -> None:
        """Every second: save counters, extend the lease, look for a cancel.
        A save that fails (the database out of reach for a moment) is tried
        again next second, but not past the lease's end (a save that hangs
        there has failed): another process may take the task then, and the
        run stops."""
        lease = LEASE.total_seconds()
        ends = time.monotonic() + lease  # claimed just before this
        while not work.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cancel.wait(), SAVE_EVERY)
            ts, started = now(), time.monotonic()
            state: TaskState | None
            try:
                state = await renewed_by(self._save(task, run, ts), ends)
            except Exception as exc:
                log.warning("transfer task lease not renewed", task=task.task_id, error=repr(exc))
                if time.monotonic() + SAVE_EVERY < ends:
                    continue
                state = None
            else:
                ends = started + lease
            if state == TaskState.CANCELLED:
                stop.reason = "cancelled"
            elif state is None:
                stop.reason = "lost"
            elif window_end is not None and ts >= window_end:
                stop.reason = "window"
            if stop.reason is not None:
                log.info("transfer task stopping", task=task.task_id, reason=stop.reason)
                work.cancel()
                return
