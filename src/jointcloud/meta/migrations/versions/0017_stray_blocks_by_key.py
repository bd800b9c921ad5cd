"""Debts of blocks found by (space, key): since drain and repair owe every
block they let go of in their swap's transaction and forgive it once its
delete succeeded, each forgiving looked through all of its space's debts
(indexed by space only); a space that stays unreachable while a drain runs
made that quadratic. The new index leads with the space, so it also serves
what the old one did.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 03:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_stray_blocks_space_key", "stray_blocks", ["user_space_id", "key"])
    op.drop_index("ix_stray_blocks_user_space_id", table_name="stray_blocks")


def downgrade() -> None:
    op.create_index("ix_stray_blocks_user_space_id", "stray_blocks", ["user_space_id"])
    op.drop_index("ix_stray_blocks_space_key", table_name="stray_blocks")
