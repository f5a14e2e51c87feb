"""A stopped installation's backup (mail copied as files), and each backup `restore` must refuse:
damaged, from a newer release, of the other engine, or onto an installation that holds one.
Each refusal says why and leaves the target as it was."""

from __future__ import annotations

import json
import os
import pwd
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, pool, select

from controlplane import backup as backups
from controlplane.models import Mailbox, Tenant
from controlplane.runtime import Installation
from controlplane.services import domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from controlplane.settings import Settings, load_settings

KB = 1024


@pytest.fixture
def backed_up(installation: Installation, tmp_path: Path) -> tuple[Path, str]:
    settings = installation.settings
    with installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Kept", storage_pool_bytes=1000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="kept.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=100 * KB,
        )  # fmt: skip
        key = mailboxes.create_mailbox(
            session,
            OPERATOR,
            domain=domain,
            local_part="ann",
            password="a long password",
            quota_bytes=100 * KB,
        ).storage_key
    new = settings.mail_root / key / "Maildir" / "new"
    new.mkdir(parents=True)
    (new / "1700000000.M1P1.host").write_text("Subject: kept\n\nhello\n")
    lines: list[str] = []
    summary = backups.back_up(settings, tmp_path / "backup", progress=lines.append)
    assert (summary.mailboxes, summary.messages) == (1, 1)
    assert "mail: 1 of 1 mailboxes" in lines
    return tmp_path / "backup", key


@pytest.fixture
def fresh(tmp_path: Path, empty_database: str, settings: Settings) -> Settings:
    """A new machine's installation: the run's engine, an empty database, no mail."""
    return load_settings(
        environ={}, home=tmp_path / "new", database_url=empty_database if settings.is_postgresql else ""
    )


def _nothing_restored(target: Settings) -> bool:
    if target.is_postgresql:
        engine = create_engine(target.sqlalchemy_url, poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                return inspect(connection).get_table_names() == []
        finally:
            engine.dispose()
    return not target.database_path.exists()


def _edit_manifest(backup: Path, change) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    change(manifest)
    (backup / "manifest.json").write_text(json.dumps(manifest))


def test_a_backup_restores_into_a_new_installation(backed_up, fresh: Settings) -> None:
    backup, key = backed_up
    summary = backups.restore(fresh, backup)
    assert (summary.mailboxes, summary.messages) == (1, 1)
    restored = Installation(fresh)
    try:
        with restored.sessions() as session:
            assert session.scalar(select(Tenant.name)) == "Kept"
            assert session.scalar(select(func.count()).select_from(Mailbox)) == 1
    finally:
        restored.dispose()
    message = fresh.mail_root / key / "Maildir" / "new" / "1700000000.M1P1.host"
    assert message.read_text().startswith("Subject: kept")
    assert message.stat().st_uid == pwd.getpwnam(fresh.vmail_user).pw_uid


def test_a_schema_without_tenants_is_replaced_by_the_backups(
    backed_up, tmp_path: Path, second_database: str, settings: Settings
) -> None:
    """As `letterhead install` without a first tenant leaves a new machine."""
    backup, _key = backed_up
    home = tmp_path / "installed"
    target = load_settings(
        environ={}, home=home, database_url=second_database if settings.is_postgresql else ""
    )
    if not settings.is_postgresql:
        target.database_path.parent.mkdir(parents=True)
        shutil.copy(second_database.removeprefix("sqlite:///"), target.database_path)
    assert backups.restore(target, backup).mailboxes == 1
    restored = Installation(target)
    try:
        with restored.sessions() as session:
            assert session.scalar(select(Tenant.name)) == "Kept"
    finally:
        restored.dispose()


def test_a_damaged_backup_is_refused_and_leaves_no_database(backed_up, fresh: Settings) -> None:
    backup, _key = backed_up
    _edit_manifest(
        backup, lambda manifest: manifest["database"]["tables"]["tenant"].update(checksum="0" * 64)
    )
    with pytest.raises(backups.BackupRefused, match="differs from the backup in tenant"):
        backups.restore(fresh, backup)
    if not fresh.is_postgresql:  # on PostgreSQL the loaded dump stays, and the error says so
        assert _nothing_restored(fresh)
    assert not fresh.mail_root.exists() or not any(fresh.mail_root.iterdir())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda manifest: manifest["database"].update(revision="9999"), "made by a newer Letterhead"),
        (lambda manifest: manifest.update(engine="oracle"), "restore onto the same engine"),
        (lambda manifest: manifest.update(format=99), "not one this Letterhead reads"),
    ],
)
def test_a_backup_this_release_cannot_restore_is_refused_before_anything_is_written(
    backed_up, fresh: Settings, change, reason: str
) -> None:
    backup, _key = backed_up
    _edit_manifest(backup, change)
    with pytest.raises(backups.BackupRefused, match=reason):
        backups.restore(fresh, backup)
    assert _nothing_restored(fresh) and not fresh.mail_root.exists()


def test_restoring_over_an_installation_is_refused(backed_up, settings: Settings) -> None:
    backup, _key = backed_up
    with pytest.raises(backups.BackupRefused, match="already holds mail"):
        backups.restore(settings, backup)
    # Its tenants are refused too, mail or not, and stay as they were.
    shutil.rmtree(settings.mail_root)
    with pytest.raises(backups.BackupRefused, match="already holds an installation with tenants"):
        backups.restore(settings, backup)
    installation = Installation(settings)
    try:
        with installation.sessions() as session:
            assert session.scalar(select(Tenant.name)) == "Kept"
    finally:
        installation.dispose()


def test_a_backup_goes_only_into_a_folder_of_roots_own(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(backups.BackupRefused, match="not an empty folder"):
        backups.back_up(settings, tmp_path / "link")
    (tmp_path / "theirs").mkdir()
    os.chown(tmp_path / "theirs", pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(backups.BackupRefused, match="belongs to another user"):
        backups.back_up(settings, tmp_path / "theirs")
    assert list((tmp_path / "theirs").iterdir()) == [] and list((tmp_path / "elsewhere").iterdir()) == []


def test_a_backup_goes_only_into_a_new_or_empty_folder(backed_up, settings: Settings) -> None:
    backup, _key = backed_up
    with pytest.raises(backups.BackupRefused, match="not an empty folder"):
        backups.back_up(settings, backup)
