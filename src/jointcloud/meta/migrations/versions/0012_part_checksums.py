"""An object's parts keep their own checksums: S3 answers them for a part
read (``partNumber``) and in GetObjectAttributes

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN of a nullable column: no table rebuild on SQLite.
    # Parts completed before it have none (NULL), as before.
    op.add_column("object_parts", sa.Column("checksums", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("object_parts") as batch:
        batch.drop_column("checksums")
