"""Small objects inline: a layout's one sealed block may live in the
metadata database

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN of a nullable column: no table rebuild on SQLite.
    op.add_column("layouts", sa.Column("inline_data", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("layouts", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("inline_data")
