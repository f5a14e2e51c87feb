"""A partial index on the queue entries still open, which each log ingest run reads first.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 20:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mail_queue_entry", schema=None) as batch_op:
        batch_op.create_index(
            "ix_mail_queue_entry_open",
            ["queue_id"],
            unique=False,
            sqlite_where=sa.text("removed = 0"),
            postgresql_where=sa.text("NOT removed"),
        )


def downgrade() -> None:
    with op.batch_alter_table("mail_queue_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_queue_entry_open")
