"""Each mailbox's allow and block lists of senders, and the view Dovecot reads them through at
every delivery: one comma-wrapped list of each kind per mailbox (",ann@example.com,@example.org,"),
which the global Sieve rule searches for the message's senders.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

SENDER_LISTS_VIEW = """
    SELECT m.local_part AS local_part, d.name AS domain,
           ',' || {join}(CASE WHEN r.verdict = 'allow' THEN r.sender END, ',') || ',' AS allowed,
           ',' || {join}(CASE WHEN r.verdict = 'block' THEN r.sender END, ',') || ',' AS blocked
    FROM sender_rule r JOIN mailbox m ON m.id = r.mailbox_id JOIN domain d ON d.id = m.domain_id
    GROUP BY m.id, m.local_part, d.name"""
# The same aggregate under each engine's name (both skip NULLs).
STRING_JOIN = {"sqlite": "group_concat", "postgresql": "string_agg"}


def upgrade() -> None:
    op.create_table(
        "sender_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=255), nullable=False),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.CheckConstraint("verdict IN ('allow', 'block')", name=op.f("ck_sender_rule_verdict_known")),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailbox.id"], name=op.f("fk_sender_rule_mailbox_id_mailbox"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sender_rule")),
        sa.UniqueConstraint("mailbox_id", "sender", name=op.f("uq_sender_rule_mailbox_id_sender")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_sender_rule_mailbox_id"), "sender_rule", ["mailbox_id"], unique=False)
    join = STRING_JOIN[op.get_bind().dialect.name]
    op.execute(f"CREATE VIEW mail_sender_lists AS {SENDER_LISTS_VIEW.format(join=join)}")


def downgrade() -> None:
    op.execute("DROP VIEW mail_sender_lists")
    op.drop_index(op.f("ix_sender_rule_mailbox_id"), table_name="sender_rule")
    op.drop_table("sender_rule")
