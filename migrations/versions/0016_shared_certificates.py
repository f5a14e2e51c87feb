"""Each brand's certificate chain and key kept in the database, so that every mail node serves
the certificate one of them obtained; each configuration generation names its node.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 19:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN: a batch copy of `brand` would lose its partial index's condition.
    op.add_column("brand", sa.Column("cert_chain_pem", sa.Text(), nullable=True))
    op.add_column("brand", sa.Column("cert_key_pem", sa.Text(), nullable=True))
    # Each node renders and records its own configuration generations.
    op.add_column("config_generation", sa.Column("node", sa.String(length=63), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("config_generation", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("node")
    with op.batch_alter_table("brand") as batch_op:
        batch_op.drop_column("cert_key_pem")
        batch_op.drop_column("cert_chain_pem")
