"""Moving bytes: planning an upload, batching small files, multipart for big
ones, and downloads that only ever appear complete under their final name.

Requests run on a small thread pool sharing one httpx client; every chunk read
or written checks a cancel flag so Ctrl-C stops all of them promptly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

from jointcloud.cli.client import FileWindow, JcsClient, JsonObj
from jointcloud.cli.common import CliError, RemotePath, err

T = TypeVar("T")


class Cancelled(Exception):
    """Raised inside a worker once another worker failed or the user hit Ctrl-C."""


@dataclass(frozen=True)
class UploadOptions:
    redundancy: JsonObj | None = None
    affinity: int | None = None
    jobs: int = 4
    batch_files: int = 64
    batch_bytes: int = 64 * 1024 * 1024
    multipart_threshold: int = 256 * 1024 * 1024
    part_size: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: Path
    object_path: str
    size: int


@dataclass
class Batch:
    files: list[LocalFile] = field(default_factory=list)
    size: int = 0


# -- planning --------------------------------------------------------------


def walk_tree(root: Path) -> Iterator[tuple[Path, str]]:
    """(file, relative POSIX path) for every regular file under ``root``, in
    sorted order; symlinked directories are not followed."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames):
            full = base / name
            if not full.is_file():
                err.print(f"skipping {full}: not a regular file", markup=False)
                continue
            yield full, PurePosixPath(*full.relative_to(root).parts).as_posix()


def _named_in_utf8(path: Path, object_path: str) -> str:
    """``object_path``, if it is UTF-8 text. A file name of other bytes
    (Python keeps them as surrogates) is no object path, and it ended
    ``jcs put`` in a traceback once some files had gone up; refused before
    anything is sent, naming the file."""
    try:
        object_path.encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise CliError(
            "BadArgument",
            f"{name}: the file name is not UTF-8, and object paths are: rename it "
            "(or put the file alone, naming its object path)",
        ) from None
    return object_path


def plan_put(local: Path, dest: RemotePath) -> list[LocalFile]:
    """A file goes to DEST's path (or DEST/<name> when DEST is a package or
    ends with '/'); a directory's files go to DEST/<relative path>."""
    if local.is_dir():
        return [
            LocalFile(path, _named_in_utf8(path, dest.join(rel)), path.stat().st_size)
            for path, rel in walk_tree(local)
        ]
    if local.is_file():
        target = dest.join(local.name) if dest.is_prefix else dest.path
        return [LocalFile(local, _named_in_utf8(local, target), local.stat().st_size)]
    if local.exists():
        raise CliError("BadArgument", f"{local} is neither a file nor a directory")
    raise CliError("BadArgument", f"{local}: no such file or directory")


def make_batches(files: Iterable[LocalFile], opts: UploadOptions) -> list[Batch]:
    """Small files share requests (up to ``batch_files`` files and
    ``batch_bytes`` bytes); a file of ``batch_bytes`` or more goes alone."""
    batches: list[Batch] = []
    current = Batch()
    for f in files:
        if f.size >= opts.batch_bytes:
            batches.append(Batch([f], f.size))
            continue
        if current.files and (
            len(current.files) >= opts.batch_files or current.size + f.size > opts.batch_bytes
        ):
            batches.append(current)
            current = Batch()
        current.files.append(f)
        current.size += f.size
    if current.files:
        batches.append(current)
    return batches


def uses_multipart(batch: Batch, opts: UploadOptions) -> bool:
    # The 3-step endpoints take no redundancy or affinity: those go in one request.
    return (
        len(batch.files) == 1
        and batch.size > opts.multipart_threshold
        and opts.redundancy is None
        and opts.affinity is None
    )


# -- running work on a pool ------------------------------------------------


def run_all(
    jobs: int, tasks: list[Callable[[threading.Event], T]], cancel: threading.Event
) -> list[T]:
    """Run the tasks on ``jobs`` threads, results in task order; the first
    failure (or Ctrl-C) cancels the rest and is raised."""
    if jobs <= 1 or len(tasks) <= 1:
        return [t(cancel) for t in tasks]
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="jcs")
    futures: list[Future[T]] = [pool.submit(t, cancel) for t in tasks]
    try:
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if pending:  # something failed: stop the rest, then report the cause
            cancel.set()
            for f in pending:
                f.cancel()
            wait(futures)
            errors = [
                exc for f in futures if not f.cancelled() and (exc := f.exception()) is not None
            ]
            real = [e for e in errors if not isinstance(e, Cancelled)]
            raise (real or errors)[0]
        return [f.result() for f in futures]
    except BaseException:
        cancel.set()
        for f in futures:
            f.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- upload ----------------------------------------------------------------


