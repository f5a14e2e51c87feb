"""Domain counts kept by the database: mailboxes, aliases and storage given per domain.

The admin panel shows these on every page; counting a domain's rows costs time in
proportion to its size (tens of milliseconds at 100,000 mailboxes). Triggers keep three
columns of `domain` up to date in the same statement as each insert, delete or change of
a mailbox or alias, whoever writes it (services, bulk imports, cascades), so reading them
costs one row. CHECK constraints make a counting mistake fail loudly instead of going
negative. Existing rows are counted once here.

SQLite runs the row-level trigger bodies below; PostgreSQL runs statement-level PL/pgSQL triggers
over each statement's transition tables, to the same effect.

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


# PostgreSQL: statement-level triggers over the statement's transition tables, one UPDATE per
# domain touched, in the same transaction. (Row-level triggers updating the domain's row once per
# mailbox made a bulk insert quadratic: each update walks the row's growing chain of versions;
# 40,000 mailboxes in one transaction took 27 s.)
def _pg_mailbox_delta(rows: str, sign: str) -> str:
    return f"""UPDATE domain d SET mailbox_count = d.mailbox_count {sign} c.mailboxes,
                      allocated_bytes = d.allocated_bytes {sign} c.bytes
               FROM (SELECT domain_id, count(*) AS mailboxes, sum(quota_bytes) AS bytes
                     FROM {rows} AS r GROUP BY domain_id) c
               WHERE d.id = c.domain_id;"""


def _pg_alias_delta(rows: str, sign: str) -> str:
    return f"""UPDATE domain d SET alias_count = d.alias_count {sign} c.aliases
               FROM (SELECT domain_id, count(*) AS aliases FROM {rows} AS r GROUP BY domain_id) c
               WHERE d.id = c.domain_id;"""


# Rows whose counted columns changed, as they were and as they are.
_PG_MOVED_MAILBOXES = """(SELECT o.domain_id AS old_domain, o.quota_bytes AS old_bytes,
                                 n.domain_id AS new_domain, n.quota_bytes AS new_bytes
                          FROM old_rows o JOIN new_rows n ON n.id = o.id
                          WHERE (o.domain_id, o.quota_bytes) IS DISTINCT FROM (n.domain_id, n.quota_bytes))"""
_PG_MOVED_ALIASES = """(SELECT o.domain_id AS old_domain, n.domain_id AS new_domain
                        FROM old_rows o JOIN new_rows n ON n.id = o.id
                        WHERE o.domain_id IS DISTINCT FROM n.domain_id)"""

# name -> (event and table, transition tables, body)
PG_TRIGGERS = {
    "domain_counts_mailbox_insert": (
        "AFTER INSERT ON mailbox", "NEW TABLE AS new_rows", _pg_mailbox_delta("new_rows", "+")
    ),
    "domain_counts_mailbox_delete": (
        "AFTER DELETE ON mailbox", "OLD TABLE AS old_rows", _pg_mailbox_delta("old_rows", "-")
    ),
    "domain_counts_mailbox_update": (
        "AFTER UPDATE ON mailbox",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        # Out of the old domain, then into the new one (the CHECKs see each step whole).
        _pg_mailbox_delta(
            f"(SELECT old_domain AS domain_id, old_bytes AS quota_bytes FROM {_PG_MOVED_MAILBOXES} m)", "-"
        )
        + _pg_mailbox_delta(
            f"(SELECT new_domain AS domain_id, new_bytes AS quota_bytes FROM {_PG_MOVED_MAILBOXES} m)", "+"
        ),
    ),
    "domain_counts_alias_insert": ("AFTER INSERT ON alias", "NEW TABLE AS new_rows", _pg_alias_delta("new_rows", "+")),
    "domain_counts_alias_delete": ("AFTER DELETE ON alias", "OLD TABLE AS old_rows", _pg_alias_delta("old_rows", "-")),
    "domain_counts_alias_update": (
        "AFTER UPDATE ON alias",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        _pg_alias_delta(f"(SELECT old_domain AS domain_id FROM {_PG_MOVED_ALIASES} m)", "-")
        + _pg_alias_delta(f"(SELECT new_domain AS domain_id FROM {_PG_MOVED_ALIASES} m)", "+"),
    ),
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
        for name, (event, transitions, body) in PG_TRIGGERS.items():
            op.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {name} {event} REFERENCING {transitions} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
        return
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, (event, _transitions, _body) in PG_TRIGGERS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {event.split()[-1]}")
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
