"""Transfer tasks (sync, import, export) as a job: one pass runs every due
task, and those that become due meanwhile, until none is running."""

from __future__ import annotations

import asyncio
from typing import Protocol

from jointcloud.jobs.base import JobResult, Progress


class DueTasks(Protocol):
    """What the job needs of the core task runner."""

    @property
    def wake(self) -> asyncio.Event: ...

    async def has_due(self) -> bool: ...

    async def run_due(self, progress: Progress | None = None) -> tuple[int, int]: ...


class SyncJob:
    name = "sync"

    def __init__(self, tasks: DueTasks, interval: float) -> None:
        self.tasks = tasks
        self.interval = interval

    @property
    def wake(self) -> asyncio.Event:
        """Set when a task is created, so the runner starts a pass at once."""
        return self.tasks.wake

    async def has_work(self) -> bool:
        return await self.tasks.has_due()

    async def run_once(self, progress: Progress) -> JobResult:
        runs, failed = await self.tasks.run_due(progress)
        if not runs:
            return JobResult("no task due")
        return JobResult(
            f"{runs} task run(s), {failed} failed", done=runs, total=runs, failed=failed
        )
