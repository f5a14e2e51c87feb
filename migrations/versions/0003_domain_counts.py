"""Domain counts kept by the database: mailboxes, aliases and storage given per domain.

The admin panel shows these on every page; counting a domain's rows costs time in
proportion to its size (tens of milliseconds at 100,000 mailboxes). Triggers keep three
columns of `domain` up to date in the same statement as each insert, delete or change of
a mailbox or alias, whoever writes it (services, bulk imports, cascades), so reading them
costs one row. CHECK constraints make a counting mistake fail loudly instead of going
negative. Existing rows are counted once here.

SQLite runs the trigger bodies below as they are; PostgreSQL runs the same statements from
PL/pgSQL trigger functions, one per table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

from alembic import op

from controlplane.schema import sqlite_views_and_triggers_set_aside

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = {
    "mailbox_count": "INTEGER",
    "alias_count": "INTEGER",
    "allocated_bytes": "BIGINT",
}

_MAILBOX_IN = """UPDATE domain SET mailbox_count = mailbox_count + 1,
                     allocated_bytes = allocated_bytes + NEW.quota_bytes WHERE id = NEW.domain_id;"""
_MAILBOX_OUT = """UPDATE domain SET mailbox_count = mailbox_count - 1,
                     allocated_bytes = allocated_bytes - OLD.quota_bytes WHERE id = OLD.domain_id;"""
_ALIAS_IN = "UPDATE domain SET alias_count = alias_count + 1 WHERE id = NEW.domain_id;"
_ALIAS_OUT = "UPDATE domain SET alias_count = alias_count - 1 WHERE id = OLD.domain_id;"

TRIGGERS = {
    "domain_counts_mailbox_insert": f"AFTER INSERT ON mailbox BEGIN {_MAILBOX_IN} END",
    "domain_counts_mailbox_delete": f"AFTER DELETE ON mailbox BEGIN {_MAILBOX_OUT} END",
    # A changed quota, or a mailbox moved to another domain: out of the old, into the new.
    "domain_counts_mailbox_update": (
        f"AFTER UPDATE OF domain_id, quota_bytes ON mailbox BEGIN {_MAILBOX_OUT} {_MAILBOX_IN} END"
    ),
    "domain_counts_alias_insert": f"AFTER INSERT ON alias BEGIN {_ALIAS_IN} END",
    "domain_counts_alias_delete": f"AFTER DELETE ON alias BEGIN {_ALIAS_OUT} END",
    "domain_counts_alias_update": f"AFTER UPDATE OF domain_id ON alias BEGIN {_ALIAS_OUT} {_ALIAS_IN} END",
}


# PostgreSQL: one function per table, run after each row's change, in the same transaction.
PG_FUNCTIONS = {
    "domain_counts_mailbox": f"""
        BEGIN
          IF TG_OP IN ('DELETE', 'UPDATE') THEN {_MAILBOX_OUT} END IF;
          IF TG_OP IN ('INSERT', 'UPDATE') THEN {_MAILBOX_IN} END IF;
          RETURN NULL;
        END""",
    "domain_counts_alias": f"""
        BEGIN
          IF TG_OP IN ('DELETE', 'UPDATE') THEN {_ALIAS_OUT} END IF;
          IF TG_OP IN ('INSERT', 'UPDATE') THEN {_ALIAS_IN} END IF;
          RETURN NULL;
        END""",
}
PG_TRIGGERS = {
    "domain_counts_mailbox": "AFTER INSERT OR DELETE OR UPDATE OF domain_id, quota_bytes ON mailbox",
    "domain_counts_alias": "AFTER INSERT OR DELETE OR UPDATE OF domain_id ON alias",
}


def upgrade() -> None:
    for column, sql_type in COLUMNS.items():
        # A plain ADD COLUMN: rebuilding `domain` (batch mode) would drop and recreate the
        # table that mailboxes, aliases and the daemons' views refer to.
        op.execute(
            f"ALTER TABLE domain ADD COLUMN {column} {sql_type} NOT NULL DEFAULT 0 "
            f"CONSTRAINT ck_domain_{column}_not_negative CHECK ({column} >= 0)"
        )
    op.execute(
        """UPDATE domain SET
             mailbox_count = (SELECT count(*) FROM mailbox WHERE mailbox.domain_id = domain.id),
             allocated_bytes = (SELECT coalesce(sum(quota_bytes), 0) FROM mailbox
                                WHERE mailbox.domain_id = domain.id),
             alias_count = (SELECT count(*) FROM alias WHERE alias.domain_id = domain.id)"""
    )
    if op.get_bind().dialect.name == "postgresql":
        for name, body in PG_FUNCTIONS.items():
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$")
            op.execute(f"CREATE TRIGGER {name} {PG_TRIGGERS[name]} FOR EACH ROW EXECUTE FUNCTION {name}()")
        return
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, table in (("domain_counts_mailbox", "mailbox"), ("domain_counts_alias", "alias")):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
        for column in COLUMNS:
            op.drop_column("domain", column)
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    # A later rebuild of `domain` (0006) turned the columns' CHECKs into table constraints,
    # which ALTER TABLE DROP COLUMN refuses: rebuild the table without them.
    with sqlite_views_and_triggers_set_aside(op), op.batch_alter_table("domain") as batch_op:
        for column in COLUMNS:
            batch_op.drop_constraint(op.f(f"ck_domain_{column}_not_negative"), type_="check")
            batch_op.drop_column(column)
