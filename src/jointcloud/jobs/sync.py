"""Transfer tasks (sync, import, export) as a job: one pass runs every due
task, and those that become due meanwhile, until none is running."""

from __future__ import annotations

import asyncio

from jointcloud.context import Context
from jointcloud.jobs.base import JobResult, Progress


class SyncJob:
    name = "sync"

    def __init__(self, ctx: Context, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval

    @property
    def wake(self) -> asyncio.Event:
        """Set when a task is created, so the runner starts a pass at once."""
        return self.ctx.tasks.wake

    async def has_work(self) -> bool:
        return await self.ctx.tasks.has_due()

    async def run_once(self, progress: Progress) -> JobResult:
        runs, failed = await self.ctx.tasks.run_due(progress)
        if not runs:
            return JobResult("no task due")
        return JobResult(f"{runs} task run(s), {failed} failed", done=runs, total=runs)
