"""`letterhead backup` of a stack taking mail, `letterhead restore` into a new state directory, as
an operator runs them (the command line, LETTERHEAD_HOME): the restored stack serves the same
tenants, mailboxes with their mail, folders and flags, brands with their certificates, and keys."""

from __future__ import annotations

import imaplib
import json
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from controlplane.certs import acme
from controlplane.models import Brand, DkimKey, Domain, Mailbox, Tenant
from controlplane.runners.scratch import ScratchStack
from controlplane.services import brands, certificates, domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.commands import letterhead
from tests.e2e.mailclient import imap_subjects, send, served_certificate, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
USERS = ("alice", "bob", "carol")
BRAND_HOST = "mail.backup.test"
SUSPENDED = "dora"  # suspended before the backup: Dovecot no longer knows her, her mail is kept


def _imap(scratch: ScratchStack, user: str) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", scratch.ports["imap"], timeout=20)
    client.login(user, PASSWORD)
    return client


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Iterator[tuple[ScratchStack, bytes]]:
    scratch = ScratchStack(min_mailbox_bytes=KB)
    try:
        scratch.start()
        folder = tmp_path_factory.mktemp("brand-certificate")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={BRAND_HOST}",
             "-addext", f"subjectAltName=DNS:{BRAND_HOST}", "-keyout", str(folder / "key.pem"),
             "-out", str(folder / "cert.pem")],
            check=True, capture_output=True,
        )  # fmt: skip
        pems = ((folder / "cert.pem").read_text(), (folder / "key.pem").read_text())
        _as_certbot_keeps_it(scratch, pems)
        with scratch.installation.transaction() as session:
            tenant = tenants.create_tenant(
                session, OPERATOR, name="Backed Up", storage_pool_bytes=20_000 * KB
            )
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name="backup.test",
                max_mailboxes=10, max_aliases=10, max_mailbox_bytes=5000 * KB,
            )  # fmt: skip
            for user in (*USERS, SUSPENDED):
                mailboxes.create_mailbox(
                    session,
                    OPERATOR,
                    domain=domain,
                    local_part=user,
                    password=PASSWORD,
                    quota_bytes=5000 * KB,
                )
            brand = brands.create_brand(
                session, OPERATOR, scratch.settings, tenant=tenant, hostname=BRAND_HOST, name="Backup Brand"
            )
            certificates.record_certificate(brand, acme.read_certificate(folder / "cert.pem"), pems)
            brands.signal_brands_changed(session)
        yield scratch, ssl.PEM_cert_to_DER_cert(pems[0])
    finally:
        scratch.stop()


def _as_certbot_keeps_it(scratch: ScratchStack, pems: tuple[str, str]) -> None:
    """A lineage as certbot leaves it: files in archive/, relative links to them in live/."""
    chain_path, key_path = acme.certificate_paths(scratch.settings, BRAND_HOST)
    archive = chain_path.parent.parent.parent / "archive" / BRAND_HOST
    archive.mkdir(parents=True)
    chain_path.parent.mkdir(parents=True)
    for link, pem, name in ((chain_path, pems[0], "fullchain1.pem"), (key_path, pems[1], "privkey1.pem")):
        (archive / name).write_text(pem)
        link.symlink_to(Path("../../archive") / BRAND_HOST / name)


class SmtpLoad:
    """Clients sending to every mailbox one after another, from before the backup to after it."""

    def __init__(self, scratch: ScratchStack) -> None:
        self.scratch, self.accepted, self.refused = scratch, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smtp-load", daemon=True)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            user = USERS[number % len(USERS)]
            subject = f"load {number}"
            try:
                send(
                    self.scratch,
                    "sender@elsewhere.test",
                    [f"{user}@backup.test"],
                    subject=subject,
                    size=2 * KB,
                )
                self.accepted.append((user, subject))
            except (smtplib.SMTPException, OSError) as error:
                self.refused.append((subject, error))
            number += 1

    def __enter__(self) -> SmtpLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _set_active(scratch: ScratchStack, user: str, active: bool) -> None:
    with scratch.installation.transaction() as session:
        mailbox = mailboxes.find_mailbox(session, f"{user}@backup.test")
        mailboxes.update_mailbox(session, OPERATOR, mailbox, active=active)


def _serves(scratch: ScratchStack, certificate: bytes) -> bool:
    """The brand's certificate on IMAPS by SNI (a brand change may reach a node a moment later)."""
    deadline = time.monotonic() + 15
    while served_certificate(scratch.ports["imaps"], BRAND_HOST) != certificate:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def _subjects_by_user(scratch: ScratchStack) -> dict[str, list[str]]:
    return {user: imap_subjects(scratch, f"{user}@backup.test", PASSWORD) for user in USERS}


