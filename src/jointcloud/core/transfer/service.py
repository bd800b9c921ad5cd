"""Transfer tasks as the user sees them: create (sync, import, export), get,
list, cancel. Running them is ``core.transfer.runner``'s job; docs/sync.md has the
rules."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from jointcloud.core.buckets import PackageService, optional_policy
from jointcloud.core.models import Package, TaskKind, TaskState, TransferTask, UserSpace
from jointcloud.core.objects import ObjectService
from jointcloud.core.paths import entity_name
from jointcloud.core.transfer.runner import TaskRunner
from jointcloud.core.transfer.spec import (
    TransferFilter,
    Trigger,
    bool_field,
    id_field,
    inside,
    join,
    parse_mode,
    transfer_path,
)
from jointcloud.core.transfer.trees import Item, SpaceTree, reserved
from jointcloud.core.userspaces import SpacePool, UserSpaceService
from jointcloud.errors import BadArgument, BlockNotFound, Conflict, NotFound, TaskNotFound
from jointcloud.meta import transfers as repo
from jointcloud.meta.db import Database
from jointcloud.meta.rows import now

# Import/export up to this much runs inside the request; above, it is a task.
INLINE_MAX_FILES = 1000
INLINE_MAX_BYTES = 64 << 20
MAX_DESTS = 64  # destinations of one sync task


def check_not_reserved(space: UserSpace, path: str, field: str) -> None:
    for area in reserved(space):
        if inside(path, area):
            raise BadArgument(
                f"{field} {path!r} is inside JointCloud's block area {area!r} of user space "
                f"{space.user_space_id}"
            )


@dataclass(frozen=True)
class TaskView:
    task: TransferTask
    failures: list[tuple[str, str]]


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


def _selected(items: list[Item], select: TransferFilter, where: str) -> list[Item]:
    if select == TransferFilter():
        return items
    chosen = [i for i in items if select.selects(i.rel, i.size)]
    if not chosen:
        raise BadArgument(f"filter selects none of the {len(items)} files of {where}")
    return chosen


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

    async def create_sync(self, user_id: int, body: dict[str, Any]) -> TaskView:
        src_id = id_field(body, "srcUserSpaceID")
        src_path = transfer_path(body.get("srcPath"), "srcPath")
        raw_dests = body.get("dests")
        if not isinstance(raw_dests, list) or not raw_dests:
            raise BadArgument("dests must list at least one destination {userSpaceID, path}")
        if len(raw_dests) > MAX_DESTS:
            raise BadArgument(f"dests lists {len(raw_dests)} destinations; at most {MAX_DESTS}")
        checked: list[tuple[int, str]] = []
        for i, raw in enumerate(raw_dests):
            if not isinstance(raw, dict):
                raise BadArgument(f"dests[{i}] must be an object {{userSpaceID, path}}")
            dest_id = id_field(raw, "userSpaceID", f"dests[{i}].userSpaceID")
            checked.append((dest_id, transfer_path(raw.get("path"), f"dests[{i}].path")))
        mode, compare = parse_mode(body)
        trigger = Trigger.parse(body.get("trigger"))
        select = TransferFilter.parse(body.get("filter"))
        delete_source = bool_field(body, "deleteSource")
        src = await self.spaces.get(user_id, src_id)
        check_not_reserved(src, src_path, "srcPath")
        dests: list[dict[str, Any]] = []
        for i, (dest_id, path) in enumerate(checked):
            space = await self.spaces.get(user_id, dest_id)
            check_not_reserved(space, path, f"dests[{i}].path")
            if dest_id == src_id and inside(path, src_path):
                raise BadArgument(
                    f"dests[{i}].path {path!r} is inside srcPath {src_path!r} of the same "
                    "user space: the copy would copy itself"
                )
            dest = {"userSpaceID": dest_id, "path": path}
            if dest in dests:
                raise BadArgument(f"dests[{i}] repeats an earlier destination")
            dests.append(dest)
        spec: dict[str, Any] = {
            "srcUserSpaceID": src_id,
            "srcPath": src_path,
            "dests": dests,
            "mode": mode,
            "compare": compare,
            "trigger": trigger.to_json(),
            "filter": select.to_json(),
            "deleteSource": delete_source,
        }
        ts = now()
        async with self.db.write() as conn:
            task = await repo.create(conn, user_id, TaskKind.SYNC, spec, ts, trigger.first_run(ts))
        self.runner.poke()
        return TaskView(task, [])

    # -- import / export -------------------------------------------------------

    async def _list_tree(self, space: UserSpace, path: str) -> list[Item]:
        tree = await self.pool.open_tree(space)
        try:
            return [i async for i in SpaceTree(tree, path, reserved(space)).items()]
        finally:
            await tree.close()

    async def _affinity(self, user_id: int, body: dict[str, Any]) -> int | None:
        """The optional ``affinity``: one of the caller's user spaces."""
        if body.get("affinity") is None:
            return None
        affinity = id_field(body, "affinity")
        try:
            await self.spaces.get(user_id, affinity)
        except NotFound:
            raise BadArgument(f"affinity: user space {affinity} does not exist") from None
        return affinity

    async def create_import(self, user_id: int, body: dict[str, Any]) -> ImportAnswer:
        # Everything is checked before the package is created: a refused
        # import leaves neither a package nor a task behind.
        space_id = id_field(body, "userSpaceID")
        path = transfer_path(body.get("path"), "path")
        bucket_id = id_field(body, "bucketID")
        name = entity_name(body.get("name"), "name")
        optional_policy(body.get("redundancy"))
        select = TransferFilter.parse(body.get("filter"))
        background = bool_field(body, "async")
        space = await self.spaces.get(user_id, space_id)
        affinity = await self._affinity(user_id, body)
        check_not_reserved(space, path, "path")
        await self.packages.buckets.get(user_id, bucket_id)
        items = await self._list_tree(space, path)
        if not items:
            raise BadArgument(f"path {path!r} of user space {space_id} holds no files")
        items = _selected(items, select, f"path {path!r} of user space {space_id}")
        package = await self.packages.create(user_id, bucket_id, name, body.get("redundancy"))
        spec: dict[str, Any] = {
            "srcUserSpaceID": space_id,
            "srcPath": path,
            "bucketID": bucket_id,
            "name": package.name,
            "packageID": package.package_id,
            "affinity": affinity,
        }
        if select != TransferFilter():
            spec["filter"] = select.to_json()
        if background or not _small(items):
            task = await self._create_task(user_id, TaskKind.IMPORT, spec)
            return ImportAnswer(package, task=TaskView(task, []))
        done = await self.runner.run_inline(user_id, TaskKind.IMPORT, spec, items)
        if done.state != TaskState.SUCCEEDED:
            await asyncio.shield(self.packages.delete(user_id, package.package_id))
            raise Conflict(f"import failed, the package was removed: {done.last_error}")
        return ImportAnswer(package, None, len(items), sum(i.size for i in items))

    async def create_export(self, user_id: int, body: dict[str, Any]) -> ExportAnswer:
        package_id = id_field(body, "packageID")
        space_id = id_field(body, "userSpaceID")
        root = transfer_path(body.get("rootPath"), "rootPath")
        select = TransferFilter.parse(body.get("filter"))
        background = bool_field(body, "async")
        space = await self.spaces.get(user_id, space_id)
        check_not_reserved(space, root, "rootPath")
        await self._check_destination(space, root)
        objs = await self.objects.package_objects(user_id, package_id)
        items = [Item(o.path, o.size, o.update_time.timestamp()) for o in objs]
        spec: dict[str, Any] = {"packageID": package_id, "userSpaceID": space_id, "rootPath": root}
        if select != TransferFilter():
            spec["filter"] = select.to_json()
            items = _selected(items, select, f"package {package_id}")
        if background or not _small(items):
            task = await self._create_task(user_id, TaskKind.EXPORT, spec)
            return ExportAnswer(task=TaskView(task, []))
        done = await self.runner.run_inline(user_id, TaskKind.EXPORT, spec, items)
        if done.state != TaskState.SUCCEEDED:
            raise Conflict(f"export failed: {done.last_error}")
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
            task = await repo.create(conn, user_id, kind, spec, ts, ts)
        self.runner.poke()
        return task

    # -- follow ----------------------------------------------------------------

    async def get(self, user_id: int, raw_id: object) -> TaskView:
        task_id = id_field({"taskID": raw_id}, "taskID")
        async with self.db.read() as conn:
            task = await repo.get(conn, task_id, user_id)
            if task is None:
                raise TaskNotFound(f"task {task_id} not found")
            failures = await repo.failures(conn, task_id, task.run_no)
        return TaskView(task, failures)

    async def list(self, user_id: int) -> list[TaskView]:
        """The caller's tasks, each with the failures of its last run."""
        async with self.db.read() as conn:
            tasks = await repo.list_for_user(conn, user_id)
            views = []
            for task in tasks:
                failed = task.progress.files_failed > 0
                failures = await repo.failures(conn, task.task_id, task.run_no) if failed else []
                views.append(TaskView(task, failures))
        return views

    async def cancel(self, user_id: int, task_id: object) -> None:
        view = await self.get(user_id, task_id)
        task = view.task
        finished = task.state in (TaskState.SUCCEEDED, TaskState.FAILED)
        finished_once = finished and task.next_run_time is None
        if task.state == TaskState.CANCELLED or finished_once:
            return  # nothing left to stop; the outcome stays visible
        async with self.db.write() as conn:
            if not await repo.cancel(conn, task.task_id, user_id):
                raise TaskNotFound(f"task {task.task_id} not found")
        self.runner.cancelled(task.task_id)
