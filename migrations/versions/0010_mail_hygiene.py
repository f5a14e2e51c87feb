"""Mail hygiene: the spam filter's verdict on each transaction, per-domain spam thresholds (and the
view Dovecot reads them through), the domains' DKIM keys, outbound limits per tenant and mailbox
(and the view the sending limits service reads them through), and the tenant's postmaster address
with the view of every domain's postmaster@ and abuse@ routes.

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
# Who may send how much: each mailbox by its login, with its tenant's limits.
SEND_LIMITS_VIEW = """
    SELECT m.local_part || '@' || d.name AS login, t.id AS tenant_id,
           COALESCE(m.hourly_messages, t.mailbox_hourly_messages) AS mailbox_hourly_messages,
           t.tenant_hourly_messages AS tenant_hourly_messages,
           t.max_recipients_per_message AS max_recipients_per_message
    FROM mailbox m JOIN domain d ON d.id = m.domain_id JOIN tenant t ON t.id = d.tenant_id"""
# postmaster@ and abuse@ of every domain in service (RFC 5321 4.5.1, RFC 2142) reach its domain
# admins, else the tenant's postmaster address. Postfix asks this after the domain's own aliases
# and mailboxes (an alias of that name wins) and before its catch-all.
ROLE_ADDRESSES_VIEW = """
    SELECT r.local_part AS local_part, d.name AS domain, m.local_part || '@' || d.name AS destination
    FROM (SELECT 'postmaster' AS local_part UNION ALL SELECT 'abuse') r
    CROSS JOIN domain d
    JOIN tenant t ON t.id = d.tenant_id
    JOIN mailbox m ON m.domain_id = d.id
    WHERE m.is_domain_admin AND m.active AND d.active AND t.active
    UNION ALL
    SELECT r.local_part AS local_part, d.name AS domain, t.postmaster_address AS destination
    FROM (SELECT 'postmaster' AS local_part UNION ALL SELECT 'abuse') r
    CROSS JOIN domain d
    JOIN tenant t ON t.id = d.tenant_id
    WHERE d.active AND t.active AND t.postmaster_address <> ''
      AND NOT EXISTS (SELECT 1 FROM mailbox a WHERE a.domain_id = d.id AND a.is_domain_admin AND a.active)"""


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
    op.add_column("domain", sa.Column("greylisting", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Dovecot's userdb reads each mailbox's junk score through this view (columns stay stable).
    op.execute(f"CREATE VIEW mail_domain_spam_scores AS {SPAM_SCORES_VIEW}")
    # Outbound limits per tenant and mailbox, read by the sending limits service through a view.
    # (Check constraints would need a rebuild of `tenant`; the services validate the values.)
    op.add_column(
        "tenant", sa.Column("mailbox_hourly_messages", sa.Integer(), nullable=False, server_default=sa.text("300"))
    )
    op.add_column(
        "tenant", sa.Column("tenant_hourly_messages", sa.Integer(), nullable=False, server_default=sa.text("3000"))
    )
    op.add_column(
        "tenant",
        sa.Column("max_recipients_per_message", sa.Integer(), nullable=False, server_default=sa.text("100")),
    )
    op.add_column(
        "tenant", sa.Column("postmaster_address", sa.String(length=320), nullable=False, server_default=sa.text("''"))
    )
    op.add_column("mailbox", sa.Column("hourly_messages", sa.Integer(), nullable=True))
    op.execute(f"CREATE VIEW mail_send_limits AS {SEND_LIMITS_VIEW}")
    op.execute(f"CREATE VIEW mail_role_addresses AS {ROLE_ADDRESSES_VIEW}")
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
    op.execute("DROP VIEW mail_role_addresses")
    op.execute("DROP VIEW mail_send_limits")
    op.drop_column("mailbox", "hourly_messages")
    for column in ("postmaster_address", "max_recipients_per_message", "tenant_hourly_messages", "mailbox_hourly_messages"):
        op.drop_column("tenant", column)
    op.execute("DROP VIEW mail_domain_spam_scores")
    op.drop_index(op.f("ix_dkim_key_domain_id"), table_name="dkim_key")
    op.drop_table("dkim_key")
    op.drop_column("domain", "greylisting")
    op.drop_column("domain", "spam_junk_score")
    op.drop_column("domain", "spam_reject_score")
    op.drop_column("mail_transaction", "spam_symbols")
    op.drop_column("mail_transaction", "spam_score")
    op.drop_column("mail_transaction", "spam_action")
