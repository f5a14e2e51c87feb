"""Log checkpoints belong to a file's identity (device, inode, head of content), not its path.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 19:45:00

Existing checkpoints keep their offset and head; their device is unknown, so they are
recognised by content on the next read, which attaches them to the file's inode again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from controlplane.schema import sqlite_views_and_triggers_set_aside

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with sqlite_views_and_triggers_set_aside(op):
        with op.batch_alter_table("log_checkpoint", schema=None) as batch_op:
            batch_op.drop_constraint("uq_log_checkpoint_path", type_="unique")
            batch_op.add_column(sa.Column("device", sa.BigInteger(), nullable=True))
            batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
            batch_op.alter_column("inode", existing_type=sa.BigInteger(), nullable=True)
            batch_op.create_index(batch_op.f("ix_log_checkpoint_path"), ["path"], unique=False)
            batch_op.create_index(batch_op.f("ix_log_checkpoint_head"), ["head"], unique=False)
            batch_op.create_unique_constraint(batch_op.f("uq_log_checkpoint_device_inode"), ["device", "inode"])
        op.execute("UPDATE log_checkpoint SET inode = NULL")
        with op.batch_alter_table("log_checkpoint", schema=None) as batch_op:
            batch_op.alter_column("version", existing_type=sa.Integer(), server_default=None)


def downgrade() -> None:
    with sqlite_views_and_triggers_set_aside(op):
        op.execute("DELETE FROM log_checkpoint WHERE inode IS NULL")
        with op.batch_alter_table("log_checkpoint", schema=None) as batch_op:
            batch_op.drop_constraint("uq_log_checkpoint_device_inode", type_="unique")
            batch_op.drop_index(batch_op.f("ix_log_checkpoint_head"))
            batch_op.drop_index(batch_op.f("ix_log_checkpoint_path"))
            batch_op.alter_column("inode", existing_type=sa.BigInteger(), nullable=False)
            batch_op.drop_column("version")
            batch_op.drop_column("device")
            batch_op.create_unique_constraint("uq_log_checkpoint_path", ["path"])
