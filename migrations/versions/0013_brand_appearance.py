"""A brand's whole appearance: accent colour, page title, footer text, a logo for dark pages
and a favicon of its own.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = (
    ("accent_colour", sa.String(length=7)),
    ("page_title", sa.String(length=100)),
    ("footer_text", sa.String(length=200)),
    ("logo_dark", sa.LargeBinary()),
    ("logo_dark_type", sa.String(length=40)),
    ("favicon", sa.LargeBinary()),
    ("favicon_type", sa.String(length=40)),
)


def upgrade() -> None:
    # Plain ADD COLUMN: a batch copy of the table would lose its partial index's condition.
    for name, kind in COLUMNS:
        op.add_column("brand", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("brand") as batch:
        for name, _kind in reversed(COLUMNS):
            batch.drop_column(name)
