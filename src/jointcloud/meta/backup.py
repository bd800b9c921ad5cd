"""A consistent copy of the SQLite metadata database, made while the server
runs (``jcs admin backup``).

Why ``VACUUM INTO``: copying ``meta.db`` with ``cp`` while the server writes
gives a file torn between transactions, and without its ``-wal`` file it
lacks every commit not yet checkpointed. ``VACUUM INTO`` writes the database
as one read transaction sees it (WAL mode lets the server go on writing
meanwhile), complete and compacted, with no ``-wal`` of its own. The copy is
written under a temporary name, synced, checked (``PRAGMA quick_check``)
and only then given its name, so a backup that exists is whole.

PostgreSQL has its own tools (``pg_dump``, base backups with WAL archiving);
nothing here replaces them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from jointcloud.errors import BadArgument


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
    if not database.is_file():
        raise BadArgument(f"no metadata database at {database}")
    if dest.exists() or dest.is_symlink():
        raise BadArgument(f"{dest} already exists; a backup never overwrites a file")
    if not dest.parent.is_dir():
        raise BadArgument(f"{dest.parent} is not a directory")
    temp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        # Read-only: the backup never writes the live database (and never
        # creates one that is missing).
        source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
        try:
            source.execute("PRAGMA busy_timeout = 30000")
            source.execute("VACUUM INTO ?", (str(temp),))
        finally:
            source.close()
        os.chmod(temp, 0o600)
        copy = sqlite3.connect(temp)
        try:
            verdict = copy.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            copy.close()
        if verdict != "ok":
            raise BadArgument(f"the copy failed its integrity check: {verdict}")
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.link(temp, dest)  # fails rather than overwrite a file made meanwhile
        _sync_dir(dest.parent)
    except sqlite3.Error as exc:
        raise BadArgument(f"cannot back up {database}: {exc}") from None
    except FileExistsError:
        raise BadArgument(f"{dest} already exists; a backup never overwrites a file") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return Backup(dest, dest.stat().st_size)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
