"""Every job the service runs, built from the context."""

from __future__ import annotations

from jointcloud.context import Context
from jointcloud.jobs.base import Job
from jointcloud.jobs.gc import GcJob
from jointcloud.jobs.repair import RepairJob
from jointcloud.jobs.scrub import ScrubJob

JOB_NAMES = ("gc", "repair", "scrub")


def build_jobs(ctx: Context) -> list[Job]:
    s = ctx.settings
    return [
        GcJob(ctx, s.gc_interval, s.gc_delay),
        RepairJob(ctx, s.repair_interval),
        ScrubJob(ctx, s.scrub_interval, s.scrub_mbps),
    ]
