"""Each daemon's PostgreSQL role reads what it needs and is refused everything else, as an
attacker holding that daemon's password would try (on both test passes: a SQLite run starts a
cluster of its own for these)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import ProgrammingError

from controlplane.daemons import database_logins
from controlplane.daemons.postgres import PrivatePostgres
from controlplane.schema import upgrade_database
from controlplane.settings import load_settings
from tests import postgres_databases
from tests.factories import insert_raw_rows


@pytest.fixture
def granted(postgres_cluster: PrivatePostgres, tmp_path) -> Iterator[object]:
    database = postgres_databases.create(postgres_cluster)
    url = postgres_cluster.url(database)
    upgrade_database(url)
    database_logins.grant_daemon_logins(url)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        insert_raw_rows(connection, mailboxes=(("ann", "{SHA512-CRYPT}$6$hash", 3),), aliases=("",))
        # The catch-all: every other address of a.test to ann.
        connection.exec_driver_sql(
            "INSERT INTO alias_destination (alias_id, address) VALUES (1, 'ann@a.test')"
        )
    engine.dispose()
    yield load_settings(environ={}, home=tmp_path, database_url=url)
    postgres_databases.drop(postgres_cluster, database)


def _as(settings, daemon: str, statement: str) -> list[tuple]:
    engine = sa.create_engine(database_logins.login_url(settings, daemon), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            result = connection.exec_driver_sql(statement)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def _refused(settings, daemon: str, statement: str) -> bool:
    try:
        _as(settings, daemon, statement)
    except ProgrammingError as error:
        return "permission denied" in str(error)
    return False


SECRETS = (
    "SELECT * FROM mailbox",
    "SELECT * FROM admin",
    "SELECT * FROM api_token",
    "SELECT * FROM daemon_login",
    "SELECT * FROM dkim_key",
    "SELECT * FROM tenant",
)


def test_postfix_reads_addresses_and_never_a_password_hash(granted) -> None:
    assert _as(granted, "postfix", "SELECT local_part, domain FROM mail_users") == [("ann", "a.test")]
    assert _as(granted, "postfix", "SELECT domain FROM mail_domains") == [("a.test",)]
    assert _refused(granted, "postfix", "SELECT password FROM mail_users")
    assert _refused(granted, "postfix", "SELECT * FROM mail_users")
    for statement in (*SECRETS, "SELECT * FROM mailbox_usage", "SELECT * FROM mail_sender_lists"):
        assert _refused(granted, "postfix", statement), statement
    assert _refused(granted, "postfix", "DELETE FROM mailbox")


def test_postfix_looks_up_through_its_functions_with_its_own_rights(granted) -> None:
    lookups = {
        "SELECT * FROM postfix_domain('a.test')": [("a.test",)],
        "SELECT * FROM postfix_mailbox('ann', 'a.test')": [("mailbox",)],
        "SELECT * FROM postfix_mailbox('bob', 'a.test')": [],
        "SELECT * FROM postfix_forwardings('ann', 'a.test')": [("ann@a.test",)],
        "SELECT * FROM postfix_sender_logins('ann', 'a.test')": [("ann@a.test",)],
        "SELECT * FROM postfix_catchall('ann@a.test')": [],  # only "@domain" keys
        "SELECT * FROM postfix_catchall('@a.test')": [("ann@a.test",)],
        "SELECT * FROM postfix_catchall('@b.test')": [],
    }
    for statement, rows in lookups.items():
        assert _as(granted, "postfix", statement) == rows, statement
    # Whether a mailbox is full, and nothing more: no size, quota or usage reaches Postfix.
    full = "SELECT * FROM postfix_full_mailbox('ann', 'a.test')"
    assert _as(granted, "postfix", full) == []
    # A row an earlier mailbox at this address left behind is not this one's usage.
    _as(
        granted,
        "dovecot_usage",
        "INSERT INTO mailbox_usage (address, bytes, measured_at_ms) VALUES ('ann@a.test', 3, 0)",
    )
    assert _as(granted, "postfix", full) == []
    _as(
        granted, "dovecot_usage", "UPDATE mailbox_usage SET bytes = 4 WHERE address = 'ann@a.test'"
    )  # measured now
    assert _as(granted, "postfix", full) == [("552 5.2.2 Mailbox is full",)]
    assert _refused(granted, "postfix", "SELECT * FROM mailbox_usage")
    # Only Postfix's role may call them.
    assert _refused(granted, "dovecot", "SELECT * FROM postfix_mailbox('ann', 'a.test')")
    assert _refused(granted, "dovecot_usage", "SELECT * FROM postfix_domain('a.test')")
    assert _refused(granted, "dovecot", "SELECT * FROM postfix_full_mailbox('ann', 'a.test')")


def test_dovecot_reads_hashes_and_writes_nothing(granted) -> None:
    assert _as(granted, "dovecot", "SELECT password FROM mail_users") == [("{SHA512-CRYPT}$6$hash",)]
    for statement in SECRETS:
        assert _refused(granted, "dovecot", statement), statement
    assert _refused(granted, "dovecot", "INSERT INTO mailbox_usage (address) VALUES ('ann@a.test')")
    assert _refused(granted, "dovecot", "UPDATE mailbox SET quota_bytes = 999")
    assert _refused(granted, "dovecot", "CREATE TABLE stolen (x int)")


def test_the_usage_writer_keeps_its_table_and_reads_nothing_else(granted) -> None:
    upsert = (
        "INSERT INTO mailbox_usage (address, bytes) VALUES ('ann@a.test', 42) "
        "ON CONFLICT (address) DO UPDATE SET bytes = excluded.bytes"
    )
    _as(granted, "dovecot_usage", upsert)
    _as(granted, "dovecot_usage", upsert.replace("42", "43"))
    assert _as(granted, "dovecot_usage", "SELECT domain, bytes FROM mailbox_usage") == [("a.test", 43)]
    for statement in (*SECRETS, "SELECT * FROM mail_users", "SELECT * FROM mail_domains"):
        assert _refused(granted, "dovecot_usage", statement), statement


def test_granting_again_keeps_the_logins(granted) -> None:
    before = database_logins.daemon_database(granted)
    database_logins.grant_daemon_logins(granted.sqlalchemy_url)
    after = database_logins.daemon_database(granted)
    assert before == after and set(after.logins) == {"postfix", "dovecot", "dovecot_usage"}
    assert _as(granted, "postfix", "SELECT count(*) FROM mail_domains") == [(1,)]
