"""Certificates from the ACME server for the platform host and for the setup names of domains
without a brand, grouped per tenant (models/certificate.py).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controlplane.models.base import UTCDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "platform_certificate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lineage", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("wanted_names", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.Column("cert_status", sa.String(length=20), nullable=False),
        sa.Column("cert_error", sa.Text(), nullable=False),
        sa.Column("cert_names", sa.Text(), nullable=False),
        sa.Column("cert_not_after", UTCDateTime(timezone=True), nullable=True),
        sa.Column("cert_failures", sa.Integer(), nullable=False),
        sa.Column("cert_next_attempt_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("cert_chain_pem", sa.Text(), nullable=True),
        sa.Column("cert_key_pem", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_platform_certificate_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_certificate")),
        sa.UniqueConstraint("lineage", name=op.f("uq_platform_certificate_lineage")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_platform_certificate_tenant_id"), "platform_certificate", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_platform_certificate_tenant_id"), table_name="platform_certificate")
    op.drop_table("platform_certificate")
