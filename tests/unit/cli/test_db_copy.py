"""`letterhead db copy --to postgresql+psycopg://...`: every row arrives, checked by counts and
checksums, ids continue where they were, and a target that holds data is refused untouched."""

from __future__ import annotations

import datetime as dt
import os

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import cli
from controlplane.daemons import usage
from controlplane.daemons.postgres import PrivatePostgres
from controlplane.database_copy import table_checksum
from controlplane.models import AuthEvent, Base, Brand, Domain
from tests import postgres_databases
from tests.factories import make_alias, make_domain, make_mailbox, make_tenant
from tests.unit.daemons.test_usage import record, usage_database


@pytest.fixture
def target(postgres_cluster: PrivatePostgres):
    database = postgres_databases.create(postgres_cluster)
    yield postgres_cluster.url(database)
    postgres_databases.drop(postgres_cluster, database)


@pytest.fixture
def home(settings, installation):
    with installation.transaction() as session:
        tenant = make_tenant(session, name="One")
        domain = make_domain(session, tenant=tenant, name="a.test")
        for name in ("ann", "bob", "cy"):
            make_mailbox(session, domain=domain, local_part=name)
        make_alias(session, domain=domain, local_part="team", destinations=["ann@a.test", "bob@a.test"])
        make_domain(session, tenant=make_tenant(session, name="Two"), name="b.test")
        session.add(
            Brand(
                tenant=tenant,
                hostname="mail.a.test",
                name="A",
                logo=b"\x89PNG\x00\xff",
                logo_type="image/png",
            )
        )
        session.add(
            AuthEvent(
                time=dt.datetime(2026, 12, 1, 10, 30, tzinfo=dt.UTC), service="imap", login="ann@a.test",
                account="ann@a.test", client_ip="192.0.2.1", network="192.0.2.0/24", success=False,
            )
        )  # fmt: skip
    return settings.home


def run(home, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, ["db", *args], env={"LETTERHEAD_HOME": str(home)})
    return result.exit_code, result.stdout, result.stderr


def test_every_row_arrives_with_the_same_checksum_and_ids_continue(home, installation, target) -> None:
    # What Dovecot measured comes along, wherever this installation keeps it.
    usage_db = usage_database(installation.settings)
    record(usage_db, "ann@a.test", 4096)
    code, out, err = run(home, "copy", "--to", target)
    assert code == 0, err
    assert "Copied" in out and "mailbox: 3 rows" in out
    assert usage.usage_of(target, ["ann@a.test"])["ann@a.test"].bytes == 4096
    source = installation.engine
    copy = sa.create_engine(target, poolclass=sa.pool.NullPool)
    try:
        with source.connect() as here, copy.connect() as there:
            for table in Base.metadata.sorted_tables:
                assert table_checksum(here, table) == table_checksum(there, table), table.name
            # The counting triggers counted the copied mailboxes and aliases once.
            counts = there.execute(
                sa.select(Domain.mailbox_count, Domain.alias_count).where(Domain.name == "a.test")
            ).one()
            assert tuple(counts) == (3, 1)
        with copy.begin() as there:
            highest = there.execute(sa.text("SELECT max(id) FROM domain")).scalar()
            new_id = there.execute(
                sa.text(
                    "INSERT INTO domain (tenant_id, name, max_mailboxes, max_aliases, max_mailbox_bytes, active, "
                    "spam_reject_score, spam_junk_score, greylisting) "
                    "SELECT tenant_id, 'c.test', 5, 5, 9, true, NULL, NULL, false FROM domain LIMIT 1 RETURNING id"
                )
            ).scalar()
            assert new_id == highest + 1
    finally:
        copy.dispose()


def test_a_target_holding_data_is_refused_and_left_as_it_was(home, target) -> None:
    assert run(home, "copy", "--to", target)[0] == 0
    copy = sa.create_engine(target, poolclass=sa.pool.NullPool)
    with copy.connect() as there:
        before = there.execute(sa.text("SELECT count(*) FROM mailbox")).scalar()
    code, _out, err = run(home, "copy", "--to", target)
    assert code == 1 and "already holds data" in err
    with copy.connect() as there:
        assert there.execute(sa.text("SELECT count(*) FROM mailbox")).scalar() == before == 3
    copy.dispose()


@pytest.mark.parametrize("pid_file", ["dovecot/master.pid", "postfix"])
def test_a_running_stack_is_refused_before_anything_is_copied(home, settings, target, pid_file) -> None:
    # A live process's pid where the daemon writes its own: the stack counts as running.
    path = (
        settings.run_dir / pid_file
        if pid_file != "postfix"
        else settings.postfix_queue / "pid" / "master.pid"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    code, _out, err = run(home, "copy", "--to", target)
    assert code == 1 and "The stack is running" in err
    copy = sa.create_engine(target, poolclass=sa.pool.NullPool)
    with copy.connect() as there:
        assert not sa.inspect(there).get_table_names()
    copy.dispose()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://lh@db/lh", "database_url must be"),
        ("sqlite:////tmp/elsewhere.db", "must be a PostgreSQL database"),
        ("postgresql+psycopg://nobody:wrong@127.0.0.1:9/none", "Cannot prepare the target database"),
    ],
)
def test_what_it_cannot_do_is_said_in_words(home, url: str, words: str) -> None:
    code, _out, err = run(home, "copy", "--to", url)
    assert code == 1 and words in err, err
    assert "Traceback" not in err and "wrong" not in err
