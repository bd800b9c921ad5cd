"""auth_records as 0008 makes it: a database migrated by the first 0008

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 04:00:00

0008 was changed after it was first committed (f3209c2 made ``auth_records``
with one ``sealed`` column; 3b065ef, four minutes later, split it into
``encrypted_secret_key`` and ``encrypted_access_grant``). A database
migrated by a release between the two is at revision 0008 with the first
shape, and nothing ever changed it: every ``POST /v1/access`` (``jcs s3
credentials``, the gateway's ``/createCredentials``) failed with a 500 on
the missing columns. Such a table is made again in the final shape. It
holds no row: nothing in those releases wrote one (``add_auth_record`` had
no caller until the auth service came with 3b065ef), and a row sealed so
could not be read by any later release anyway. Other databases are left
as they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("auth_records")}
    if "sealed" not in columns or "encrypted_secret_key" in columns:
        return
    op.drop_index("ix_auth_records_project_key_id", table_name="auth_records")
    op.drop_table("auth_records")
    op.create_table(
        "auth_records",
        sa.Column("key_hash", sa.LargeBinary(), primary_key=True),
        sa.Column(
            "project_key_id",
            Id,
            sa.ForeignKey("project_keys.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("encrypted_secret_key", sa.LargeBinary(), nullable=False),
        sa.Column("encrypted_access_grant", sa.LargeBinary(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_auth_records_project_key_id", "auth_records", ["project_key_id"])


def downgrade() -> None:
    pass  # the final shape is the one 0008 makes: nothing to undo
