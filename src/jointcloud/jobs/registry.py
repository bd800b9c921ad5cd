"""Every job the service runs, built from the context."""

from __future__ import annotations

from jointcloud.context import Context
from jointcloud.jobs.base import Job
from jointcloud.jobs.gc import GcJob

JOB_NAMES = ("gc",)


def build_jobs(ctx: Context) -> list[Job]:
    s = ctx.settings
    return [GcJob(ctx, s.gc_interval, s.gc_delay)]
