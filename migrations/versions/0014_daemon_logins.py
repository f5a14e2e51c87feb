"""The daemons' own database logins on PostgreSQL (empty on SQLite).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daemon_login",
        sa.Column("daemon", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=63), nullable=False),
        sa.Column("password", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("daemon", name=op.f("pk_daemon_login")),
        sa.UniqueConstraint("role", name=op.f("uq_daemon_login_role")),
    )


def downgrade() -> None:
    op.drop_table("daemon_login")
