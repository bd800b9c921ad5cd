"""A runner looking for work (every second, and at each end of a run while
it runs tasks) asked for open runs or due tasks in one query whose open-run
branch no index served: it read every task kept (finished ones stay a
week), and every due one, however few it could start (a scale review:
10,000 due tasks cost 0.3 s of CPU a look). Open runs are now found by
this index on ``state``, due tasks a page at a time by ``next_run_at``.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 10:45:00
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_transfer_tasks_state", "transfer_tasks", ["state"])


def downgrade() -> None:
    op.drop_index("ix_transfer_tasks_state", table_name="transfer_tasks")
