"""``jcs sync`` and ``jcs package import|export``: transfer tasks, followed
with a progress bar (docs/sync.md)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from jointcloud.cli.client import JcsClient, open_client
from jointcloud.cli.commands_catalog import package_app, short_time
from jointcloud.cli.common import (
    CliError,
    format_size,
    options_of,
    out,
    parse_package,
    parse_redundancy,
    parse_size,
    progress,
)

app = typer.Typer(no_args_is_help=True, help="Sync tasks: copy directories between user spaces.")

POLL = 0.5
FINAL = ("succeeded", "failed", "cancelled")


def space_path(client: JcsClient, raw: str) -> tuple[int, str]:
    """``SPACE:PATH`` (space by name or id; PATH may be empty) → (id, path).
    A space's name may hold ``:`` itself: the split is the one whose left
    side names a space (the first ``:`` alone took ``a:b:x`` for space
    ``a``, path ``b:x``, when the user meant space ``a:b``; found by
    review); more than one is ambiguous, and the id form settles it."""
    if ":" not in raw or raw.startswith(":"):
        raise CliError("BadArgument", f"expected SPACE:PATH (e.g. mydisk:photos/2024), got {raw!r}")
    spaces = client.list_spaces()
    names = {str(s["name"]): int(s["userSpaceID"]) for s in spaces}
    ids = {int(s["userSpaceID"]) for s in spaces}
    found: list[tuple[str, int, str]] = []
    at = raw.find(":")
    while at > 0:
        name, path = raw[:at], raw[at + 1 :]
        if name in names:
            found.append((name, names[name], path))
        elif name.isdigit() and int(name) in ids:
            found.append((name, int(name), path))
        at = raw.find(":", at + 1)
    if not found:
        name = raw.partition(":")[0]
        raise CliError("DataNotFound", f"no user space named or numbered {name!r}")
    if len(found) > 1:
        which = ", ".join(f"{n!r} (id {i})" for n, i, _ in found)
        raise CliError(
            "BadArgument",
            f"{raw!r} could name more than one space: {which}; write the space's id, ID:PATH",
        )
    _, space_id, path = found[0]
    return space_id, path


def _progress_text(task: dict[str, Any]) -> str:
    p = task.get("progress") or {}
    text = (
        f"{p.get('filesDone', 0)}/{p.get('filesTotal', 0)} files, "
        f"{format_size(int(p.get('bytesDone', 0)))} of {format_size(int(p.get('bytesTotal', 0)))}"
    )
    if p.get("filesSkipped"):
        text += f", {p['filesSkipped']} unchanged"
    if p.get("filesFailed"):
        text += f", {p['filesFailed']} failed"
    return text


def run_stopped(task: dict[str, Any]) -> bool:
    """Whether a cancelled task's run has stopped, its counters final: a
    cancel is seen by the run within a second, which then saves its last
    counters and its finish time (a run that never started has nothing
    to stop)."""
    started, finished = task.get("lastRunTime"), task.get("lastFinishTime")
    if not started:
        return True
    if not finished:
        return False
    return datetime.fromisoformat(finished) >= datetime.fromisoformat(started)


def follow(client: JcsClient, task: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Poll the task with a progress bar until its run ends."""
    task_id = task["taskID"]
    label = f"{task['type']} task {task_id}"
    try:
        with progress(quiet) as bar:
            bar_id = bar.add_task(label, total=None)
            while True:
                p = task.get("progress") or {}
                total = int(p.get("bytesTotal", 0))
                bar.update(
                    bar_id,
                    total=total or None,
                    completed=int(p.get("bytesDone", 0)),
                    description=f"{label}: {p.get('filesDone', 0)}/{p.get('filesTotal', 0)} files",
                )
                if task["state"] == "cancelled":
                    if run_stopped(task):
                        return task
                elif task["state"] in FINAL and task.get("runs", 0) > 0:
                    return task
                if task["state"] == "pending" and task.get("runs", 0) > 0 and task["nextRunTime"]:
                    return task  # paused until its next window
                time.sleep(POLL)
                task = client.get("/v1/spaceSync/getTask", taskID=task_id)["task"]
    except KeyboardInterrupt:
        out.print(f"task {task_id} goes on in the background: jcs sync show {task_id} --watch")
        raise typer.Exit(130) from None


