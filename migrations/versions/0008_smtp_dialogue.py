"""The SMTP dialogue of port-25 sessions, line by line, attached to its transaction.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "smtp_dialogue_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=True),
        sa.Column("process", sa.String(length=300), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(length=1), nullable=False),
        sa.Column("text", sa.String(length=1000), nullable=False),
        sa.Column("session_start", sa.Boolean(), nullable=False),
        sa.CheckConstraint("direction IN ('<', '>')", name=op.f("ck_smtp_dialogue_line_direction_known")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["mail_transaction.id"],
            name=op.f("fk_smtp_dialogue_line_transaction_id_mail_transaction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_smtp_dialogue_line")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("smtp_dialogue_line", schema=None) as batch_op:
        batch_op.create_index("ix_smtp_dialogue_line_process_id", ["process", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_smtp_dialogue_line_time"), ["time"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_smtp_dialogue_line_transaction_id"), ["transaction_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("smtp_dialogue_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_smtp_dialogue_line_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_smtp_dialogue_line_time"))
        batch_op.drop_index("ix_smtp_dialogue_line_process_id")
    op.drop_table("smtp_dialogue_line")
