"""TLS reports (RFC 8460) received at the platform's tls-reports address, per hosted domain.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 05:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controlplane.models.base import UTCDateTime

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tls_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("organization", sa.String(length=255), nullable=False),
        sa.Column("report_id", sa.String(length=255), nullable=False),
        sa.Column("contact", sa.String(length=255), nullable=False),
        sa.Column("policy_type", sa.String(length=30), nullable=False),
        sa.Column("starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("successful_sessions", sa.Integer(), nullable=False),
        sa.Column("failed_sessions", sa.Integer(), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_tls_report_domain_id_domain"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tls_report")),
        sa.UniqueConstraint(
            "domain_id",
            "organization",
            "report_id",
            "policy_type",
            name=op.f("uq_tls_report_domain_id_organization_report_id_policy_type"),
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_tls_report_domain_id"), "tls_report", ["domain_id"], unique=False)
    op.create_table(
        "tls_report_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tls_report_id", sa.Integer(), nullable=False),
        sa.Column("result_type", sa.String(length=60), nullable=False),
        sa.Column("sending_mta_ip", sa.String(length=64), nullable=False),
        sa.Column("receiving_mx_hostname", sa.String(length=255), nullable=False),
        sa.Column("receiving_ip", sa.String(length=64), nullable=False),
        sa.Column("failed_sessions", sa.Integer(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tls_report_id"],
            ["tls_report.id"],
            name=op.f("fk_tls_report_failure_tls_report_id_tls_report"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tls_report_failure")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_tls_report_failure_tls_report_id"), "tls_report_failure", ["tls_report_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_tls_report_failure_tls_report_id"), table_name="tls_report_failure")
    op.drop_table("tls_report_failure")
    op.drop_index(op.f("ix_tls_report_domain_id"), table_name="tls_report")
    op.drop_table("tls_report")
