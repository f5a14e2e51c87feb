"""This Letterhead started over the state directory the previous release left (tests/fixtures,
made by make_release_state.py from the release's own code): the database is migrated, the
configuration rendered again, checked and switched, and every message and login still there."""

from __future__ import annotations

import imaplib
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool, select

from controlplane.models import ConfigGeneration, DkimKey
from controlplane.runners.scratch import ScratchStack
from controlplane.schema import alembic_config
from tests.e2e.mailclient import imap_subjects, send, wait_for_subject

pytestmark = [pytest.mark.e2e, pytest.mark.sqlite_state]

KB = 1024
PREVIOUS_RELEASE = Path(__file__).resolve().parent.parent / "fixtures" / "state-0.1.0.tar.gz"
PASSWORD = "previous release password"  # as make_release_state.py made the mailboxes


def _revision(database: Path) -> str:
    engine = create_engine(f"sqlite:///{database}", poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() or ""
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def upgraded() -> Iterator[tuple[ScratchStack, str]]:
    # The release's state is an SQLite installation's: so is this stack, on either test pass.
    scratch = ScratchStack(min_mailbox_bytes=KB, postgres_server="")
    try:
        with tarfile.open(PREVIOUS_RELEASE) as archive:
            archive.extractall(scratch.home, filter="tar")
        released_revision = _revision(scratch.settings.database_path)
        scratch.start()
        yield scratch, released_revision
    finally:
        scratch.stop()


def test_the_database_is_migrated_and_the_configuration_rendered_checked_and_switched(upgraded) -> None:
    scratch, released_revision = upgraded
    head = ScriptDirectory.from_config(alembic_config(scratch.settings.sqlalchemy_url)).get_current_head()
    assert released_revision and _revision(scratch.settings.database_path) == head
    with scratch.installation.sessions() as session:
        newest = session.scalars(select(ConfigGeneration).order_by(ConfigGeneration.id.desc())).first()
        assert newest is not None and newest.status == "live" and newest.id > 1
        # The release's DKIM key is kept, not replaced: the domain's DNS record still matches it.
        assert [key.domain.name for key in session.scalars(select(DkimKey))] == ["old.test"]
    assert (scratch.settings.config_root / "generations" / "000001").is_dir()  # the release's, kept
    assert scratch.settings.live_config.resolve().name != "000001"


def test_mail_and_logins_from_the_previous_release_are_all_there(upgraded) -> None:
    scratch, _revision_before = upgraded
    ann = imap_subjects(scratch, "ann@old.test", PASSWORD)
    assert sorted(ann) == ["before the upgrade 1", "before the upgrade 2", "before the upgrade to the team"]
    assert imap_subjects(scratch, "ben@old.test", PASSWORD) == ["before the upgrade to the team"]
    client = imaplib.IMAP4("127.0.0.1", scratch.ports["imap"], timeout=20)
    client.login("ann@old.test", PASSWORD)
    assert client.select("Kept", readonly=True)[1] == [b"1"]
    client.select("INBOX", readonly=True)
    assert b"\\Seen" in client.fetch("1", "(FLAGS)")[1][0]
    client.logout()


def test_mail_flows_after_the_upgrade_through_the_releases_alias(upgraded) -> None:
    scratch, _revision_before = upgraded
    subject = send(scratch, "someone@elsewhere.test", ["team@old.test"], subject="after the upgrade")
    for user in ("ann", "ben"):
        assert wait_for_subject(scratch, f"{user}@old.test", PASSWORD, subject, timeout=30)
        assert imap_subjects(scratch, f"{user}@old.test", PASSWORD).count(subject) == 1
