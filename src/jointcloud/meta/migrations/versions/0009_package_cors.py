"""CORS configuration of packages (the S3 bucket's cors sub-resource), packages
indexed by name

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN of a nullable column: no table rebuild on SQLite.
    op.add_column("packages", sa.Column("cors", sa.Text(), nullable=True))  # JSON list of rules
    # CORS preflights carry no credentials: packages are found by name alone.
    op.create_index("ix_packages_name", "packages", ["name"])


def downgrade() -> None:
    op.drop_index("ix_packages_name", "packages")
    with op.batch_alter_table("packages", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("cors")
