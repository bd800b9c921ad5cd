"""A consistent copy of the SQLite metadata database, made while the server
runs (``jcs admin backup``).

Why ``VACUUM INTO``: copying ``meta.db`` with ``cp`` while the server writes
gives a file torn between transactions, and without its ``-wal`` file it
lacks every commit not yet checkpointed. ``VACUUM INTO`` writes the database
as one read transaction sees it (WAL mode lets the server go on writing
meanwhile), complete and compacted, with no ``-wal`` of its own.

The copy is written in a private directory (0700, a random name) made
beside the destination, into a file made there 0600 (``VACUUM INTO`` would
make it with the umask's mode, readable by all, and follow a planted link
at a guessable name), then checked (``PRAGMA quick_check``), synced, and
only then linked to its name, never over an existing file: a backup that
exists is whole and only its owner's. An interrupted backup leaves its
private directory (``.jcs-backup-*``) beside the destination.

PostgreSQL has its own tools (``pg_dump``, base backups with WAL archiving);
nothing here replaces them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from jointcloud.errors import BadArgument
from jointcloud.spaces.fileio import fsync_dir

# ``link`` refused by file systems without hard links (vfat, exFAT, some
# network and FUSE mounts; FUSE answered ENOSYS on older kernels): the copy
# is renamed instead.
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


# A directory sync a file system does not offer, as opposed to one that
# failed (EIO).
_NO_DIR_SYNC = {
    errno.EINVAL,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.ENOSYS,
    errno.EACCES,
    errno.EPERM,
    errno.EBADF,
}


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite database URL; None for any other database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def snapshot(database: Path, dest: Path) -> Backup:
    """Write a consistent copy of ``database`` to ``dest`` (which must not
    exist), mode 0600: it holds every object's wrapped keys, and small
    objects' sealed bytes."""
    try:
        if not database.is_file():
            raise BadArgument(f"no metadata database at {database}")
        if dest.exists() or dest.is_symlink():
            raise BadArgument(f"{dest} already exists; a backup never overwrites a file")
        if not dest.parent.is_dir():
            raise BadArgument(f"{dest.parent} is not a directory")
        work = Path(tempfile.mkdtemp(prefix=".jcs-backup-", dir=dest.parent))
    except OSError as exc:  # a directory on the way that may not be read
        raise BadArgument(f"cannot back up {database} to {dest}: {exc.strerror}") from None
    try:
        copy = work / "meta.db"
        os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        _vacuum_into(database, copy)
        with open(copy, "rb") as f:
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
        _publish(copy, dest)
        try:
            fsync_dir(dest.parent)
        except OSError as exc:
            # The copy is whole and synced under its name; a file system
            # that cannot sync a directory (some network mounts refuse)
            # keeps the name by its own rules. A failing disk is reported.
            if exc.errno not in _NO_DIR_SYNC:
                raise BadArgument(
                    f"{dest} was written, but its directory could not be synced "
                    f"({exc.strerror}): the backup may not survive a crash"
                ) from None
    except sqlite3.Error as exc:
        raise BadArgument(f"cannot back up {database}: {exc}") from None
    except OSError as exc:
        raise BadArgument(f"cannot write the backup to {dest}: {exc.strerror}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Backup(dest, size)


def _vacuum_into(database: Path, copy: Path) -> None:
    # Read-only: the backup never writes the live database (and never
    # creates one that is missing).
    source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        source.execute("PRAGMA busy_timeout = 30000")
        source.execute("VACUUM INTO ?", (str(copy),))
    finally:
        source.close()
    check = sqlite3.connect(copy)
    try:
        verdict = check.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        check.close()
    if verdict != "ok":
        raise BadArgument(f"the copy failed its integrity check: {verdict}")


def _publish(copy: Path, dest: Path) -> None:
    """Give the finished copy its name, never over a file made meanwhile."""
    try:
        os.link(copy, dest, follow_symlinks=False)
    except FileExistsError:
        raise BadArgument(f"{dest} already exists; a backup never overwrites a file") from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        # No hard links here: a rename, after a last look (a file made in
        # between would be replaced; nothing else on such a file system
        # makes a name exclusively).
        if dest.exists() or dest.is_symlink():
            raise BadArgument(f"{dest} already exists; a backup never overwrites a file") from None
        os.rename(copy, dest)
    with contextlib.suppress(OSError):  # the work directory goes anyway
        copy.unlink()
