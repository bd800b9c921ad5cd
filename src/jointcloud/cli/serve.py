"""``jcs serve``: the host (``api/host.py``): listeners on uvicorn, background jobs."""

from __future__ import annotations

import asyncio
import gc
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from jointcloud.api.common.admission import raise_open_files_limit
from jointcloud.api.host import Host, check_listeners
from jointcloud.cli.workers import Workers, die_with, worker_command, worker_of
from jointcloud.config import ConfigError, Settings, sqlite_file
from jointcloud.logs import configure_logging
from jointcloud.redundancy.erasure import apply_malloc_tuning

# Blocking file I/O (local spaces) runs in the loop's default thread pool;
# Python's default of cpu+4 threads leaves a 2-core server mostly waiting on
# fsync when a sync task moves thousands of small files (measured: 2,000
# files took 7.9 s with 6 threads, 3.1 s with 32).
IO_THREADS = 32

# The cyclic collector, tuned for a server (docs/decisions.md, "The
# collector of a server process"): what start-up built (modules, classes,
# apps: ~160,000 tracked objects) is frozen out of every collection, and the
# youngest generation is collected after 10,000 net allocations instead of
# 700, above what one request keeps alive at once (a listing of 1,000
# objects holds ~4,000). Measured over 5 s of 1,000-object listings: 513 ms
# in collections, three of them full ones at 110 ms each, before; none after.
YOUNG_THRESHOLD = 10_000


def _tune_collector() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


def _announce_root_key(key: str, key_file: Path) -> None:
    """First start: the root key is in ``key_file`` (mode 0600). It is shown
    once on a terminal; when stdout goes elsewhere (a service manager, a log
    file) only the file is named, so the key does not end up in logs."""
    if sys.stdout.isatty():
        print(f"root API key (saved to {key_file}): {key}", flush=True)
    else:
        print(
            f"root API key saved to {key_file} (not printed: stdout is not a terminal)", flush=True
        )


async def serve(settings: Settings, *, worker: bool = False) -> None:
    """Serve until stopped; with ``settings.workers`` > 1, this process's
    workers too (``cli/workers.py``). ``worker``: this is one of them."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(IO_THREADS, thread_name_prefix="jcs-io")
    )
    workers = Workers(settings.workers - 1, worker_command()) if settings.workers > 1 else None
    host = Host(
        settings,
        say=lambda line: print(line, flush=True),
        on_root_key=lambda key: _announce_root_key(key, settings.data_dir / "root.key"),
        reuse_port=worker or workers is not None,
        claim=not worker,  # the first process finds the ports free; its workers join it
        on_ready=workers.start if workers is not None else None,
    )
    try:
        await host.serve()
    finally:
        if workers is not None:
            await workers.stop()


def _check_workers(settings: Settings) -> None:
    if settings.workers == 1:
        return
    if "api" not in settings.roles:
        raise ConfigError("--workers: workers serve the listeners; add the api role (--role)")
    if settings.db_url.startswith("sqlite") and sqlite_file(settings.db_url) is None:
        raise ConfigError(
            "--workers: several processes need a database file or PostgreSQL "
            "(--database-url); this SQLite URL names no file they could share"
        )


def run_server(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT. A listener naming no known protocol, or
    workers on an in-memory database, is a ``ConfigError`` raised before
    anything starts."""
    check_listeners(settings)
    _check_workers(settings)
    parent = worker_of()
    if parent is not None:  # one of the workers of ``parent``: the api role only
        die_with(parent)
        settings = replace(settings, roles=("api",), workers=1)
    # Multi-MiB segment buffers churn glibc's heap; see redundancy/erasure.py.
    apply_malloc_tuning()
    raise_open_files_limit()  # before the connection limit is derived from it
    configure_logging(settings.log_level, final=True)
    _tune_collector()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings, worker=parent is not None))
    else:
        uvloop.run(serve(settings, worker=parent is not None))
