"""Senders whose remote images a mailbox's user always sees in the webmail.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_sender",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailbox.id"], name=op.f("fk_image_sender_mailbox_id_mailbox"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_sender")),
        sa.UniqueConstraint("mailbox_id", "sender", name=op.f("uq_image_sender_mailbox_id_sender")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_image_sender_mailbox_id"), "image_sender", ["mailbox_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_image_sender_mailbox_id"), table_name="image_sender")
    op.drop_table("image_sender")
