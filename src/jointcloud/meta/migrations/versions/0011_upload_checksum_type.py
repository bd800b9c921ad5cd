"""Multipart uploads remember their checksum type: FULL_OBJECT (a CRC of
the whole object, combined from the parts') or composite (NULL)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN of a nullable column: no table rebuild on SQLite.
    op.add_column("uploads", sa.Column("checksum_type", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("uploads", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("checksum_type")
