"""Every job the service runs, each given the core services it needs.

This is the composition of the jobs: the one module of ``jobs/`` that takes
the whole ``Context`` (the composition root). A job itself sees only its
services — a bound core function, a core service object, its own cursor.
"""

from __future__ import annotations

from functools import partial

from jointcloud.context import Context
from jointcloud.core.drain import drain_once
from jointcloud.core.gc import collect_garbage
from jointcloud.core.gcholds import longest_delay
from jointcloud.core.health import check_health
from jointcloud.core.jobstate import JobBoard
from jointcloud.core.recode import Recoder
from jointcloud.core.scrub import Scrubber
from jointcloud.jobs.base import Job
from jointcloud.jobs.drain import DrainBlocks, DrainJob
from jointcloud.jobs.gc import CollectGarbage, GcJob
from jointcloud.jobs.health import HealthJob, ProbeSpaces
from jointcloud.jobs.names import JOB_NAMES
from jointcloud.jobs.recode import RecodeJob, RecodeServices
from jointcloud.jobs.repair import RepairJob
from jointcloud.jobs.runner import JobRunner
from jointcloud.jobs.scrub import ScrubJob, ScrubServices
from jointcloud.jobs.sync import SyncJob

__all__ = ["JOB_NAMES", "build_jobs", "build_runner", "job_board"]


def job_board(ctx: Context) -> JobBoard:
    return JobBoard(ctx.db)


def collect(ctx: Context, *, serving: bool = False) -> CollectGarbage:
    """GC bound to the store; in a server, waiting the longest delay a live
    server process counts on (an operator's pass takes the one it is given)."""
    if serving:
        return partial(collect_garbage, ctx.db, ctx.store, longest=partial(longest_delay, ctx.db))
    return partial(collect_garbage, ctx.db, ctx.store)


def probe_spaces(ctx: Context) -> ProbeSpaces:
    return partial(check_health, ctx.db, ctx.pool)


def drain_blocks(ctx: Context) -> DrainBlocks:
    return partial(drain_once, ctx.db, ctx.store)


def recode_services(ctx: Context) -> RecodeServices:
    return RecodeServices(Recoder(ctx.db, ctx.store), job_board(ctx).cursor(RecodeJob.name))


def scrub_services(ctx: Context) -> ScrubServices:
    return ScrubServices(
        partial(Scrubber, ctx.db, ctx.repair), job_board(ctx).cursor(ScrubJob.name)
    )


def build_jobs(ctx: Context, *, serving: bool = False) -> list[Job]:
    s = ctx.settings
    return [
        GcJob(collect(ctx, serving=serving), s.gc_interval, s.gc_delay, s.multipart_expiry),
        RepairJob(ctx.repair, s.repair_interval),
        ScrubJob(scrub_services(ctx), s.scrub_interval, s.scrub_mbps),
        HealthJob(probe_spaces(ctx), s.health_interval),
        DrainJob(drain_blocks(ctx), s.drain_interval),
        RecodeJob(recode_services(ctx), s.recode_interval),
        SyncJob(ctx.tasks, 1.0),  # due tasks are looked for every second
    ]


def build_runner(ctx: Context, owner: str | None = None, *, serving: bool = False) -> JobRunner:
    """A runner of every job, on the context's job board (``serving``: in
    ``jcs serve``, not an operator's one pass)."""
    return JobRunner(job_board(ctx), build_jobs(ctx, serving=serving), owner)