def report(task: dict[str, Any]) -> None:
    out.print(Text(f"task {task['taskID']} {task['state']}: {_progress_text(task)}"))
    if task.get("lastError"):
        out.print(Text(f"last error: {task['lastError']}"))
    outcome(task)


def outcome(task: dict[str, Any]) -> None:
    """Exit status 1 for a followed run that failed or was cancelled: every
    command that waits for a run (``--wait``, ``--watch``, import, export)
    ends as it did, so ``... && rm -r source`` never runs after a copy that
    did not finish (a cancelled one exited 0 until 2026-12-07)."""
    if task["state"] == "failed":
        raise CliError("OperationFailed", f"task {task['taskID']} failed: {task.get('lastError')}")
    if task["state"] == "cancelled":
        raise CliError(
            "OperationFailed", f"task {task['taskID']} was cancelled before its run finished"
        )


@app.command("create")
def create(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SRC_SPACE:PATH")],
    dests: Annotated[list[str], typer.Argument(metavar="DEST_SPACE:PATH...")],
    mode: Annotated[
        str, typer.Option(help="full: copy everything; diff: only new or changed")
    ] = "full",
    compare: Annotated[str, typer.Option(help="diff compares by sizeMtime or hash")] = "sizeMtime",
    every: Annotated[int | None, typer.Option(help="run every N seconds")] = None,
    window: Annotated[
        str | None, typer.Option(help="run daily inside HH:MM-HH:MM (e.g. 01:00-05:00)")
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of --window")] = "UTC",
    min_size: Annotated[str | None, typer.Option(help="skip files smaller than this")] = None,
    max_size: Annotated[str | None, typer.Option(help="skip files larger than this")] = None,
    include_ext: Annotated[list[str] | None, typer.Option(help="only these extensions")] = None,
    exclude_ext: Annotated[list[str] | None, typer.Option(help="never these extensions")] = None,
    include_path: Annotated[
        list[str] | None, typer.Option(help="only these paths (dir or glob, relative)")
    ] = None,
    exclude_path: Annotated[list[str] | None, typer.Option(help="never these paths")] = None,
    delete_source: Annotated[
        bool, typer.Option(help="delete each source file once its copies are verified")
    ] = False,
    wait: Annotated[bool, typer.Option(help="follow the first run with a progress bar")] = False,
) -> None:
    """Create a sync task from SRC_SPACE:PATH to one or more DEST_SPACE:PATH."""
    opts = options_of(ctx)
    if every is not None and window is not None:
        raise CliError("BadArgument", "give --every or --window, not both")
    trigger: dict[str, Any] = {"type": "once"}
    if every is not None:
        trigger = {"type": "interval", "seconds": every}
    elif window is not None:
        start, sep, end = window.partition("-")
        if not sep:
            raise CliError("BadArgument", f"--window must be HH:MM-HH:MM, got {window!r}")
        trigger = {"type": "window", "start": start, "end": end, "timezone": timezone}
    filt: dict[str, Any] = {}
    if min_size is not None:
        filt["minSize"] = parse_size(min_size)
    if max_size is not None:
        filt["maxSize"] = parse_size(max_size)
    for key, values in (
        ("includeExt", include_ext),
        ("excludeExt", exclude_ext),
        ("includePaths", include_path),
        ("excludePaths", exclude_path),
    ):
        if values:
            filt[key] = values
    with open_client(opts) as client:
        src_id, src_path = space_path(client, source)
        body = {
            "srcUserSpaceID": src_id,
            "srcPath": src_path,
            "dests": [
                {"userSpaceID": i, "path": p} for i, p in (space_path(client, d) for d in dests)
            ],
            "mode": mode,
            "compare": compare,
            "trigger": trigger,
            "filter": filt,
            "deleteSource": delete_source,
        }
        task = client.post("/v1/spaceSync/createTask", body)["task"]
        out.print(Text(f"created sync task {task['taskID']} (next run {task['nextRunTime']})"))
        if wait:
            report(follow(client, task, opts.quiet))


@app.command("ls")
def ls(ctx: typer.Context) -> None:
    """List transfer tasks (sync, import, export)."""
    tasks: list[dict[str, Any]] = []
    token = None
    with open_client(options_of(ctx)) as client:
        while True:  # every page
            page = client.get("/v1/spaceSync/listTasks", continuationToken=token)
            tasks.extend(page["tasks"])
            token = page.get("nextContinuationToken")
            if not token:
                break
    table = Table("id", "type", "state", "progress", "last run", "next run", "last error")
    for t in tasks:
        table.add_row(
            str(t["taskID"]),
            t["type"],
            t["state"],
            _progress_text(t),
            short_time(t.get("lastRunTime")),
            short_time(t.get("nextRunTime")),
            Text(str(t.get("lastError") or "")),
        )
    out.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(metavar="TASK_ID")],
    watch: Annotated[
        bool, typer.Option(help="follow the current run; exit 1 if it failed")
    ] = False,
) -> None:
    """Show one task: state, counts, bytes, last error, next run."""
    opts = options_of(ctx)
    with open_client(opts) as client:
        task = client.get("/v1/spaceSync/getTask", taskID=task_id)["task"]
        if watch:
            task = follow(client, task, opts.quiet)
    table = Table("field", "value", show_header=False)
    for key in ("taskID", "type", "state", "lastRunTime", "lastFinishTime", "nextRunTime"):
        table.add_row(key, str(task.get(key) or "-"))
    table.add_row("progress", _progress_text(task))
    table.add_row("lastError", Text(str(task.get("lastError") or "-")))
    for f in task.get("failures", [])[:10]:
        table.add_row("failed", Text(f"{f['path']}: {f['error']}"))
    if task.get("result"):
        table.add_row("result", str(task["result"]))
    out.print(table)
    if watch:  # it exited 0 after following a failed run (found by review)
        outcome(task)


