"""A long writer holding the database (an operator's script, a stuck migration): a change waits
`database_busy_seconds`, then is refused in words having changed nothing; mail keeps flowing, as
the daemons only read; once the writer is done, changes go through again."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, pool, text

from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.commands import letterhead
from tests.e2e.mailclient import send, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "locked database password"
BUSY_SECONDS = 2


@pytest.fixture(scope="module")
def locked_stack() -> Iterator[ScratchStack]:
    scratch = ScratchStack(min_mailbox_bytes=KB, extra_settings=f"database_busy_seconds = {BUSY_SECONDS}")
    try:
        scratch.start()
        with scratch.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Locked", storage_pool_bytes=10_000 * KB)
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name="locked.test", max_mailboxes=10, max_aliases=10,
                max_mailbox_bytes=1000 * KB,
            )  # fmt: skip
            mailboxes.create_mailbox(
                session, OPERATOR, domain=domain, local_part="ann", password=PASSWORD, quota_bytes=1000 * KB
            )
        yield scratch
    finally:
        scratch.stop()


def _create_mailbox(scratch: ScratchStack, address: str) -> subprocess.CompletedProcess[str]:
    return letterhead(
        scratch.home, "mailbox", "create", address, "--quota", "100K", "--password", "a long enough password"
    )


def _mailboxes(scratch: ScratchStack) -> int:
    with scratch.installation.sessions() as session:
        return session.execute(text("SELECT count(*) FROM mailbox")).scalar_one()


def test_a_long_writer_makes_changes_wait_then_refuse_while_mail_flows(locked_stack: ScratchStack) -> None:
    scratch = locked_stack
    before = _mailboxes(scratch)
    engine = create_engine(scratch.settings.sqlalchemy_url, poolclass=pool.NullPool)
    writer = engine.connect()
    try:
        if scratch.settings.is_postgresql:
            # A row lock on the domain every mailbox change takes its limits from.
            writer.execute(text("UPDATE domain SET max_mailboxes = max_mailboxes WHERE name = 'locked.test'"))
        else:
            writer.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite: one writer at a time, this one
            writer.execute(text("UPDATE domain SET max_mailboxes = max_mailboxes WHERE name = 'locked.test'"))

        started = time.monotonic()
        refused = _create_mailbox(scratch, "bob@locked.test")
        waited = time.monotonic() - started
        assert refused.returncode == 1, refused.stdout
        assert "The database is busy with a long write: nothing was changed" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert waited >= BUSY_SECONDS  # it waited for the writer before giving up

        # The daemons only read: mail is accepted and delivered meanwhile.
        subject = send(
            scratch, "sender@elsewhere.test", ["ann@locked.test"], subject="while the database is locked"
        )
        assert wait_for_subject(scratch, "ann@locked.test", PASSWORD, subject, timeout=30)
    finally:
        writer.rollback()
        writer.close()
        engine.dispose()

    assert _mailboxes(scratch) == before
    created = _create_mailbox(scratch, "bob@locked.test")
    assert created.returncode == 0, created.stderr
    assert _mailboxes(scratch) == before + 1
