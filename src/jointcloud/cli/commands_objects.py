"""Object commands: ``jcs put|get|ls|rm|mv|cp``.

Remote paths are ``BUCKET/PACKAGE[/PATH]``. A path that is empty or ends
with "/" is a prefix (a "directory"); ``-r`` makes ``PATH`` mean ``PATH/``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from jointcloud.cli.client import JcsClient, JsonObj, open_client
from jointcloud.cli.common import (
    CliError,
    RemotePath,
    format_size,
    options_of,
    parse_redundancy,
    parse_remote,
    parse_size,
    progress,
)
from jointcloud.cli.transfer import (
    UploadOptions,
    download_to,
    local_target,
    make_batches,
    plan_put,
    run_all,
    upload_batch,
)

BATCH = 500  # objects per move/clone/delete request

Recursive = Annotated[
    bool, typer.Option("-r", "--recursive", help="PATH is a prefix: act on everything under it")
]
Jobs = Annotated[int, typer.Option("-j", "--jobs", min=1, max=32, help="parallel requests")]


def register(app: typer.Typer) -> None:
    for name, fn in (("put", put), ("get", get), ("ls", ls), ("rm", rm), ("mv", mv), ("cp", cp)):
        app.command(name)(fn)


def _package_id(client: JcsClient, remote: RemotePath) -> int:
    return int(client.package(remote.bucket, remote.package)["packageID"])


def _echo(text: str) -> None:
    typer.echo(text)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def shown(path: str) -> str:
    """A path as a terminal may print it: an S3 key may hold controls (as on
    AWS), and an escape sequence in a listing would drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", path)


# -- put -------------------------------------------------------------------


def put(
    ctx: typer.Context,
    local: Annotated[str, typer.Argument(metavar="LOCAL_PATH", help="a file or a directory")],
    dest: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE[/PATH]")],
    redundancy: Annotated[
        str | None,
        typer.Option(help="policy for these objects: JSON or none, rep:N, ec:K,N"),
    ] = None,
    affinity: Annotated[
        str | None, typer.Option(help="user space (ID or name) to place data on first")
    ] = None,
    jobs: Jobs = 4,
    batch_files: Annotated[int, typer.Option(min=1, help="most files per request")] = 64,
    batch_size: Annotated[str, typer.Option(help="most bytes of small files per request")] = (
        "64MiB"
    ),
    multipart_threshold: Annotated[
        str,
        typer.Option(
            envvar="JCS_MULTIPART_THRESHOLD",
            help="files above this go up in parts (without --redundancy/--affinity)",
        ),
    ] = "256MiB",
    part_size: Annotated[str, typer.Option(help="part size of multipart uploads")] = "64MiB",
) -> None:
    """Upload a file, or a directory tree to PATH/<relative path>.

    A file goes to PATH (or PATH/<name> when PATH is empty or ends with "/").
    Small files share requests; files above --multipart-threshold go up in
    parts (with the package's policy). Nothing is read whole into memory.
    """
    g = options_of(ctx)
    remote = parse_remote(dest)
    opts = UploadOptions(
        redundancy=parse_redundancy(redundancy),
        jobs=jobs,
        batch_files=batch_files,
        batch_bytes=parse_size(batch_size),
        multipart_threshold=parse_size(multipart_threshold),
        part_size=parse_size(part_size),
    )
    if opts.part_size < 1:
        raise CliError("BadArgument", "--part-size must be at least 1 byte")
    files = plan_put(Path(local), remote)
    with open_client(g) as client:
        package_id = _package_id(client, remote)
        if affinity is not None:
            space_id = int(client.find_space(affinity)["userSpaceID"])
            opts = dataclasses.replace(opts, affinity=space_id)
        if not files:
            _echo(f"nothing to upload in {local}")
            return
        total = sum(f.size for f in files)
        batches = make_batches(files, opts)
        label = files[0].object_path if len(files) == 1 else f"{len(files)} files"
        with progress(g.quiet) as bar:
            task = bar.add_task(f"put {label}", total=total)
            advance: Callable[[int], None] = functools.partial(bar.advance, task)
            work: list[Callable[[threading.Event], list[JsonObj]]] = [
                functools.partial(upload_batch, client, package_id, b, opts, advance)
                for b in batches
            ]
            results = run_all(jobs, work, threading.Event())
    count = sum(len(r) for r in results)
    where = str(remote) if len(files) > 1 else f"{remote.bucket}/{remote.package}/{label}"
    _echo(f"uploaded {count} object{'s' if count != 1 else ''} ({format_size(total)}) to {where}")


