"""Blocks owed a delete (``stray_blocks``): a block that nothing references
any more but could not be deleted (its cloud unreachable or Unavailable) is
remembered, and GC deletes it once its space answers, instead of leaving it
in the user's storage until an ``fsck --repair``

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stray_blocks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_space_id", Id, nullable=False),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_space_id"], ["user_spaces.id"], ondelete="CASCADE"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_stray_blocks_user_space_id", "stray_blocks", ["user_space_id"])


def downgrade() -> None:
    op.drop_index("ix_stray_blocks_user_space_id", table_name="stray_blocks")
    op.drop_table("stray_blocks")
