"""The state directory's disk full (a small tmpfs holding the whole state directory, filled up):
mail is refused with a temporary error (the sender keeps it and retries), a change is refused in
words and changes nothing, status names the disk, the database stays whole, and everything
resumes once space returns."""

from __future__ import annotations

import errno
import http.client
import json
import smtplib
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mailboxes, tenants, tokens
from controlplane.services.scope import OPERATOR
from tests.commands import letterhead
from tests.e2e.mailclient import send, tls_context, wait_for_subject

pytestmark = [pytest.mark.e2e, pytest.mark.sqlite_state]

KB = 1024
PASSWORD = "full disk password"


@pytest.fixture(scope="module")
def on_a_small_disk() -> Iterator[tuple[ScratchStack, str]]:
    mount = Path(tempfile.mkdtemp(prefix="lh-disk-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m,mode=0755", "tmpfs", str(mount)], check=True)
    # The state directory is the question here, and on PostgreSQL the database lives elsewhere.
    scratch = ScratchStack(min_mailbox_bytes=KB, home=mount, postgres_server="")
    try:
        scratch.start(web=True)
        with scratch.installation.transaction() as session:
            tenant = tenants.create_tenant(
                session, OPERATOR, name="Full Disk", storage_pool_bytes=10_000 * KB
            )
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name="full.test", max_mailboxes=10, max_aliases=10,
                max_mailbox_bytes=1000 * KB,
            )  # fmt: skip
            mailboxes.create_mailbox(
                session, OPERATOR, domain=domain, local_part="ann", password=PASSWORD, quota_bytes=1000 * KB
            )
            _, secret = tokens.create_token(session, OPERATOR, tenant=tenant, kind="tenant", name="full")
        yield scratch, secret
    finally:
        scratch.stop()
        subprocess.run(["umount", "--lazy", str(mount)], check=False)
        mount.rmdir()


def _fill(path: Path) -> None:
    """Write until the file system refuses another byte."""
    chunk = b"\0" * (1024 * 1024)
    with path.open("wb", buffering=0) as ballast:
        try:
            while True:
                ballast.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    with path.open("ab", buffering=0) as ballast:
        try:
            while True:
                ballast.write(b"\0" * 512)
        except OSError as error:
            assert error.errno == errno.ENOSPC


def _api_create_mailbox(scratch: ScratchStack, secret: str, local_part: str) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection("127.0.0.1", scratch.ports["https"], timeout=30,
                                             context=tls_context(scratch))  # fmt: skip
    body = {"local_part": local_part, "quota_bytes": 100 * KB, "password": PASSWORD}
    connection.request("POST", "/api/v1/domains/full.test/mailboxes", body=json.dumps(body), headers={
        "Host": scratch.settings.hostname, "Authorization": f"Bearer {secret}",
        "Content-Type": "application/json"})  # fmt: skip
    response = connection.getresponse()
    status, data = response.status, response.read()
    connection.close()
    return status, json.loads(data) if data else {}


def _mailbox_count(scratch: ScratchStack) -> int:
    with sqlite3.connect(f"file:{scratch.settings.database_path}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT count(*) FROM mailbox").fetchone()[0]


def test_a_full_disk_refuses_in_words_changes_nothing_and_recovers(on_a_small_disk) -> None:
    scratch, secret = on_a_small_disk
    before = send(scratch, "sender@elsewhere.test", ["ann@full.test"], subject="before the disk filled")
    assert wait_for_subject(scratch, "ann@full.test", PASSWORD, before, timeout=30)
    ballast = scratch.home / "ballast"
    _fill(ballast)
    try:
        # Mail: a temporary refusal, so the sending server keeps the message and tries again.
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            send(scratch, "sender@elsewhere.test", ["ann@full.test"], subject="while the disk is full")
        assert refused.value.smtp_code == 452 and b"storage" in refused.value.smtp_error.lower()

        # A change: refused in words, nothing written.
        count = _mailbox_count(scratch)
        created = letterhead(scratch.home, "mailbox", "create", "bob@full.test", "--quota", "100K", "--password",
                              "a long enough password")  # fmt: skip
        assert created.returncode == 1
        assert "The disk holding the database is full: nothing was changed" in created.stderr, created.stderr
        assert "Traceback" not in created.stderr and "INSERT" not in created.stderr
        assert _mailbox_count(scratch) == count

        # The same change through the API, over HTTPS through nginx: a 503 in words.
        status_code, problem = _api_create_mailbox(scratch, secret, "cat")
        assert status_code == 503, problem
        assert problem["detail"].startswith("The disk holding the database is full: nothing was changed")
        assert _mailbox_count(scratch) == count

        status = letterhead(scratch.home, "status")
        assert (
            status.returncode == 1 and f"Problem: The disk of {scratch.home} has 0 MB free" in status.stdout
        )
    finally:
        ballast.unlink()

    with sqlite3.connect(scratch.settings.database_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # Space is back: mail and changes go through again, without restarting anything.
    after = send(scratch, "sender@elsewhere.test", ["ann@full.test"], subject="after the disk was freed")
    assert wait_for_subject(scratch, "ann@full.test", PASSWORD, after, timeout=30)
    created = letterhead(scratch.home, "mailbox", "create", "bob@full.test", "--quota", "100K", "--password",
                          "a long enough password")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert _api_create_mailbox(scratch, secret, "cat")[0] == 201
    assert _mailbox_count(scratch) == count + 2
