"""Which mail node handled each mail transaction and each login, for the log viewers.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLES = ("mail_transaction", "auth_event")


def upgrade() -> None:
    # Plain ADD COLUMN with a default: existing rows are a single machine's ("").
    for table in TABLES:
        op.add_column(table, sa.Column("node", sa.String(length=63), server_default="", nullable=False))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, table_kwargs={"sqlite_autoincrement": True}) as batch_op:
            batch_op.drop_column("node")
