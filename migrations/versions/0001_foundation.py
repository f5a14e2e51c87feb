"""Foundation: tenants, domains, mailboxes, aliases, admins, config generations.

Also the views that Postfix and Dovecot query. Their columns are a contract with the
rendered map files: a daemon whose prepared query names a missing column dies, so
views keep their columns stable while the tables beneath may change.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 11:05:28.065291
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Lookups filter on (local_part, domain) separately so SQLite uses the unique indexes
# through the views instead of scanning concatenated addresses.
DAEMON_VIEWS = {
    "mail_domains": """
        SELECT d.name AS domain
        FROM domain d JOIN tenant t ON t.id = d.tenant_id
        WHERE d.active AND t.active""",
    "mail_users": """
        SELECT m.local_part AS local_part, d.name AS domain, m.password_hash AS password,
               m.quota_bytes AS quota_bytes, m.storage_key AS storage_key
        FROM mailbox m
        JOIN domain d ON d.id = m.domain_id
        JOIN tenant t ON t.id = d.tenant_id
        WHERE m.active AND d.active AND t.active""",
    "mail_aliases": """
        SELECT a.local_part AS local_part, d.name AS domain, ad.address AS destination
        FROM alias a
        JOIN domain d ON d.id = a.domain_id
        JOIN tenant t ON t.id = d.tenant_id
        JOIN alias_destination ad ON ad.alias_id = a.id
        WHERE a.active AND d.active AND t.active""",
    # Every address that receives mail, mapped to where it goes: aliases to their
    # destinations and mailboxes to themselves, so a domain's catch-all (looked up last,
    # as "@domain") never swallows mail for an existing mailbox.
    "mail_forwardings": """
        SELECT local_part, domain, destination FROM mail_aliases WHERE local_part <> ''
        UNION ALL
        SELECT local_part, domain, local_part || '@' || domain AS destination FROM mail_users""",
    "mail_sender_logins": """
        SELECT local_part, domain, local_part || '@' || domain AS login FROM mail_users
        UNION ALL
        SELECT local_part, domain, destination AS login FROM mail_aliases WHERE local_part <> ''""",
}


def upgrade() -> None:
    op.create_table(
        "config_generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_generation")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "tenant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("storage_pool_bytes", sa.BigInteger(), nullable=False),
        sa.Column("max_mailbox_bytes", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint("max_mailbox_bytes > 0", name=op.f("ck_tenant_max_mailbox_positive")),
        sa.CheckConstraint("storage_pool_bytes >= 0", name=op.f("ck_tenant_pool_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
        sa.UniqueConstraint("name", name=op.f("uq_tenant_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "admin",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_admin_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin")),
        sa.UniqueConstraint("login", name=op.f("uq_admin_login")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("admin", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "domain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("max_mailboxes", sa.Integer(), nullable=False),
        sa.Column("max_aliases", sa.Integer(), nullable=False),
        sa.Column("max_mailbox_bytes", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint("max_aliases >= 0", name=op.f("ck_domain_max_aliases_not_negative")),
        sa.CheckConstraint("max_mailbox_bytes > 0", name=op.f("ck_domain_max_mailbox_positive")),
        sa.CheckConstraint("max_mailboxes >= 0", name=op.f("ck_domain_max_mailboxes_not_negative")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_domain_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain")),
        sa.UniqueConstraint("name", name=op.f("uq_domain_name")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domain_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "alias",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("local_part", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_alias_domain_id_domain"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias")),
        sa.UniqueConstraint("domain_id", "local_part", name=op.f("uq_alias_domain_id_local_part")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("alias", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alias_domain_id"), ["domain_id"], unique=False)

    op.create_table(
        "mailbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("local_part", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("is_domain_admin", sa.Boolean(), nullable=False),
        sa.Column("storage_key", sa.String(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.CheckConstraint("quota_bytes > 0", name=op.f("ck_mailbox_quota_positive")),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domain.id"], name=op.f("fk_mailbox_domain_id_domain"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox")),
        sa.UniqueConstraint("domain_id", "local_part", name=op.f("uq_mailbox_domain_id_local_part")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_mailbox_storage_key")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("mailbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mailbox_domain_id"), ["domain_id"], unique=False)

    op.create_table(
        "alias_destination",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alias_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(
            ["alias_id"], ["alias.id"], name=op.f("fk_alias_destination_alias_id_alias"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_destination")),
        sa.UniqueConstraint("alias_id", "address", name=op.f("uq_alias_destination_alias_id_address")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("alias_destination", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alias_destination_alias_id"), ["alias_id"], unique=False)

    for name, body in DAEMON_VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in reversed(list(DAEMON_VIEWS)):
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("alias_destination", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alias_destination_alias_id"))

    op.drop_table("alias_destination")
    with op.batch_alter_table("mailbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mailbox_domain_id"))

    op.drop_table("mailbox")
    with op.batch_alter_table("alias", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alias_domain_id"))

    op.drop_table("alias")
    with op.batch_alter_table("domain", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_domain_tenant_id"))

    op.drop_table("domain")
    with op.batch_alter_table("admin", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_tenant_id"))

    op.drop_table("admin")
    op.drop_table("tenant")
    op.drop_table("config_generation")
