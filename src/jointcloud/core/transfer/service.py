"""Transfer tasks as the user sees them: create (sync, import, export), get,
list, cancel. Running them is ``core.transfer.runner``'s job; docs/sync.md has the
rules."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jointcloud.core.authz import Principal, require_account
from jointcloud.core.buckets import PackageService
from jointcloud.core.listing import decode_opaque, encode_opaque, not_issued
from jointcloud.core.models import Package, TaskKind, TaskState, TransferTask, UserSpace
from jointcloud.core.objects import ObjectService
from jointcloud.core.transfer.areas import Area, block_areas, paths
from jointcloud.core.transfer.commands import CreateSyncTask, ExportPackage, ImportPackage
from jointcloud.core.transfer.runner import TaskRunner
from jointcloud.core.transfer.spec import TransferFilter, inside, join, overlap, same_storage
from jointcloud.core.transfer.tasks import (
    ExportSpec,
    ImportSpec,
    SyncSpec,
    TaskResult,
    TaskSpec,
    result_from_json,
    spec_from_json,
    spec_to_json,
)
from jointcloud.core.transfer.trees import Item, SpaceTree, file_items
from jointcloud.core.userspaces import SpacePool, UserSpaceService
from jointcloud.errors import (
    BadArgument,
    BlockNotFound,
    Conflict,
    NotFound,
    QuotaExceeded,
    TaskNotFound,
)
from jointcloud.meta import transfers as repo
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

# Import/export up to this much runs inside the request; above, it is a task.
INLINE_MAX_FILES = 1000
INLINE_MAX_BYTES = 64 << 20
MAX_DESTS = 64  # destinations of one sync task
# Tasks one user may have scheduled at once (pending, running or recurring):
# each is a row the scheduler looks at on every pass, and a user with
# thousands of them delayed everyone's by a round of them.
MAX_SCHEDULED_TASKS = 100
# The most tasks one page of a user's task list holds (and its default size).
MAX_LISTED_TASKS = 1000


def check_not_reserved(areas: list[Area], path: str, field: str) -> None:
    """``path`` lies in no block area of any space on the same storage."""
    for area, owner in areas:
        if inside(path, area):
            raise BadArgument(
                f"{field} {path!r} is inside JointCloud's block area {area!r} of user space {owner}"
            )


@dataclass(frozen=True)
class TaskView:
    """A task as its owner sees it: the stored record, its request and
    result as typed values, and the failures of its last run."""

    task: TransferTask
    failures: list[tuple[str, str]]

    @property
    def spec(self) -> TaskSpec:
        return spec_from_json(self.task.kind, self.task.spec, strict=False)

    @property
    def result(self) -> TaskResult | None:
        return result_from_json(self.task.result)


@dataclass(frozen=True)
class ImportAnswer:
    package: Package
    task: TaskView | None = None
    object_count: int = 0
    total_size: int = 0


@dataclass(frozen=True)
class ExportAnswer:
    task: TaskView | None = None
    object_count: int = 0
    total_size: int = 0


async def _selected(items: list[Item], select: TransferFilter, where: str) -> list[Item]:
    if select == TransferFilter():
        return items
    chosen = await select.chosen(items)
    if not chosen:
        raise BadArgument(f"filter selects none of the {len(items)} files of {where}")
    return chosen


async def _room_for_a_task(conn: AsyncConnection, user_id: int) -> None:
    """``QuotaExceeded`` when the user has ``MAX_SCHEDULED_TASKS`` scheduled
    (counted in the creating transaction)."""
    if await repo.count_scheduled(conn, user_id) >= MAX_SCHEDULED_TASKS:
        raise QuotaExceeded(
            f"you have {MAX_SCHEDULED_TASKS} transfer tasks scheduled (pending, running "
            "or recurring), the most a user may have; cancel one to make another"
        )


@dataclass(frozen=True)
class TaskPage:
    """One page of a user's tasks; ``next_token`` continues it, if more remain."""

    tasks: list[TaskView]
    next_token: str | None


def _encode_task_token(last_id: int) -> str:
    return encode_opaque({"t": last_id})


def _decode_task_token(token: str) -> int:
    field = "continuation token"
    last_id = decode_opaque(token, field, max_length=64).get("t")  # issued: ~20 characters
    if type(last_id) is not int or not 0 < last_id < 2**63:
        raise not_issued(field)
    return last_id


def _why(done: TransferTask) -> str:
    """Why an inline run did not succeed (a cancelled one has no error; it
    answered "None", found by review)."""
    if done.state == TaskState.CANCELLED:
        return "its task was cancelled"
    return done.last_error or f"its task ended {done.state}"


def _small(items: list[Item]) -> bool:
    return len(items) <= INLINE_MAX_FILES and sum(i.size for i in items) <= INLINE_MAX_BYTES