# -- get -------------------------------------------------------------------


def _select(
    client: JcsClient, package_id: int, remote: RemotePath, recursive: bool
) -> tuple[str | None, list[JsonObj]]:
    """(prefix, objects): prefix None means one object at ``remote.path``."""
    if not remote.is_prefix:
        if recursive:
            under = client.list_objects(package_id, remote.dir_prefix)
            if under:
                return remote.dir_prefix, under
        one = client.object_at(package_id, remote.path)
        if one is None:
            hint = "" if recursive else " (add -r for everything under it)"
            raise CliError("DataNotFound", f"no object at {remote}{hint}")
        return None, [one]
    objs = client.list_objects(package_id, remote.path)
    if not objs:
        raise CliError("DataNotFound", f"no objects under {remote}")
    return remote.path, objs


def get(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE/PATH")],
    local: Annotated[
        str | None,
        typer.Argument(metavar="LOCAL", help="file or directory (default: the base name)"),
    ] = None,
    recursive: Recursive = False,
    jobs: Jobs = 4,
) -> None:
    """Download an object, or a tree (PATH/ or -r) into a directory.

    Each file is written to a temporary name and renamed once complete and
    checked (size, SHA-256), so an interrupted download leaves no partial file.
    A tree's objects land at LOCAL/<path under the prefix>.
    """
    g = options_of(ctx)
    remote = parse_remote(src)
    with open_client(g) as client:
        package_id = _package_id(client, remote)
        prefix, objs = _select(client, package_id, remote, recursive)
        if prefix is None:
            obj = objs[0]
            name = remote.basename
            target = Path(local) if local else Path(name)
            if local and (target.is_dir() or local.endswith(("/", os.sep))):
                target = target / name
            pairs = [(obj, target)]
        else:
            root = Path(local) if local else Path(remote.basename or remote.package)
            # Folder markers (S3 keys ending in '/') are directories, not files.
            files = [o for o in objs if not str(o["path"]).endswith("/")]
            pairs = [(o, local_target(root, str(o["path"])[len(prefix) :])) for o in files]
        total = sum(int(o["size"]) for o, _ in pairs)
        label = shown(str(pairs[0][1])) if len(pairs) == 1 else f"{len(pairs)} objects"
        with progress(g.quiet) as bar:
            task = bar.add_task(f"get {label}", total=total)
            advance: Callable[[int], None] = functools.partial(bar.advance, task)
            work: list[Callable[[threading.Event], int]] = [
                functools.partial(download_to, client, o, t, advance) for o, t in pairs
            ]
            run_all(jobs, work, threading.Event())
    where = pairs[0][1] if prefix is None else root
    n = len(pairs)
    _echo(f"downloaded {n} object{'s' if n != 1 else ''} ({format_size(total)}) to {where}")


# -- ls --------------------------------------------------------------------


def _short_time(value: Any) -> str:
    return str(value or "")[:19].replace("T", " ")


def _print_entries(prefixes: list[str], objects: list[JsonObj]) -> int:
    entries: list[tuple[str, JsonObj | None]] = [(p, None) for p in prefixes]
    entries += [(str(o["path"]), o) for o in objects]
    entries.sort(key=lambda e: e[0])
    for path, obj in entries:
        if obj is None:
            _echo(f"{'':19}  {'PRE':>14}  {shown(path)}")
        else:
            _echo(f"{_short_time(obj.get('updateTime'))}  {int(obj['size']):>14}  {shown(path)}")
    return len(entries)


