"""Mail brought in from old providers: migration jobs and one row per mailbox copied over IMAP.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 11:09:06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controlplane.models.base import UTCDateTime

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "migration_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("closed_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_migration_job_domain_id_domain"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_migration_job_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_job")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("migration_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_migration_job_domain_id"), ["domain_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_migration_job_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "migration_mailbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("old_host", sa.String(length=255), nullable=False),
        sa.Column("old_port", sa.Integer(), nullable=False),
        sa.Column("old_security", sa.String(length=16), nullable=False),
        sa.Column("old_login", sa.String(length=320), nullable=False),
        sa.Column("old_password_sealed", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("pass_kind", sa.String(length=8), nullable=False),
        sa.Column("passes", sa.Integer(), nullable=False),
        sa.Column("messages_total", sa.BigInteger(), nullable=True),
        sa.Column("bytes_total", sa.BigInteger(), nullable=True),
        sa.Column("messages_done", sa.BigInteger(), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("messages_last_pass", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("started_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_migration_mailbox_state_known")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["migration_job.id"],
            name=op.f("fk_migration_mailbox_job_id_migration_job"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailbox.id"],
            name=op.f("fk_migration_mailbox_mailbox_id_mailbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_mailbox")),
        sa.UniqueConstraint("job_id", "mailbox_id", name=op.f("uq_migration_mailbox_job_id_mailbox_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("migration_mailbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_migration_mailbox_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_migration_mailbox_mailbox_id"), ["mailbox_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_migration_mailbox_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("migration_mailbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_migration_mailbox_state"))
        batch_op.drop_index(batch_op.f("ix_migration_mailbox_mailbox_id"))
        batch_op.drop_index(batch_op.f("ix_migration_mailbox_job_id"))

    op.drop_table("migration_mailbox")
    with op.batch_alter_table("migration_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_migration_job_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_migration_job_domain_id"))

    op.drop_table("migration_job")
