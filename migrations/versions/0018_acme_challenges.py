"""HTTP-01 answers kept in the database, so whichever mail node the ACME server reaches gives them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_challenge",
        sa.Column("token", sa.String(length=255), nullable=False),
        sa.Column("validation", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False
        ),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_acme_challenge")),
    )


def downgrade() -> None:
    op.drop_table("acme_challenge")
