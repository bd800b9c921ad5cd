"""``jcs admin``: operator commands that run on the server machine, against
its data dir and metadata database (not over HTTP): list jobs, run any job
once with a progress bar, check the blocks against the metadata (fsck), back
the SQLite metadata database up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from jointcloud.cli.common import CliError, GlobalOptions, err, out
from jointcloud.config import ConfigError, Settings
from jointcloud.errors import DomainError
from jointcloud.jobs.names import JOB_NAMES

if TYPE_CHECKING:  # the server's modules load only when an admin command runs
    from jointcloud.context import Context
    from jointcloud.core.jobstate import JobState

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, help="Operator commands (on the server machine).")


@dataclass(frozen=True)
class SpaceAccess:
    """Which spaces an admin command may open: the server's own flags of
    that name, given again (an admin command is not the server process, so
    it cannot know them; without them fsck saw a loopback S3 space of a
    server started with --allow-private-endpoints as unreachable)."""

    local_roots: list[str] | None
    allow_private_endpoints: bool


_ACCESS = "jointcloud.admin.space_access"  # click's meta is shared by the subcommands


@app.callback()
def admin(
    ctx: typer.Context,
    local_root: Annotated[
        list[str] | None,
        typer.Option(
            "--local-root",
            help="as jcs serve's: a directory that may hold Local user spaces "
            "(repeatable; else $JCS_LOCAL_ROOTS)",
        ),
    ] = None,
    allow_private_endpoints: Annotated[
        bool,
        typer.Option(
            "--allow-private-endpoints",
            help="as jcs serve's: open remote spaces on loopback/private endpoints "
            "(else $JCS_ALLOW_PRIVATE_ENDPOINTS)",
        ),
    ] = False,
) -> None:
    """Operator commands (on the server machine). Give the server's
    --local-root and --allow-private-endpoints here too, if it was started
    with them."""
    ctx.meta[_ACCESS] = SpaceAccess(local_root, allow_private_endpoints)


def _settings(ctx: typer.Context, data_dir: str | None, database_url: str | None) -> Settings:
    opts = ctx.find_root().obj
    given = data_dir or (opts.data_dir if isinstance(opts, GlobalOptions) else None)
    access = ctx.meta.get(_ACCESS)
    if not isinstance(access, SpaceAccess):
        access = SpaceAccess(None, False)
    try:
        return Settings.load(
            given,
            None,
            database_url,
            local_roots=access.local_roots,
            allow_private_endpoints=access.allow_private_endpoints,
        )
    except ConfigError as exc:  # names the variable; no traceback
        raise CliError("BadArgument", f"configuration: {exc.message}") from None


def _run(settings: Settings, body: Callable[[Context], Awaitable[T]]) -> T:
    async def main() -> T:
        if not (settings.data_dir / "master.key").exists():
            raise CliError(
                "BadArgument", f"{settings.data_dir} is not a jcs data dir (no master.key)"
            )
        from jointcloud.context import Context

        context = await Context.open(settings)
        try:
            return await body(context)
        finally:
            await context.close()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        raise CliError(type(exc).__name__, exc.message) from exc


DataDir = Annotated[str | None, typer.Option("--data-dir", help="server data dir")]
DbUrl = Annotated[str | None, typer.Option("--database-url", help="metadata database URL")]


@app.command("jobs")
def list_jobs(ctx: typer.Context, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Jobs, their state and progress."""

    from jointcloud.jobs.registry import build_runner

    async def body(context: Context) -> list[JobState]:
        runner = build_runner(context)
        await runner.register()
        return await runner.board.states()

    states = _run(_settings(ctx, data_dir, database_url), body)
    table = Table("job", "state", "progress", "runs", "last finished", "next run", "message")
    for s in states:
        prog = f"{s.progress_done}/{s.progress_total}" if s.progress_total else str(s.progress_done)
        table.add_row(
            s.name,
            s.state if s.state != "running" else f"running ({s.lease_owner})",
            prog,
            str(s.runs),
            s.last_finished.astimezone().strftime("%Y-%m-%d %H:%M:%S") if s.last_finished else "-",
            s.next_run.astimezone().strftime("%Y-%m-%d %H:%M:%S") if s.next_run else "-",
            # A message may quote names users chose ("space q[x] ..."): not markup.
            Text((s.last_error or s.message)[:80]),
        )
    out.print(table)