@app.command("cancel")
def cancel(ctx: typer.Context, task_id: Annotated[int, typer.Argument(metavar="TASK_ID")]) -> None:
    """Cancel a task: a running copy stops within seconds, nothing partial is left."""
    with open_client(options_of(ctx)) as client:
        client.post("/v1/spaceSync/cancelTask", {"taskID": task_id})
    out.print(f"cancelled task {task_id}")


@package_app.command("import")
def package_import(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SPACE:PATH")],
    target: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE")],
    redundancy: Annotated[str | None, typer.Option(help="policy of the new package")] = None,
    wait: Annotated[bool, typer.Option(help="follow the task with a progress bar")] = True,
) -> None:
    """Import every file under SPACE:PATH as the objects of a new package."""
    opts = options_of(ctx)
    bucket_name, package_name = parse_package(target)
    with open_client(opts) as client:
        space_id, path = space_path(client, source)
        body: dict[str, Any] = {
            "userSpaceID": space_id,
            "path": path,
            "bucketID": client.bucket(bucket_name)["bucketID"],
            "name": package_name,
            "async": True,
        }
        policy = parse_redundancy(redundancy)
        if policy is not None:
            body["redundancy"] = policy
        data = client.post("/v1/userSpace/createPackage", body)
        pkg = data["package"]
        out.print(Text(f"importing into {bucket_name}/{pkg['name']} (package {pkg['packageID']})"))
        if wait:
            report(follow(client, data["task"], opts.quiet))
        else:
            out.print(f"task {data['task']['taskID']}")


@package_app.command("export")
def package_export(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE")],
    target: Annotated[str, typer.Argument(metavar="SPACE:PATH")],
    wait: Annotated[bool, typer.Option(help="follow the task with a progress bar")] = True,
) -> None:
    """Write every object of a package as a plain file under SPACE:PATH."""
    opts = options_of(ctx)
    bucket_name, package_name = parse_package(source)
    with open_client(opts) as client:
        pkg = client.package(bucket_name, package_name)
        space_id, path = space_path(client, target)
        body = {
            "packageID": pkg["packageID"],
            "userSpaceID": space_id,
            "rootPath": path,
            "async": True,
        }
        task = client.post("/v1/userSpace/downloadPackage", body)["task"]
        if wait:
            report(follow(client, task, opts.quiet))
        else:
            out.print(f"task {task['taskID']}")
