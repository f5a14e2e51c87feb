"""Mail hygiene: the spam filter's verdict on each transaction, per-domain spam thresholds (and the
view Dovecot reads them through), and the domains' DKIM keys.

Columns are added without rebuilding tables: a batch rebuild of `domain` would drop the
triggers that keep its counts (0003).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SPAM_SCORES_VIEW = """
    SELECT d.name AS domain, d.spam_reject_score AS reject_score, d.spam_junk_score AS junk_score
    FROM domain d"""


def upgrade() -> None:
    op.add_column(
        "mail_transaction", sa.Column("spam_action", sa.String(length=16), nullable=False, server_default="")
    )
    op.add_column("mail_transaction", sa.Column("spam_score", sa.Float(), nullable=True))
    op.add_column(
        "mail_transaction",
        sa.Column("spam_symbols", sa.String(length=1000), nullable=False, server_default=""),
    )
    op.add_column("domain", sa.Column("spam_reject_score", sa.Float(), nullable=True))
    op.add_column("domain", sa.Column("spam_junk_score", sa.Float(), nullable=True))
    # Dovecot's userdb reads each mailbox's junk score through this view (columns stay stable).
    op.execute(f"CREATE VIEW mail_domain_spam_scores AS {SPAM_SCORES_VIEW}")
    op.create_table(
        "dkim_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("selector", sa.String(length=63), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retire_after", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("algorithm IN ('rsa-2048', 'ed25519')", name=op.f("ck_dkim_key_algorithm_known")),
        sa.CheckConstraint(
            "state IN ('active', 'retiring', 'retired')", name=op.f("ck_dkim_key_state_known")
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_dkim_key_domain_id_domain"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dkim_key")),
        sa.UniqueConstraint(
            "domain_id", "selector", "algorithm", name=op.f("uq_dkim_key_domain_id_selector_algorithm")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_dkim_key_domain_id"), "dkim_key", ["domain_id"], unique=False)


def downgrade() -> None:
    op.execute("DROP VIEW mail_domain_spam_scores")
    op.drop_index(op.f("ix_dkim_key_domain_id"), table_name="dkim_key")
    op.drop_table("dkim_key")
    op.drop_column("domain", "spam_junk_score")
    op.drop_column("domain", "spam_reject_score")
    op.drop_column("mail_transaction", "spam_symbols")
    op.drop_column("mail_transaction", "spam_score")
    op.drop_column("mail_transaction", "spam_action")
