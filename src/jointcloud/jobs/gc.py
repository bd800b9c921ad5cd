"""Garbage collection as a job (the work itself is ``core.gc``)."""

from __future__ import annotations

from datetime import timedelta

from jointcloud.context import Context
from jointcloud.core.gc import collect_garbage
from jointcloud.jobs.base import JobResult, Progress


class GcJob:
    name = "gc"

    def __init__(
        self, ctx: Context, interval: float, delay: timedelta, multipart_expiry: timedelta
    ) -> None:
        self.ctx = ctx
        self.interval = interval
        self.delay = delay
        self.multipart_expiry = multipart_expiry

    async def run_once(self, progress: Progress) -> JobResult:
        report = await collect_garbage(
            self.ctx.db,
            self.ctx.store,
            self.delay,
            progress,
            multipart_expiry=self.multipart_expiry,
        )
        return JobResult(
            f"removed {report.blocks} blocks of {report.layouts} unreferenced layouts, "
            f"{report.uploads} abandoned multipart uploads, "
            f"{report.temp_files} leftover temporary files",
            done=report.layouts,
            total=report.layouts,
        )
