"""Mail logs: SMTP transactions, queue entries, recipient outcomes, checkpoints, unparsed lines.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 19:00:21.916536
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_checkpoint")),
        sa.UniqueConstraint("path", name=op.f("uq_log_checkpoint_path")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "unparsed_log_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unparsed_log_line")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("unparsed_log_line", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_unparsed_log_line_time"), ["time"], unique=False)

    op.create_table(
        "mail_transaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_name", sa.String(length=255), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("helo", sa.String(length=255), nullable=False),
        sa.Column("sasl_user", sa.String(length=255), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("sender_domain_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["sender_domain_id"],
            ["domain.id"],
            name=op.f("fk_mail_transaction_sender_domain_id_domain"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_transaction")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("mail_transaction", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_transaction_client_ip"), ["client_ip"], unique=False)
        batch_op.create_index(batch_op.f("ix_mail_transaction_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mail_transaction_sasl_user"), ["sasl_user"], unique=False)
        batch_op.create_index(batch_op.f("ix_mail_transaction_sender"), ["sender"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mail_transaction_sender_domain_id"), ["sender_domain_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_mail_transaction_time"), ["time"], unique=False)

    op.create_table(
        "mail_queue_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["mail_transaction.id"],
            name=op.f("fk_mail_queue_entry_transaction_id_mail_transaction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_queue_entry")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("mail_queue_entry", schema=None) as batch_op:
        batch_op.create_index("ix_mail_queue_entry_queue_id_removed", ["queue_id", "removed"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mail_queue_entry_transaction_id"), ["transaction_id"], unique=False
        )

    op.create_table(
        "mail_recipient_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("orig_to", sa.String(length=320), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=True),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("relay", sa.String(length=255), nullable=False),
        sa.Column("status_code", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('delivered', 'forwarded', 'relayed', 'deferred', 'bounced', 'refused', 'expired')",
            name=op.f("ck_mail_recipient_result_outcome_known"),
        ),
        sa.CheckConstraint("attempts >= 1", name=op.f("ck_mail_recipient_result_attempts_positive")),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domain.id"],
            name=op.f("fk_mail_recipient_result_domain_id_domain"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["mail_transaction.id"],
            name=op.f("fk_mail_recipient_result_transaction_id_mail_transaction"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_recipient_result")),
        sa.UniqueConstraint(
            "transaction_id",
            "recipient",
            "orig_to",
            name=op.f("uq_mail_recipient_result_transaction_id_recipient_orig_to"),
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("mail_recipient_result", schema=None) as batch_op:
        batch_op.create_index("ix_mail_recipient_result_domain_id_time", ["domain_id", "time"], unique=False)
        batch_op.create_index(batch_op.f("ix_mail_recipient_result_orig_to"), ["orig_to"], unique=False)
        batch_op.create_index(batch_op.f("ix_mail_recipient_result_recipient"), ["recipient"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mail_recipient_result_transaction_id"), ["transaction_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mail_recipient_result", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_recipient_result_transaction_id"))
        batch_op.drop_index(batch_op.f("ix_mail_recipient_result_recipient"))
        batch_op.drop_index(batch_op.f("ix_mail_recipient_result_orig_to"))
        batch_op.drop_index("ix_mail_recipient_result_domain_id_time")

    op.drop_table("mail_recipient_result")
    with op.batch_alter_table("mail_queue_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_queue_entry_transaction_id"))
        batch_op.drop_index("ix_mail_queue_entry_queue_id_removed")

    op.drop_table("mail_queue_entry")
    with op.batch_alter_table("mail_transaction", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_transaction_time"))
        batch_op.drop_index(batch_op.f("ix_mail_transaction_sender_domain_id"))
        batch_op.drop_index(batch_op.f("ix_mail_transaction_sender"))
        batch_op.drop_index(batch_op.f("ix_mail_transaction_sasl_user"))
        batch_op.drop_index(batch_op.f("ix_mail_transaction_message_id"))
        batch_op.drop_index(batch_op.f("ix_mail_transaction_client_ip"))

    op.drop_table("mail_transaction")
    with op.batch_alter_table("unparsed_log_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unparsed_log_line_time"))

    op.drop_table("unparsed_log_line")
    op.drop_table("log_checkpoint")
