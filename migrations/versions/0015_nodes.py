"""Mail nodes sharing one database: the nodes, the mailbox's node, the change generation the
nodes follow, the view Dovecot reads to proxy a login or a delivery to a mailbox's node, and the
DKIM private keys every node signs with.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controlplane.schema import sqlite_views_and_triggers_set_aside

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

USER_NODES_VIEW = """
    SELECT m.local_part AS local_part, d.name AS domain, n.name AS node, n.address AS host,
           n.imap_port AS imap_port, n.pop3_port AS pop3_port, n.lmtp_port AS lmtp_port,
           n.managesieve_port AS managesieve_port
    FROM mailbox m JOIN domain d ON d.id = m.domain_id JOIN node n ON n.id = m.node_id"""


def upgrade() -> None:
    op.create_table(
        "node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("address", sa.String(length=253), nullable=False),
        sa.Column("imap_port", sa.Integer(), nullable=False),
        sa.Column("pop3_port", sa.Integer(), nullable=False),
        sa.Column("lmtp_port", sa.Integer(), nullable=False),
        sa.Column("managesieve_port", sa.Integer(), nullable=False),
        sa.Column("takes_mailboxes", sa.Boolean(), nullable=False),
        sa.Column("applied_generation", sa.Integer(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node")),
        sa.UniqueConstraint("name", name=op.f("uq_node_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "state_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_generation")),
    )
    op.execute("INSERT INTO state_generation (id, number) VALUES (1, 0)")
    # SQLite names a foreign key only in a rebuilt table (batch mode), which would take the views
    # and triggers that name `mailbox` along: set them aside meanwhile.
    # The rebuilt table keeps AUTOINCREMENT: a deleted mailbox's id is never given to another.
    with (
        sqlite_views_and_triggers_set_aside(op),
        op.batch_alter_table("mailbox", table_kwargs={"sqlite_autoincrement": True}) as batch_op,
    ):
        batch_op.add_column(sa.Column("node_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_mailbox_node_id_node"), "node", ["node_id"], ["id"], ondelete="RESTRICT"
        )
    op.create_index(op.f("ix_mailbox_node_id"), "mailbox", ["node_id"], unique=False)
    op.execute(f"CREATE VIEW mail_user_nodes AS {USER_NODES_VIEW}")
    # Every node signs with the same DKIM keys: they are kept in the database too.
    op.add_column("dkim_key", sa.Column("private_key", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dkim_key") as batch_op:
        batch_op.drop_column("private_key")
    op.execute("DROP VIEW mail_user_nodes")
    op.drop_index(op.f("ix_mailbox_node_id"), table_name="mailbox")
    with (
        sqlite_views_and_triggers_set_aside(op),
        op.batch_alter_table("mailbox", table_kwargs={"sqlite_autoincrement": True}) as batch_op,
    ):
        batch_op.drop_constraint(batch_op.f("fk_mailbox_node_id_node"), type_="foreignkey")
        batch_op.drop_column("node_id")
    op.drop_table("state_generation")
    op.drop_table("node")
