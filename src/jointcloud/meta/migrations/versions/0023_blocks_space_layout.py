"""A drain (and the repair job's scan of Unavailable spaces) lists the
blocks of a space a page at a time in layout order, past a cursor. The
index on ``user_space_id`` alone gave no order: each page read and sorted
every block the space still held (a review: 40,000 blocks, 156 pages of a
drain, each reading all that were left). This index, on the space and then
the layout, replaces it: a page reads its own rows.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 10:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_blocks_space_layout", "blocks", ["user_space_id", "layout_id", "idx"])
    op.drop_index("ix_blocks_user_space_id", table_name="blocks")


def downgrade() -> None:
    op.create_index("ix_blocks_user_space_id", "blocks", ["user_space_id"])
    op.drop_index("ix_blocks_space_layout", table_name="blocks")
