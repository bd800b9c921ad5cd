"""Garbage collection as a job (the work itself is ``core.gc``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from jointcloud.core.gc import GcReport
from jointcloud.jobs.base import JobResult, Progress


class CollectGarbage(Protocol):
    """One collection pass (``core.gc.collect_garbage`` bound to its store)."""

    async def __call__(
        self, delay: timedelta, progress: Progress, *, multipart_expiry: timedelta
    ) -> GcReport: ...


class GcJob:
    name = "gc"

    def __init__(
        self,
        collect: CollectGarbage,
        interval: float,
        delay: timedelta,
        multipart_expiry: timedelta,
    ) -> None:
        self.collect = collect
        self.interval = interval
        self.delay = delay
        self.multipart_expiry = multipart_expiry

    async def run_once(self, progress: Progress) -> JobResult:
        report = await self.collect(self.delay, progress, multipart_expiry=self.multipart_expiry)
        return JobResult(
            f"removed {report.blocks} blocks of {report.layouts} unreferenced layouts "
            f"({report.owed} owed until their space answers), "
            f"{report.strays} blocks owed before, "
            f"{report.uploads} abandoned multipart uploads, "
            f"{report.temp_files} leftover temporary files, "
            f"{report.credentials} expired S3 credentials, "
            f"{report.tasks} finished transfer tasks",
            done=report.layouts,
            total=report.layouts,
        )
