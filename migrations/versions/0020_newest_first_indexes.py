"""The audit trail's and the logins' per-tenant and per-domain indexes end with `id`.

Both are read newest first with `id` breaking ties in `time`. SQLite keeps the rowid in every
index, so its (tenant_id, time) index already gave that order; PostgreSQL's did not, and sorted
every entry sharing the newest second: 50 ms for the dashboard's ten newest changes after a
bulk creation of 200,000 mailboxes (bench/admin_pages.py --database postgresql).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 22:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_audit_entry_tenant_id_time": ("audit_entry", "tenant_id"),
    "ix_audit_entry_domain_id_time": ("audit_entry", "domain_id"),
    "ix_auth_event_tenant_id_time": ("auth_event", "tenant_id"),
    "ix_auth_event_domain_id_time": ("auth_event", "domain_id"),
}


def _recreate(with_id: bool) -> None:
    for name, (table, owner) in INDEXES.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [owner, "time", *(["id"] if with_id else [])])


def upgrade() -> None:
    _recreate(with_id=True)


def downgrade() -> None:
    _recreate(with_id=False)
