"""Alerts a domain's admins asked for: bounces and refusals an hour, mailboxes past 95% of storage.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 11:44:23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controlplane.models.base import UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domain_alert",
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("bounce_threshold", sa.Integer(), nullable=True),
        sa.Column("storage_warning", sa.Boolean(), nullable=False),
        sa.Column("last_bounce_alert_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_domain_alert_domain_id_domain"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("domain_id", name=op.f("pk_domain_alert")),
    )
    op.create_table(
        "mailbox_storage_alert",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("alerted_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailbox.id"],
            name=op.f("fk_mailbox_storage_alert_mailbox_id_mailbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_mailbox_storage_alert")),
    )


def downgrade() -> None:
    op.drop_table("mailbox_storage_alert")
    op.drop_table("domain_alert")
