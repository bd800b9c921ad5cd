"""accounts and capability keys: disabled users, named user keys, project
API keys (macaroons), revoked tails, passphrase verifiers, auth records

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN: a batch (table copy) on SQLite would drop AUTOINCREMENT.
    op.add_column(
        "users", sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("api_keys", sa.Column("name", sa.String(255), nullable=True))
    op.add_column("api_keys", sa.Column("hint", sa.String(16), nullable=True))
    op.add_column("buckets", sa.Column("passphrase_verifier", sa.LargeBinary(), nullable=True))
    op.create_table(
        "project_keys",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("bucket_id", Id, sa.ForeignKey("buckets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("head", sa.LargeBinary(), nullable=False, unique=True),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "revoked_tails",
        sa.Column("tail", sa.LargeBinary(), primary_key=True),
        sa.Column(
            "project_key_id",
            Id,
            sa.ForeignKey("project_keys.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_revoked_tails_project_key_id", "revoked_tails", ["project_key_id"])
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
    op.drop_index("ix_auth_records_project_key_id", "auth_records")
    op.drop_table("auth_records")
    op.drop_index("ix_revoked_tails_project_key_id", "revoked_tails")
    op.drop_table("revoked_tails")
    op.drop_table("project_keys")
    auto = {"sqlite_autoincrement": True}
    with op.batch_alter_table("buckets", table_kwargs=auto) as batch:
        batch.drop_column("passphrase_verifier")
    with op.batch_alter_table("api_keys", table_kwargs=auto) as batch:
        batch.drop_column("hint")
        batch.drop_column("name")
    with op.batch_alter_table("users", table_kwargs=auto) as batch:
        batch.drop_column("disabled")