def ls(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Argument(metavar="BUCKET[/PACKAGE[/PREFIX]]", help="nothing lists buckets"),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="every object, not just one level")
    ] = False,
    page_size: Annotated[
        int, typer.Option(min=1, max=1000, help="entries per listing request")
    ] = 1000,
) -> None:
    """List buckets, packages, or objects and sub-prefixes.

    "B/P/x" shows the object x, if any, and one level under x/ (all with -r).
    """
    g = options_of(ctx)
    with open_client(g) as client:
        if target is None or not target.strip("/"):
            for b in client.list_buckets():
                _echo(f"{b['name']}/")
            return
        if "/" not in target.strip("/"):
            bucket = client.bucket(target.strip("/"))
            for p in client.list_packages(int(bucket["bucketID"])):
                _echo(f"{bucket['name']}/{p['name']}/")
            return
        remote = parse_remote(target)
        package_id = _package_id(client, remote)
        shown = 0
        prefix = remote.path
        if not remote.is_prefix:
            # "ls B/P/x": the object x, if any, and what is under x/.
            exact = client.object_at(package_id, remote.path)
            if exact is not None:
                shown += _print_entries([], [exact])
            prefix = remote.dir_prefix
        pages = client.list_pages(package_id, prefix, recursive=recursive, max_keys=page_size)
        for prefixes, objects in pages:
            shown += _print_entries(prefixes, objects)
        if shown == 0 and not remote.is_prefix:
            raise CliError("DataNotFound", f"no object or prefix at {remote}")


# -- rm --------------------------------------------------------------------


def rm(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE/PATH")],
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="PATH and everything under PATH/")
    ] = False,
) -> None:
    """Delete an object, or with -r also everything under PATH/."""
    remote = parse_remote(target)
    if remote.is_prefix and not recursive:
        raise CliError("BadArgument", f"{target} is a prefix; add -r to delete everything under it")
    with open_client(options_of(ctx)) as client:
        package_id = _package_id(client, remote)
        if not recursive:
            client.delete_by_path(package_id, remote.path)
            _echo(f"deleted {remote}")
            return
        objs = client.list_objects(package_id, remote.dir_prefix)
        if not remote.is_prefix:
            exact = client.object_at(package_id, remote.path)
            if exact is not None:
                objs.append(exact)
        if not objs:
            raise CliError("DataNotFound", f"nothing to delete at {remote}")
        ids = [int(o["objectID"]) for o in objs]
        for i in range(0, len(ids), BATCH):
            client.delete_objects(ids[i : i + BATCH])
    _echo(f"deleted {len(ids)} object{'s' if len(ids) != 1 else ''} under {remote}")


# -- mv / cp ---------------------------------------------------------------


def _plan_copy(
    client: JcsClient, src: RemotePath, dst: RemotePath, recursive: bool
) -> tuple[int, list[tuple[JsonObj, str]]]:
    """(destination package id, [(source object, new path)])."""
    src_pid = _package_id(client, src)
    dst_pid = src_pid if (src.bucket, src.package) == (dst.bucket, dst.package) else None
    if dst_pid is None:
        dst_pid = _package_id(client, dst)
    prefix, objs = _select(client, src_pid, src, recursive)
    if prefix is None:
        new = dst.join(src.basename) if dst.is_prefix else dst.path
        return dst_pid, [(objs[0], new)]
    return dst_pid, [(o, dst.join(str(o["path"])[len(prefix) :])) for o in objs]


def _report(failures: list[tuple[str, str, str]], verb: str, total: int) -> None:
    if not failures:
        return
    if len(failures) == 1 and total == 1:
        raise CliError("OperationFailed", failures[0][2])
    for old, new, why in failures:
        typer.echo(f"not {verb}: {old} -> {new}: {why}", err=True)
    raise CliError("OperationFailed", f"{len(failures)} of {total} objects were not {verb}")


def _aside_path(path: str) -> str:
    """A free-looking hidden name beside ``path`` (same directory, so a key
    restricted to that prefix may write it) where the object being replaced
    waits until its replacement is committed."""
    parent, _, name = path.rpartition("/")
    short = name.encode()[:100].decode(errors="ignore")  # within a 255-byte segment
    hidden = f".{short}.jcs-replaced-{secrets.token_hex(4)}"
    return f"{parent}/{hidden}" if parent else hidden


