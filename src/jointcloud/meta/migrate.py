"""The schema's migrations (alembic), run by ``Database.migrate``."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, inspect

from jointcloud.errors import MetadataUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def schema_head() -> str:
    """The newest migration's revision. Revisions are their file's number
    (``0013_….py`` is ``"0013"``), which ``test_migrations`` checks
    against alembic's own view of the history."""
    versions = (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max(path.name[:4] for path in versions)


def _at_head(sync_conn: Connection) -> bool:
    if not inspect(sync_conn).has_table("alembic_version"):
        return False
    found = sync_conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return [row[0] for row in found] == [schema_head()]


def _newer(sync_conn: Connection) -> str | None:
    """The database's revision, if a newer release than this one made it."""
    if not inspect(sync_conn).has_table("alembic_version"):
        return None
    found = [row[0] for row in sync_conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
    head = schema_head()
    newer = [r for r in found if isinstance(r, str) and r.isdigit() and r > head]
    return newer[0] if newer else None


def upgrade(sync_conn: Connection, revision: str) -> None:
    # A start on a schema that is up to date (every start but the first and
    # those after an upgrade) does not import alembic: its modules, and
    # mako's, would stay in every server process for nothing (12 MB).
    if revision == "head" and _at_head(sync_conn):
        return
    newer = _newer(sync_conn)
    if newer is not None:  # alembic's own answer is a 400-line traceback
        raise MetadataUnavailable(
            f"the metadata database was made by a newer release of JointCloud (schema "
            f"revision {newer}; this one knows up to {schema_head()}): run that release, "
            "or restore a backup made by this one"
        )
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


def foreign_keys(sync_conn: Connection, on: bool) -> None:
    """Switch SQLite's foreign keys on this connection (outside any
    transaction: inside one the pragma does nothing)."""
    cur = sync_conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cur.close()
