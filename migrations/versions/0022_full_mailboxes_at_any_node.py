"""A full mailbox refused at RCPT on whichever node the mail arrives at (PostgreSQL).

Dovecot's quota-status answers for the mailboxes of its own node only: asked on node A about a
mailbox that node B holds, it finds no mail and says yes, and B's LMTP then defers the message
until it expires. Every node's usage writer keeps the shared `mailbox_usage` table (Dovecot's
quota_clone), so Postfix on any node can ask the database whether the mailbox is already full.

The function runs with its owner's rights (SECURITY DEFINER, with its search path fixed) and
answers one reply or nothing: Postfix's role learns whether a mailbox is full, never its size,
quota or usage. `mailbox_usage` is made by daemons/usage.py when the logins are granted; a
PL/pgSQL body is resolved when called, so this migration does not need it yet.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 22:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION postfix_full_mailbox(local_name text, domain_name text)
        RETURNS SETOF text LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
        BEGIN
            RETURN QUERY
            SELECT '552 5.2.2 Mailbox is full'::text
            FROM mailbox m
            JOIN domain d ON d.id = m.domain_id
            JOIN mailbox_usage u ON u.address = m.local_part || '@' || d.name
            WHERE m.local_part = local_name AND d.name = domain_name AND u.bytes >= m.quota_bytes
            -- A row left by an earlier mailbox at this address (deleted, renamed) is not its
            -- usage: it counts from the second the mailbox was made (daemons/usage.py alike).
            AND u.measured_at_ms >= floor(extract(epoch FROM m.created_at)) * 1000;
        END $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION postfix_full_mailbox(text, text) FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS postfix_full_mailbox(text, text)")
