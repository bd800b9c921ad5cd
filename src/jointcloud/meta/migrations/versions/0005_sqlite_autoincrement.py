"""ids are never handed out twice: AUTOINCREMENT on SQLite

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00

Without AUTOINCREMENT, SQLite gives a new row the highest id in the table plus
one, so the id of the newest row comes back once that row is deleted (one
package id named three packages, and old task records named whoever had it
now). With AUTOINCREMENT the next id is above every id the table ever held,
remembered in ``sqlite_sequence``.

SQLite cannot add AUTOINCREMENT to an existing table: each table is rebuilt
(batch mode: create a copy with AUTOINCREMENT, copy the rows with their ids,
drop the old table, rename the copy, recreate the indexes). The rebuild drops
tables that others reference, so it must run with foreign keys off (a DROP
with them on deletes the referencing rows through ON DELETE CASCADE);
``Database.migrate`` turns them off around the migration and this migration
refuses to run otherwise.

The sequence of every table starts at its current highest id. Ids that were
used and deleted before this migration cannot be known any more: if the
highest ones were deleted, they can still be handed out once more (only those
above the highest id left; from then on never again).

PostgreSQL: nothing to do. Its ids come from BIGSERIAL sequences, which never
go back (a test checks every id column has one).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The tables with an id that users or other rows refer to (as of 0004).
TABLES = (
    "users",
    "api_keys",
    "user_spaces",
    "buckets",
    "packages",
    "objects",
    "layouts",
    "blocks",
    "transfer_tasks",
)


def _sqlite_bind() -> sa.Connection | None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return None
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "migration 0005 rebuilds tables and must run with foreign keys off "
            "(PRAGMA foreign_keys=OFF before the transaction); with them on, "
            "dropping a table deletes the rows that reference it"
        )
    return bind


def _violations(bind: sa.Connection) -> set[tuple[object, ...]]:
    return {tuple(row) for row in bind.exec_driver_sql("PRAGMA foreign_key_check")}


def _counts(bind: sa.Connection) -> dict[str, int]:
    return {
        t: int(bind.exec_driver_sql(f'SELECT COUNT(*) FROM "{t}"').scalar_one()) for t in TABLES
    }


def _rebuild(bind: sa.Connection, autoincrement: bool) -> None:
    before, counts = _violations(bind), _counts(bind)
    for table in TABLES:
        kwargs = {"sqlite_autoincrement": True} if autoincrement else {}
        with op.batch_alter_table(table, recreate="always", table_kwargs=kwargs):
            pass
    if _counts(bind) != counts:
        raise RuntimeError(f"migration 0005 lost rows: {counts} before, {_counts(bind)} after")
    if not _violations(bind) <= before:
        raise RuntimeError("migration 0005 broke references between tables")


def upgrade() -> None:
    bind = _sqlite_bind()
    if bind is None:
        return
    _rebuild(bind, autoincrement=True)
    for table in TABLES:
        # The copy already moved the sequence to the highest id copied; say so
        # explicitly (an empty table starts at 0: its first id is 1).
        bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        bind.execute(
            sa.text(
                f"INSERT INTO sqlite_sequence (name, seq) "
                f'SELECT :t, COALESCE(MAX(id), 0) FROM "{table}"'
            ),
            {"t": table},
        )


def downgrade() -> None:
    bind = _sqlite_bind()
    if bind is None:
        return
    _rebuild(bind, autoincrement=False)
