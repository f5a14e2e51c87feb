"""Postfix's lookups on PostgreSQL through PL/pgSQL functions, whose query plans are kept.

Postfix's pgsql client sends each lookup as a plain query, so the server plans it again every
time: for the views under the maps that planning costs two to four times the lookup itself
(bench/delivery.py --database postgresql). A PL/pgSQL function plans its query once per
connection, and proxymap keeps its connections. SQLite needs nothing: its maps stay queries.

The functions run with the caller's rights (SECURITY INVOKER), so Postfix's role still reads
only what daemons/database_logins.py grants it; only that role may call them.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 21:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# name -> (parameters, query over them): one per Postfix map that runs for every message.
FUNCTIONS = {
    "postfix_domain": ("domain_name text", "SELECT domain::text FROM mail_domains WHERE domain = domain_name"),
    "postfix_mailbox": (
        "local_name text, domain_name text",
        "SELECT 'mailbox'::text FROM mail_users WHERE local_part = local_name AND domain = domain_name",
    ),
    "postfix_forwardings": (
        "local_name text, domain_name text",
        "SELECT destination::text FROM mail_forwardings WHERE local_part = local_name AND domain = domain_name",
    ),
    "postfix_role_addresses": (
        "local_name text, domain_name text",
        "SELECT destination::text FROM mail_role_addresses WHERE local_part = local_name AND domain = domain_name",
    ),
    # Postfix asks a catch-all map for "user@domain", "user" and "@domain": only the last matches.
    "postfix_catchall": (
        "lookup_key text",
        "SELECT destination::text FROM mail_aliases "
        "WHERE local_part = '' AND domain = substr(lookup_key, 2) AND substr(lookup_key, 1, 1) = '@'",
    ),
    "postfix_sender_logins": (
        "local_name text, domain_name text",
        "SELECT login::text FROM mail_sender_logins WHERE local_part = local_name AND domain = domain_name",
    ),
}


def _signature(name: str, parameters: str) -> str:
    types = ", ".join(parameter.split()[-1] for parameter in parameters.split(", "))
    return f"{name}({types})"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (parameters, query) in FUNCTIONS.items():
        op.execute(
            f"CREATE OR REPLACE FUNCTION {name}({parameters}) RETURNS SETOF text "
            f"LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN QUERY {query}; END $$"
        )
        op.execute(f"REVOKE ALL ON FUNCTION {_signature(name, parameters)} FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (parameters, _query) in FUNCTIONS.items():
        op.execute(f"DROP FUNCTION IF EXISTS {_signature(name, parameters)}")
