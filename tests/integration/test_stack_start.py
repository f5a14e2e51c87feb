"""Starting the stack says so when a daemon could not take its ports, instead of returning as
if it ran (Postfix's master writes its PID before it binds, then dies)."""

from __future__ import annotations

import socket
import subprocess

import pytest
from alembic import command
from sqlalchemy import text

from controlplane.daemons import postfix, postfix_log, postsrsd
from controlplane.daemons.process import DaemonError, listening_ports
from controlplane.logs import search_indexes
from controlplane.runners import health, stack
from controlplane.runners.scratch import ScratchStack
from controlplane.schema import alembic_config
from tests.commands import letterhead
from tests.factories import make_domain, make_mailbox, make_tenant

pytestmark = pytest.mark.integration
MB = 1024 * 1024
PASSWORD = "upgraded in place 1"


def test_a_postfix_port_taken_by_another_program_fails_the_start_with_postfix_words() -> None:
    scratch = ScratchStack()
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", scratch.ports["submissions"]))
        squatter.listen()
        with pytest.raises(DaemonError) as failure:
            scratch.start()
        assert "Postfix did not start" in str(failure.value)
        assert "Address already in use" in str(failure.value)
        # Nothing left running that `up` said had failed.
        assert postfix.master_pid(scratch.settings.postfix_queue) is None
        assert postfix_log.WRITER.pid(scratch.settings) is None
    finally:
        squatter.close()
        scratch.stop()


def test_a_started_postfix_master_holds_every_postfix_port() -> None:
    scratch = ScratchStack()
    try:
        scratch.start()
        master = int((scratch.settings.postfix_queue / "pid" / "master.pid").read_text().split()[0])
        held = listening_ports(master)
        assert {scratch.ports[name] for name in postfix_log.POSTFIX_PORT_NAMES} <= held
        # Dovecot's ports are Dovecot's, not Postfix's.
        assert scratch.ports["imap"] not in held
    finally:
        scratch.stop()


def _srs_forward(port: int, address: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(f"get {address}\n".encode())
        return client.recv(512).decode()


def test_postsrsd_follows_a_new_hostname_and_stays_when_nothing_changed() -> None:
    """Its SRS addresses must name the host Postfix answers for: a running postsrsd started with
    another hostname would make addresses whose bounces nobody takes."""
    scratch = ScratchStack()
    settings = scratch.settings
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        postsrsd.start(settings, "old.letterhead.test")
        first = postsrsd.pid(settings)
        assert "@old.letterhead.test" in _srs_forward(settings.ports["srs_forward"], "ann@elsewhere.test")
        postsrsd.start(settings, "old.letterhead.test")
        assert postsrsd.pid(settings) == first
        postsrsd.start(settings, "new.letterhead.test")
        assert postsrsd.pid(settings) not in (None, first)
        assert "@new.letterhead.test" in _srs_forward(settings.ports["srs_forward"], "ann@elsewhere.test")
    finally:
        postsrsd.stop(settings)
        scratch.stop()


def _missing_index_names(scratch: ScratchStack) -> set[str]:
    with scratch.installation.sessions() as session:
        return {index.name or "" for index in search_indexes.missing_indexes(session)}


def _drop_search_index(scratch: ScratchStack, name: str) -> int:
    """Drop `name` as an import killed midway leaves it; the schema's version after."""
    with scratch.installation.transaction() as session:
        session.execute(text(f"DROP INDEX {name}"))
    with scratch.installation.sessions() as session:
        return session.execute(text("PRAGMA schema_version")).scalar_one()


def test_the_start_builds_missing_search_indexes_before_dovecot_and_nothing_changes_the_schema_while_it_runs() -> (
    None
):
    """Dovecot's SQLite driver fails the next query of each connection after a schema change
    (a login refused, mail deferred 450): only a stopped stack's start builds what a killed log
    import left missing."""
    scratch = ScratchStack(postgres_server="")
    try:
        scratch.prepare()
        assert not scratch.installation.mail_daemons_reading()
        _drop_search_index(scratch, "ix_mail_transaction_sender")
        scratch.start()
        assert scratch.installation.mail_daemons_reading()
        assert _missing_index_names(scratch) == set()

        version = _drop_search_index(scratch, "ix_mail_transaction_sender")
        scratch.start()  # `letterhead up` again, on the running stack
        with scratch.installation.sessions() as session:
            assert (
                search_indexes.build_missing(
                    session, daemons_reading=scratch.installation.mail_daemons_reading
                )
                == 0
            )
            with search_indexes.deferred(
                session, 10**12, daemons_reading=scratch.installation.mail_daemons_reading
            ):
                pass
            assert session.execute(text("PRAGMA schema_version")).scalar_one() == version
        assert _missing_index_names(scratch) == {"ix_mail_transaction_sender"}
        # The operator is told, and how they get built.
        status = letterhead(scratch.home, "status")
        assert "A search index of the mail logs is missing" in status.stdout, status.stdout
        assert search_indexes.BUILT_LATER in status.stdout

        stack.down(scratch.settings)
        assert not scratch.installation.mail_daemons_reading()
        scratch.start()
        assert _missing_index_names(scratch) == set()
        assert health.check(scratch.installation).missing_search_indexes == 0
    finally:
        scratch.stop()


def test_a_migration_on_a_running_stack_refuses_no_login() -> None:
    """`letterhead db upgrade` while Dovecot runs (an upgrade in place): Dovecot's SQLite driver
    would fail its next query after the schema change; it reloads at once instead."""
    scratch = ScratchStack(postgres_server="")
    try:
        scratch.start()
        with scratch.installation.transaction() as session:
            domain = make_domain(
                session, tenant=make_tenant(session, pool=10 * MB), name="upgrade.test", max_mailbox_bytes=MB
            )
            make_mailbox(session, domain=domain, local_part="ann", quota=MB, password=PASSWORD)
        config = scratch.settings.live_config / "dovecot" / "dovecot.conf"

        def logs_in() -> bool:
            result = subprocess.run(
                ["doveadm", "-c", str(config), "auth", "login", "ann@upgrade.test", PASSWORD],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            return result.returncode == 0

        # The schema one migration back; the first login after that change fails, as any would.
        command.downgrade(alembic_config(scratch.settings.sqlalchemy_url), "-1")
        logs_in()
        assert logs_in()

        upgraded = letterhead(scratch.home, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert logs_in(), "the first login after the migration was refused"
        assert logs_in()
    finally:
        scratch.stop()
