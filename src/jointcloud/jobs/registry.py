"""Every job the service runs, built from the context."""

from __future__ import annotations

from jointcloud.context import Context
from jointcloud.jobs.base import Job
from jointcloud.jobs.drain import DrainJob
from jointcloud.jobs.gc import GcJob
from jointcloud.jobs.health import HealthJob
from jointcloud.jobs.names import JOB_NAMES
from jointcloud.jobs.recode import RecodeJob
from jointcloud.jobs.repair import RepairJob
from jointcloud.jobs.scrub import ScrubJob
from jointcloud.jobs.sync import SyncJob

__all__ = ["JOB_NAMES", "build_jobs"]


def build_jobs(ctx: Context) -> list[Job]:
    s = ctx.settings
    return [
        GcJob(ctx, s.gc_interval, s.gc_delay, s.multipart_expiry),
        RepairJob(ctx, s.repair_interval),
        ScrubJob(ctx, s.scrub_interval, s.scrub_mbps),
        HealthJob(ctx, s.health_interval),
        DrainJob(ctx, s.drain_interval),
        RecodeJob(ctx, s.recode_interval),
        SyncJob(ctx, 1.0),  # due tasks are looked for every second
    ]
