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


def _revisions(sync_conn: Connection) -> list[str]:
    """The revisions the database is at (none before the first migration)."""
    if not inspect(sync_conn).has_table("alembic_version"):
        return []
    found = sync_conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return [str(row[0]) for row in found]


def upgrade(sync_conn: Connection, revision: str) -> None:
    # A start on a schema that is up to date (every start but the first and
    # those after an upgrade) does not import alembic: its modules, and
    # mako's, would stay in every server process for nothing (12 MB).
    at, head = _revisions(sync_conn), schema_head()
    if revision == "head" and at == [head]:
        return
    newer = next((r for r in at if r.isdigit() and r > head), None)
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