class TransferService:
    def __init__(
        self,
        db: Database,
        pool: SpacePool,
        spaces: UserSpaceService,
        packages: PackageService,
        objects: ObjectService,
        runner: TaskRunner,
    ) -> None:
        self.db = db
        self.pool = pool
        self.spaces = spaces
        self.packages = packages
        self.objects = objects
        self.runner = runner

    # -- sync ------------------------------------------------------------------

    async def create_sync(self, principal: Principal, cmd: CreateSyncTask) -> TaskView:
        label = cmd.label
        if not cmd.dests:
            raise BadArgument(f"{label('dests')} must list at least one destination")
        if len(cmd.dests) > MAX_DESTS:
            raise BadArgument(
                f"{label('dests')} lists {len(cmd.dests)} destinations; at most {MAX_DESTS}"
            )
        src = await self.spaces.get(principal, cmd.src_space_id)
        check_not_reserved(await block_areas(self.db, src), cmd.src_path, label("src_path"))
        seen: list[tuple[UserSpace, str]] = []
        for i, dest in enumerate(cmd.dests):
            space = await self.spaces.get(principal, dest.space_id)
            where = label(f"dest[{i}].path")
            check_not_reserved(await block_areas(self.db, space), dest.path, where)
            if dest in cmd.dests[:i]:
                raise BadArgument(f"{label(f'dest[{i}]')} repeats an earlier destination")
            # Either way round: a destination inside the source copies the
            # copy again; a source inside its destination is overwritten
            # by the files it is being read for, before they are read.
            if same_storage(space, src) and inside(dest.path, cmd.src_path):
                raise BadArgument(
                    f"{where} {dest.path!r} is inside {label('src_path')} {cmd.src_path!r} "
                    "in the same storage: the copy would copy itself"
                )
            if same_storage(space, src) and inside(cmd.src_path, dest.path):
                raise BadArgument(
                    f"{label('src_path')} {cmd.src_path!r} is inside {where} {dest.path!r} "
                    "in the same storage: the copy would write over its own source"
                )
            for j, (other, other_path) in enumerate(seen):
                if same_storage(space, other) and overlap(dest.path, other_path):
                    raise BadArgument(
                        f"{where} {dest.path!r} overlaps {label(f'dest[{j}].path')} "
                        f"{other_path!r} in the same storage"
                    )
            seen.append((space, dest.path))
        spec = SyncSpec(
            cmd.src_space_id,
            cmd.src_path,
            cmd.dests,
            cmd.mode,
            cmd.compare,
            cmd.trigger,
            cmd.filter,
            cmd.delete_source,
        )
        ts = now()
        async with self.db.write() as conn:
            await _room_for_a_task(conn, principal.user_id)
            task = await repo.create(
                conn,
                principal.user_id,
                TaskKind.SYNC,
                spec_to_json(spec),
                ts,
                cmd.trigger.first_run(ts),
            )
        self.runner.poke()
        return TaskView(task, [])

    # -- import / export -------------------------------------------------------

    async def _list_tree(self, space: UserSpace, path: str) -> list[Item]:
        tree = await self.pool.open_tree(space)
        try:
            areas = paths(await block_areas(self.db, space))
            return [i async for i in SpaceTree(tree, path, areas).items()]
        finally:
            await tree.close()

    async def _affinity(self, principal: Principal, cmd: ImportPackage) -> int | None:
        """The optional affinity: one of the caller's user spaces."""
        if cmd.affinity is None:
            return None
        try:
            await self.spaces.get(principal, cmd.affinity)
        except NotFound:
            raise BadArgument(
                f"{cmd.label('affinity')}: user space {cmd.affinity} does not exist"
            ) from None
        return cmd.affinity

    async def create_import(self, principal: Principal, cmd: ImportPackage) -> ImportAnswer:
        # Everything is checked before the package is created: a refused
        # import leaves neither a package nor a task behind.
        space_id, path, where = cmd.space_id, cmd.path, cmd.label("path")
        space = await self.spaces.get(principal, space_id)
        affinity = await self._affinity(principal, cmd)
        check_not_reserved(await block_areas(self.db, space), path, where)
        await self.packages.buckets.get(principal, cmd.bucket_id)
        items = await self._list_tree(space, path)
        if not items:
            raise BadArgument(f"{where} {path!r} of user space {space_id} holds no files")
        items = await _selected(items, cmd.filter, f"{where} {path!r} of user space {space_id}")
        redundancy = None if cmd.redundancy is None else cmd.redundancy.to_json()
        as_task = cmd.background or not _small(items)
        if as_task:
            async with self.db.read() as conn:
                await _room_for_a_task(conn, principal.user_id)
        package = await self.packages.create(principal, cmd.bucket_id, cmd.name, redundancy)
        spec = spec_to_json(
            ImportSpec(
                space_id,
                path,
                cmd.bucket_id,
                package.name,
                package.package_id,
                affinity,
                cmd.filter,
            )
        )
        if as_task:
            try:
                task = await self._create_task(principal.user_id, TaskKind.IMPORT, spec)
            except QuotaExceeded:  # another request took the last room meanwhile
                await asyncio.shield(self.packages.delete(principal, package.package_id))
                raise
            return ImportAnswer(package, task=TaskView(task, []))
        done = await self.runner.run_inline(principal.user_id, TaskKind.IMPORT, spec, items)
        if done.state != TaskState.SUCCEEDED:
            await asyncio.shield(self.packages.delete(principal, package.package_id))
            raise Conflict(f"import failed, the package was removed: {_why(done)}")
        return ImportAnswer(package, None, len(items), sum(i.size for i in items))

    async def create_export(self, principal: Principal, cmd: ExportPackage) -> ExportAnswer:
        package_id, space_id, root = cmd.package_id, cmd.space_id, cmd.root_path
        space = await self.spaces.get(principal, space_id)
        check_not_reserved(await block_areas(self.db, space), root, cmd.label("root_path"))
        await self._check_destination(space, root)
        objs = await self.objects.package_objects(principal, package_id)
        items = file_items(objs)
        spec = spec_to_json(ExportSpec(package_id, space_id, root, cmd.filter))
        if cmd.filter != TransferFilter():
            items = await _selected(items, cmd.filter, f"package {package_id}")
        if cmd.background or not _small(items):
            task = await self._create_task(principal.user_id, TaskKind.EXPORT, spec)
            return ExportAnswer(task=TaskView(task, []))
        done = await self.runner.run_inline(principal.user_id, TaskKind.EXPORT, spec, items)
        if done.state != TaskState.SUCCEEDED:
            raise Conflict(f"export failed: {_why(done)}")
        return ExportAnswer(None, len(items), sum(i.size for i in items))

    async def _check_destination(self, space: UserSpace, root: str) -> None:
        """A destination the rules refuse (the space, or a link out of it on
        the way to ``root``) is the caller's error, said before any copying."""
        tree = await self.pool.open_tree(space)
        try:
            if root:
                with contextlib.suppress(BlockNotFound):
                    await tree.stat(join(root, ".jcs-check"))
        finally:
            await tree.close()

    async def _create_task(
        self, user_id: int, kind: TaskKind, spec: dict[str, Any]
    ) -> TransferTask:
        ts = now()
        async with self.db.write() as conn:
            await _room_for_a_task(conn, user_id)
            task = await repo.create(conn, user_id, kind, spec, ts, ts)
        self.runner.poke()
        return task

    # -- follow ----------------------------------------------------------------

    async def get(self, principal: Principal, task_id: int) -> TaskView:
        require_account(principal)  # tasks work on user spaces: account-level
        async with self.db.read() as conn:
            task = await repo.get(conn, task_id, principal.user_id)
            if task is None:
                raise TaskNotFound(f"task {task_id} not found")
            failures = await repo.failures(conn, task_id, task.run_no)
        return TaskView(task, failures)

    async def list(
        self, principal: Principal, *, token: str | None = None, max_tasks: int = MAX_LISTED_TASKS
    ) -> TaskPage:
        """The caller's tasks by id, each with the failures of its last run:
        at most ``max_tasks``, after those the ``token`` of an earlier page
        covered (finished tasks are kept 7 days, so a list could grow long)."""
        require_account(principal)
        if not 1 <= max_tasks <= MAX_LISTED_TASKS:
            raise BadArgument.about("max tasks", f"must be between 1 and {MAX_LISTED_TASKS}")
        after = _decode_task_token(token) if token else 0
        async with self.db.read() as conn:
            tasks = await repo.list_for_user(
                conn, principal.user_id, after=after, limit=max_tasks + 1
            )
            more = len(tasks) > max_tasks
            views = []
            for task in tasks[:max_tasks]:
                failed = task.progress.files_failed > 0
                failures = await repo.failures(conn, task.task_id, task.run_no) if failed else []
                views.append(TaskView(task, failures))
        next_token = _encode_task_token(views[-1].task.task_id) if more else None
        return TaskPage(views, next_token)

    async def cancel(self, principal: Principal, task_id: int) -> None:
        view = await self.get(principal, task_id)
        task = view.task
        finished = task.state in (TaskState.SUCCEEDED, TaskState.FAILED)
        finished_once = finished and task.next_run_time is None
        if task.state == TaskState.CANCELLED or finished_once:
            return  # nothing left to stop; the outcome stays visible
        async with self.db.write() as conn:
            if not await repo.cancel(conn, task.task_id, principal.user_id):
                raise TaskNotFound(f"task {task.task_id} not found")
        self.runner.cancelled(task.task_id)