def _replace(
    client: JcsClient,
    package_id: int,
    targets: list[tuple[int, str]],
    sources: set[int],
    retry: Callable[[list[int]], list[str | None]],
) -> list[str | None]:
    """``-f``: redo the moves or copies that found their target taken, never
    deleting the object there before its replacement is committed.

    ``targets`` are (source object id, target path); ``retry`` redoes those
    at the given indexes and says, aligned, why each one failed (None: done).
    The object at a target is first moved aside (a rename: no bytes move),
    then the retry runs, then what was set aside is deleted where the retry
    succeeded and moved back where it failed. Deleting the target first lost
    it whenever the retry then failed (its source gone meanwhile, the copy of
    an object onto itself), and lost a source of the same command that sat
    at another's target. Returns, aligned with ``targets``, why each failed.
    """
    why: list[str | None] = [None] * len(targets)
    asides: dict[int, tuple[int, str]] = {}  # target index -> (object id, aside path)
    for i, (source_id, path) in enumerate(targets):
        there = client.object_at(package_id, path)
        if there is None:
            continue  # freed meanwhile (or an unfinished upload's): the retry says
        there_id = int(there["objectID"])
        if there_id == source_id:
            why[i] = f"{path} is the source itself"
        elif there_id not in sources:
            # A source of this command is never replaced: it may move away in
            # the retry itself, and nothing else holds its bytes.
            asides[i] = (there_id, _aside_path(path))
    if asides:
        moved = client.move(
            [{"objectID": o, "packageID": package_id, "path": a} for o, a in asides.values()]
        )
        stuck = {int(f["objectID"]): str(f.get("reason", "")) for f in moved.get("failures") or []}
        for i, (object_id, _) in list(asides.items()):
            if object_id in stuck:
                del asides[i]
                why[i] = f"the object at {targets[i][1]} could not be replaced: {stuck[object_id]}"
    todo = [i for i, w in enumerate(why) if w is None]
    try:
        for i, reason in zip(todo, retry(todo), strict=True):
            why[i] = reason
    except BaseException:
        # Interrupted or failed mid-retry: whatever was set aside goes back
        # (a target the retry did fill refuses it, and the old object stays
        # at its aside path, named).
        _put_back(client, package_id, {i: (o, a, targets[i][1]) for i, (o, a) in asides.items()})
        raise
    done = [o for i, (o, _) in asides.items() if why[i] is None]
    if done:
        _delete_replaced(client, done)
    failed = {i: (o, a, targets[i][1]) for i, (o, a) in asides.items() if why[i] is not None}
    for i, kept in _put_back(client, package_id, failed).items():
        why[i] = f"{why[i]}; the object it was to replace is kept at {kept}"
    return why


def _put_back(
    client: JcsClient, package_id: int, asides: dict[int, tuple[int, str, str]]
) -> dict[int, str]:
    """Move set-aside objects (index -> (id, aside path, target)) back to
    their targets; returns the aside paths of those that stayed there."""
    if not asides:
        return {}
    movings = [{"objectID": o, "packageID": package_id, "path": t} for o, _, t in asides.values()]
    try:
        failed = {int(f["objectID"]) for f in client.move(movings).get("failures") or []}
    except CliError:
        failed = {o for o, _, _ in asides.values()}
    kept = {i: a for i, (o, a, _) in asides.items() if o in failed}
    for a in kept.values():
        typer.echo(f"warning: a replaced object is kept at {shown(a)}", err=True)
    return kept


def _delete_replaced(client: JcsClient, object_ids: list[int]) -> None:
    """Delete the objects that were replaced; one deleted meanwhile by
    someone else is no failure (a delete by ids is all or nothing)."""
    try:
        client.delete_objects(object_ids)
    except CliError:
        for object_id in object_ids:
            try:
                client.delete_objects([object_id])
            except CliError as exc:
                if exc.code != "DataNotFound":
                    typer.echo(f"warning: replaced object {object_id} not deleted: {exc}", err=True)


def _move_again(client: JcsClient, movings: list[JsonObj], indexes: list[int]) -> list[str | None]:
    """The moves at ``indexes`` once more: why each failed (None: moved)."""
    redo = [movings[j] for j in indexes]
    left = {
        int(f["objectID"]): str(f.get("reason", ""))
        for f in client.move(redo).get("failures") or []
    }
    return [left.get(int(m["objectID"])) for m in redo]