def _job_command(name: str) -> None:
    def command(
        ctx: typer.Context,
        once: Annotated[bool, typer.Option("--once", help="run one pass (the default)")] = True,
        until_done: Annotated[
            bool, typer.Option("--until-done", help="repeat passes while work is left")
        ] = False,
        data_dir: DataDir = None,
        database_url: DbUrl = None,
    ) -> None:
        from jointcloud.core.gcholds import DelayAnnouncement
        from jointcloud.jobs.registry import build_runner

        async def body(context: Context) -> list[tuple[str, bool]]:
            # A pass stages blocks (recode, repair, drain) and renews them for
            # its own GC delay: the servers' GC must wait that long too.
            announcement = DelayAnnouncement(context.db, context.settings.gc_delay)
            await announcement.start()
            try:
                return await passes(context)
            finally:
                await announcement.stop()

        async def passes(context: Context) -> list[tuple[str, bool]]:
            """Each pass's line and whether it failed: only those are kept
            (a repair's result holds its outcomes, and a backlog of 40,000
            layouts held 40,000 of them until the end; found by review)."""
            runner = build_runner(context)
            results: list[tuple[str, bool]] = []
            with Progress(
                TextColumn(f"{name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}", markup=False),
                TimeElapsedColumn(),
                console=err,
            ) as bar:
                task = bar.add_task("", total=None)

                def report(done: int, total: int, message: str) -> None:
                    bar.update(task, completed=done, total=total or None, description=message)

                while True:
                    result = await runner.run_now(name, report)
                    results.append((result.message, bool(result.failed)))
                    if not (until_done and result.more):
                        return results

        results = _run(_settings(ctx, data_dir, database_url), body)
        for message, _ in results:
            out.print(f"{name}: {message}", markup=False)
        if any(failed for _, failed in results):
            raise typer.Exit(1)

    command.__doc__ = (
        f"Run the {name} job (one pass with --once).\n\n"
        "Exit status: 0 when the pass did its work, 1 when it could not do some of it "
        "(named in its line; the servers retry it later) or could not run."
    )
    app.command(name)(command)


for _name in JOB_NAMES:
    _job_command(_name)


@app.command("fsck")
def fsck_command(
    ctx: typer.Context,
    deep: Annotated[
        bool, typer.Option("--deep", help="read and authenticate every block, not just its size")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="queue under-replicated layouts for repair and delete orphans "
            "older than the GC delay",
        ),
    ] = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Check the metadata against the blocks in every user space.

    Reports missing, corrupt, unreachable, orphan (no layout references them)
    and under-replicated blocks, layouts lost or unreadable until their
    spaces answer, and objects inconsistent with their parts (with --deep:
    with their recorded hash too), in a table and a summary line.

    Exit status: 0 when everything is clean, 1 when problems were found (or
    the check itself failed: then an error line is printed on stderr).
    """
    from jointcloud.core.fsck import FsckReport, fsck

    async def body(context: Context) -> FsckReport:
        with Progress(
            TextColumn("fsck"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=None)

            def report(done: int, total: int, message: str) -> None:
                bar.update(task, completed=done, total=total or None, description=message)

            return await fsck(context, deep=deep, repair=repair, progress=report)

    result = _run(_settings(ctx, data_dir, database_url), body)
    if result.findings or result.unreachable_spaces:
        table = Table("kind", "space", "layout", "block", "key", "detail")
        for name, why in sorted(result.unreachable_spaces.items()):
            table.add_row(*map(Text, ("unreachable", name, "-", "-", "(not listed)", why[:100])))
        for f in result.sorted_findings():
            cells = (
                f.kind,
                f.space_name or "-",
                str(f.layout_id) if f.layout_id is not None else "-",
                str(f.block_index) if f.block_index is not None else "-",
                f.key or "-",
                f.detail[:100],
            )
            table.add_row(*map(Text, cells))  # names and keys are not markup
        out.print(table)
    out.print(result.summary())
    if repair:
        out.print(
            f"fsck: queued {result.enqueued} layouts for repair, "
            f"deleted {result.orphans_deleted} orphans"
        )
    if not result.clean:
        raise typer.Exit(1)


@app.command("backup")
def backup_command(
    ctx: typer.Context,
    dest: Annotated[str, typer.Argument(metavar="DEST", help="the file to write (must not exist)")],
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Copy the SQLite metadata database to DEST, consistent, while the server runs.

    The copy is one transaction's view (VACUUM INTO), checked, synced, and
    mode 0600. It holds every object's metadata and the small objects stored
    inline; it does not hold master.key, without which nothing can be read:
    keep a copy of that file apart (it never changes). PostgreSQL: use
    pg_dump. Restoring is in docs/durability.md.
    """
    from pathlib import Path

    from jointcloud.core.backup import back_up_metadata

    settings = _settings(ctx, data_dir, database_url)
    try:
        made = back_up_metadata(settings.db_url, Path(dest).expanduser().absolute())
    except DomainError as exc:
        raise CliError(type(exc).__name__, exc.message) from exc
    out.print(f"backed up the metadata to {made.path} ({made.size} bytes)", markup=False)
    out.print(
        f"master.key is not in the backup: keep a copy of {settings.data_dir / 'master.key'} "
        "apart from it (without it no object can be read)",
        markup=False,
    )
