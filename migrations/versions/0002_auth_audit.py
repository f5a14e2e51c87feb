"""Admin authentication and audit trail: login attempts, audit entries, admins' TOTP secrets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 17:29:40.299189
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("domain_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=400), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_audit_entry_domain_id_domain"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_audit_entry_tenant_id_tenant"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entry")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.create_index("ix_audit_entry_domain_id_time", ["domain_id", "time"], unique=False)
        batch_op.create_index("ix_audit_entry_tenant_id_time", ["tenant_id", "time"], unique=False)

    op.create_table(
        "auth_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(length=20), nullable=False),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("account", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("domain_id", sa.Integer(), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=500), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("password_fingerprint", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_auth_event_domain_id_domain"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_auth_event_tenant_id_tenant"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_event")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("auth_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_event_account"), ["account"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_event_client_ip"), ["client_ip"], unique=False)
        batch_op.create_index("ix_auth_event_domain_id_time", ["domain_id", "time"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_event_login"), ["login"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_event_network"), ["network"], unique=False)
        batch_op.create_index("ix_auth_event_tenant_id_time", ["tenant_id", "time"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_event_time"), ["time"], unique=False)

    with op.batch_alter_table("admin", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admin", schema=None) as batch_op:
        batch_op.drop_column("totp_secret")

    with op.batch_alter_table("auth_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_event_time"))
        batch_op.drop_index("ix_auth_event_tenant_id_time")
        batch_op.drop_index(batch_op.f("ix_auth_event_network"))
        batch_op.drop_index(batch_op.f("ix_auth_event_login"))
        batch_op.drop_index("ix_auth_event_domain_id_time")
        batch_op.drop_index(batch_op.f("ix_auth_event_client_ip"))
        batch_op.drop_index(batch_op.f("ix_auth_event_account"))

    op.drop_table("auth_event")
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entry_tenant_id_time")
        batch_op.drop_index("ix_audit_entry_domain_id_time")

    op.drop_table("audit_entry")
