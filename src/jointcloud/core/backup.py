"""Backing the metadata up: the one operator-facing entry to
``meta.backup`` (the CLI reaches the database only through core)."""

from __future__ import annotations

from pathlib import Path

from jointcloud.errors import BadArgument
from jointcloud.meta.backup import Backup, snapshot, sqlite_file

__all__ = ["Backup", "back_up_metadata"]


def back_up_metadata(database_url: str, dest: Path) -> Backup:
    """A consistent copy of the SQLite metadata database at ``dest``;
    ``BadArgument`` for another database, which has its own tools."""
    database = sqlite_file(database_url)
    if database is None:
        raise BadArgument(
            "the metadata database is not SQLite: back PostgreSQL up with its own tools "
            "(pg_dump, or base backups with WAL archiving); see docs/durability.md"
        )
    return snapshot(database, dest)
