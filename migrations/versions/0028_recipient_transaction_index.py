"""Drop mail_recipient_result's index on transaction_id: the unique constraint's index on
(transaction_id, recipient, orig_to) serves every lookup by transaction, and keeping both cost
each ingested row a second index write.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 20:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


# Plain DDL, not a batch: on SQLite a batch may copy the whole table, and this one holds every
# recipient ever logged.
def upgrade() -> None:
    op.drop_index("ix_mail_recipient_result_transaction_id", table_name="mail_recipient_result")


def downgrade() -> None:
    op.create_index(
        "ix_mail_recipient_result_transaction_id", "mail_recipient_result", ["transaction_id"], unique=False
    )
