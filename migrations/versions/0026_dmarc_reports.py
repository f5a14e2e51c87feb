"""DMARC aggregate reports received at the platform's dmarc-reports address, per hosted domain.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 11:36:21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controlplane.models.base import UTCDateTime

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dmarc_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("organization", sa.String(length=255), nullable=False),
        sa.Column("report_id", sa.String(length=255), nullable=False),
        sa.Column("contact", sa.String(length=255), nullable=False),
        sa.Column("policy", sa.String(length=20), nullable=False),
        sa.Column("begins_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_dmarc_report_domain_id_domain"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmarc_report")),
        sa.UniqueConstraint(
            "domain_id",
            "organization",
            "report_id",
            name=op.f("uq_dmarc_report_domain_id_organization_report_id"),
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("dmarc_report", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dmarc_report_begins_at"), ["begins_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_dmarc_report_domain_id"), ["domain_id"], unique=False)

    op.create_table(
        "dmarc_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dmarc_report_id", sa.Integer(), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("header_from", sa.String(length=253), nullable=False),
        sa.Column("dkim_aligned", sa.Boolean(), nullable=False),
        sa.Column("spf_aligned", sa.Boolean(), nullable=False),
        sa.Column("disposition", sa.String(length=20), nullable=False),
        sa.Column("dkim_results", sa.String(length=500), nullable=False),
        sa.Column("spf_results", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["dmarc_report_id"],
            ["dmarc_report.id"],
            name=op.f("fk_dmarc_record_dmarc_report_id_dmarc_report"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmarc_record")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("dmarc_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dmarc_record_dmarc_report_id"), ["dmarc_report_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dmarc_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dmarc_record_dmarc_report_id"))

    op.drop_table("dmarc_record")
    with op.batch_alter_table("dmarc_report", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dmarc_report_domain_id"))
        batch_op.drop_index(batch_op.f("ix_dmarc_report_begins_at"))

    op.drop_table("dmarc_report")
