"""transfer tasks (sync, import, export) and their per-file records

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PathType = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "transfer_tasks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_no", sa.Integer(), nullable=False),
        sa.Column("run_open", sa.Boolean(), nullable=False),
        sa.Column("files_total", sa.BigInteger(), nullable=False),
        sa.Column("files_done", sa.BigInteger(), nullable=False),
        sa.Column("files_failed", sa.BigInteger(), nullable=False),
        sa.Column("files_skipped", sa.BigInteger(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_finish_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_transfer_tasks_user_id", "transfer_tasks", ["user_id"])
    op.create_index("ix_transfer_tasks_next_run_at", "transfer_tasks", ["next_run_at"])
    op.create_table(
        "transfer_files",
        sa.Column(
            "task_id",
            Id,
            sa.ForeignKey("transfer_tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("dest", sa.Integer(), primary_key=True),
        sa.Column("path", PathType, primary_key=True),
        sa.Column("src_size", sa.BigInteger(), nullable=False),
        sa.Column("src_mtime", sa.Float(), nullable=False),
        sa.Column("run_no", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("transfer_files")
    op.drop_index("ix_transfer_tasks_next_run_at", table_name="transfer_tasks")
    op.drop_index("ix_transfer_tasks_user_id", table_name="transfer_tasks")
    op.drop_table("transfer_tasks")