def test_a_backup_under_smtp_load_restores_every_message_row_brand_and_key(original) -> None:
    original, brand_certificate = original
    assert _serves(original, brand_certificate)
    first = {
        user: send(original, "sender@elsewhere.test", [f"{user}@backup.test"]) for user in (*USERS, SUSPENDED)
    }
    for user, subject in first.items():
        assert wait_for_subject(original, f"{user}@backup.test", PASSWORD, subject, timeout=30)
    _set_active(original, SUSPENDED, False)
    # A folder, a copy filed into it and a flag: dsync carries them, not only the messages.
    client = _imap(original, "alice@backup.test")
    client.create("Archive")
    client.select("INBOX")
    client.copy("1", "Archive")
    client.store("1", "+FLAGS", "(\\Flagged)")
    client.logout()

    backup = Path(tempfile.mkdtemp(prefix="letterhead-backup-", dir="/tmp"))
    try:
        with SmtpLoad(original) as load:
            # Mail flows before the backup starts, during it and after it.
            deadline = time.monotonic() + 30
            while len(load.accepted) < 15 and time.monotonic() < deadline:
                time.sleep(0.1)
            for user, subject in list(load.accepted):
                assert wait_for_subject(original, f"{user}@backup.test", PASSWORD, subject, timeout=30)
            delivered_before = _subjects_by_user(original)
            during = len(load.accepted)
            backed_up = letterhead(original.home, "backup", str(backup))
            accepted_by_the_end = len(load.accepted)
        assert backed_up.returncode == 0, backed_up.stderr
        assert "Backed up" in backed_up.stdout and "mail: 4 of 4 mailboxes" in backed_up.stderr
        assert accepted_by_the_end > during, "no mail was taken while the backup ran"
        assert not load.refused, load.refused[:3]
        manifest = json.loads((backup / "manifest.json").read_text())
        assert manifest["database"]["tables"]["mailbox"]["rows"] == len(USERS) + 1
        assert PASSWORD not in (backup / "manifest.json").read_text()

        # The new machine: its own state directory (and, on PostgreSQL, its own empty database).
        restored = ScratchStack(min_mailbox_bytes=KB)
        try:
            result = letterhead(restored.home, "restore", str(backup))
            assert result.returncode == 0, result.stderr
            assert "Restored" in result.stdout, result.stdout
            # This machine's own settings (its ports) kept, the backup's beside them.
            assert (restored.home / "letterhead.toml.restored").is_file()
            restored.start()

            after = _subjects_by_user(restored)
            for user in USERS:
                missing = set(delivered_before[user]) - set(after[user])
                assert not missing, f"{user}: {sorted(missing)[:5]} not restored"
                assert len(after[user]) == len(set(after[user])), f"{user}: a message restored twice"
            _set_active(restored, SUSPENDED, True)
            assert imap_subjects(restored, f"{SUSPENDED}@backup.test", PASSWORD) == [first[SUSPENDED]]
            client = _imap(restored, "alice@backup.test")
            assert client.select("Archive", readonly=True)[1] == [b"1"]
            client.select("INBOX", readonly=True)
            assert b"\\Flagged" in client.fetch("1", "(FLAGS)")[1][0]
            client.logout()

            with original.installation.sessions() as before, restored.installation.sessions() as now:
                for model in (Tenant, Domain, Mailbox, Brand, DkimKey):
                    count = select(func.count()).select_from(model)
                    assert now.scalar(count) == before.scalar(count), model.__name__
                assert now.scalars(select(Brand.hostname)).one() == BRAND_HOST
            keys = sorted(path for path in original.settings.dkim_dir.iterdir() if path.suffix == ".key")
            assert keys
            for key in keys:
                assert (restored.settings.dkim_dir / key.name).read_bytes() == key.read_bytes()
            assert (restored.home / "secret_key").read_bytes() == (original.home / "secret_key").read_bytes()
            assert _serves(restored, brand_certificate)
            # Mail keeps arriving on the restored stack; the restored users log in with their passwords.
            subject = send(restored, "sender@elsewhere.test", ["bob@backup.test"])
            assert wait_for_subject(restored, "bob@backup.test", PASSWORD, subject, timeout=30)

            # Restoring over an installation that holds one is refused, and changes nothing.
            again = letterhead(restored.home, "restore", str(backup))
            assert again.returncode == 1 and "running" in again.stderr
        finally:
            restored.stop()
        refused = letterhead(original.home, "backup", str(backup))
        assert refused.returncode == 1 and "not an empty folder" in refused.stderr
    finally:
        shutil.rmtree(backup, ignore_errors=True)


def test_a_folder_that_is_not_a_backup_is_refused_before_anything_is_written(tmp_path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "not-a-backup").mkdir()
    result = letterhead(tmp_path / "home", "restore", str(tmp_path / "not-a-backup"))
    assert result.returncode == 1 and "not a Letterhead backup" in result.stderr
    assert list((tmp_path / "home").iterdir()) == []