def _reader(advance: Callable[[int], None], cancel: threading.Event) -> Callable[[int], None]:
    def on_read(n: int) -> None:
        if cancel.is_set():
            raise Cancelled
        advance(n)

    return on_read


def upload_batch(
    client: JcsClient,
    package_id: int,
    batch: Batch,
    opts: UploadOptions,
    advance: Callable[[int], None],
    cancel: threading.Event,
) -> list[JsonObj]:
    on_read = _reader(advance, cancel)
    try:
        if uses_multipart(batch, opts):
            # Inside the try: a file that shrank mid-part ended in a traceback.
            return [upload_multipart(client, package_id, batch.files[0], opts, on_read)]
        bodies = [
            (f.object_path, FileWindow(f.path, on_read, length=f.size, whole_size=f.size))
            for f in batch.files
        ]
        return client.upload(package_id, bodies, redundancy=opts.redundancy, affinity=opts.affinity)
    except OSError as exc:
        raise CliError("OperationFailed", str(exc)) from exc


def upload_multipart(
    client: JcsClient,
    package_id: int,
    f: LocalFile,
    opts: UploadOptions,
    on_read: Callable[[int], None],
) -> JsonObj:
    """new → one part per ``part_size`` bytes → complete; until complete, the
    path keeps serving what it held before (or nothing)."""
    obj = client.new_multipart(package_id, f.object_path)
    object_id = int(obj["objectID"])
    indexes: list[int] = []
    offset = 0
    index = 1
    while offset < f.size or not indexes:
        length = min(opts.part_size, f.size - offset)
        window = FileWindow(f.path, on_read, offset, length, whole_size=f.size)
        client.upload_part(object_id, index, window)
        indexes.append(index)
        offset += length
        index += 1
    return client.complete_multipart(object_id, indexes)


# -- download --------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def download_to(
    client: JcsClient,
    obj: JsonObj,
    target: Path,
    advance: Callable[[int], None],
    cancel: threading.Event,
) -> int:
    """Stream one object into a temporary file beside ``target``, check its
    size and (for whole-object hashes) its SHA-256, then rename it into place:
    an interrupted download never leaves a partial file under ``target``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name[:100]}.", suffix=".jcs-part", dir=target.parent
        )
    except OSError as exc:
        raise CliError("OperationFailed", f"cannot write {target}: {exc.strerror}") from exc
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as fh:

            def write(chunk: bytes) -> None:
                if cancel.is_set():
                    raise Cancelled
                fh.write(chunk)
                digest.update(chunk)
                advance(len(chunk))

            got = client.download(int(obj["objectID"]), write)
        path = obj["path"]
        expected = int(obj["size"])
        if got != expected:
            raise CliError(
                "OperationFailed",
                f"{path}: received {got} bytes, expected {expected} (changed meanwhile?)",
            )
        file_hash = str(obj.get("fileHash") or "")
        if file_hash.startswith("Full") and digest.hexdigest().upper() != file_hash[4:].upper():
            raise CliError("OperationFailed", f"{path}: SHA-256 of the received bytes differs")
        os.chmod(tmp, 0o666 & ~_UMASK)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise CliError("OperationFailed", f"cannot write {target}: {exc.strerror}") from exc
        return got
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def local_target(root: Path, rel: str) -> Path:
    """``root/rel`` for an object path relative to the downloaded prefix,
    refusing anything that would land outside ``root``."""
    parts = rel.split("/")
    # On Windows '\\' separates and ':' names a drive: refused there too.
    windows = ("\\", ":") if os.name == "nt" else ()
    # A control character (an S3 key may hold one) is no file name to leave
    # on a disk: a later `ls` would print it to a terminal.
    if any(
        p in ("", ".", "..") or _CONTROL.search(p) or any(c in p for c in windows) for p in parts
    ):
        raise CliError("OperationFailed", f"refusing to write object path {rel!r} locally")
    return root.joinpath(*parts)