def _clone_again(
    client: JcsClient, clonings: list[JsonObj], indexes: list[int]
) -> list[str | None]:
    """The copies at ``indexes`` once more. A clone gives no reason: its
    source went away, or its target was taken again, meanwhile."""
    made = client.clone_objects([clonings[j] for j in indexes])
    return [None if m is not None else "the copy failed again (source gone?)" for m in made]


def mv(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE/PATH")],
    dst: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE[/PATH]")],
    recursive: Recursive = False,
    force: Annotated[bool, typer.Option("-f", "--force", help="replace existing targets")] = False,
) -> None:
    """Move or rename objects (metadata only; no data is copied).

    A DST that is a package or ends with "/" receives SRC's base name; with -r
    (or SRC ending in "/") the tree's contents go to DST/<path under SRC>.
    Existing targets are kept (and reported) unless -f; a replaced object
    is deleted only once its replacement is in place.
    """
    s, d = parse_remote(src, need_path=False), parse_remote(dst)
    with open_client(options_of(ctx)) as client:
        dst_pid, pairs = _plan_copy(client, s, d, recursive)
        sources = {int(o["objectID"]) for o, _ in pairs}
        failures: list[tuple[str, str, str]] = []
        for i in range(0, len(pairs), BATCH):
            chunk = pairs[i : i + BATCH]
            by_id = {int(o["objectID"]): (o, new) for o, new in chunk}
            movings: list[JsonObj] = [
                {"objectID": oid, "packageID": dst_pid, "path": n} for oid, (_, n) in by_id.items()
            ]
            failed = client.move(movings).get("failures") or []
            reasons = [(int(f["objectID"]), str(f.get("reason", ""))) for f in failed]
            if reasons and force:
                redo_ids = {oid for oid, _ in reasons}
                again = [m for m in movings if int(m["objectID"]) in redo_ids]
                targets = [(int(m["objectID"]), str(m["path"])) for m in again]
                redo = functools.partial(_move_again, client, again)
                whys = _replace(client, dst_pid, targets, sources, redo)
                reasons = [(oid, w) for (oid, _), w in zip(targets, whys, strict=True) if w]
            for oid, why in reasons:
                obj, new = by_id[oid]
                if "taken" in why and not force:
                    why += " (-f replaces it)"
                failures.append((str(obj["path"]), new, why))
        _report(failures, "moved", len(pairs))
    n = len(pairs)
    _echo(f"moved {n} object{'s' if n != 1 else ''} to {d}")


def cp(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE/PATH")],
    dst: Annotated[str, typer.Argument(metavar="BUCKET/PACKAGE[/PATH]")],
    recursive: Recursive = False,
    force: Annotated[bool, typer.Option("-f", "--force", help="replace existing targets")] = False,
) -> None:
    """Copy objects with the server's clone (stored data is shared).

    DST is read as for mv. Existing targets are kept (and reported) unless
    -f; a replaced object is deleted only once its replacement is in place.
    """
    s, d = parse_remote(src), parse_remote(dst)
    with open_client(options_of(ctx)) as client:
        dst_pid, pairs = _plan_copy(client, s, d, recursive)
        sources = {int(o["objectID"]) for o, _ in pairs}
        failures: list[tuple[str, str, str]] = []
        for i in range(0, len(pairs), BATCH):
            chunk = pairs[i : i + BATCH]
            clonings: list[JsonObj] = [
                {"objectID": int(o["objectID"]), "newPackageID": dst_pid, "newPath": new}
                for o, new in chunk
            ]
            made = client.clone_objects(clonings)
            missed = [j for j, m in enumerate(made) if m is None]
            whys: list[str | None] = [
                f"{d.bucket}/{d.package}/{chunk[j][1]} already exists (-f replaces it)"
                for j in missed
            ]
            if missed and force:
                targets = [(int(chunk[j][0]["objectID"]), chunk[j][1]) for j in missed]
                again = [clonings[j] for j in missed]
                redo = functools.partial(_clone_again, client, again)
                whys = _replace(client, dst_pid, targets, sources, redo)
            for j, why in zip(missed, whys, strict=True):
                if why is not None:
                    obj, new = chunk[j]
                    failures.append((str(obj["path"]), new, why))
        _report(failures, "copied", len(pairs))
    n = len(pairs)
    _echo(f"copied {n} object{'s' if n != 1 else ''} to {d}")
