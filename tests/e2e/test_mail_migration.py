"""Mail brought in from an old provider, as an operator runs it (`letterhead migrate ...`): a second
Dovecot on loopback plays the old provider, with folders (non-ASCII names too), flags, dates and a
10 MB message. The copy is read back over the stack's IMAPS with its certificate checked; a
cut-over pass copies only what is new and keeps what was delivered here; a wrong password, an
unreachable server and a mailbox too small each stop with words an admin can act on."""

from __future__ import annotations

import datetime as dt
import email
import imaplib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from controlplane.daemons import imap_migration
from controlplane.models import Mailbox, MigrationMailbox
from controlplane.runners import mail_migration as migration_runner
from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mailboxes, tenants, tokens
from controlplane.services.scope import OPERATOR
from tests.commands import letterhead
from tests.e2e.mailclient import api_call, send, tls_context, wait_for_subject
from tests.old_provider import OldProvider
from webmail.mailstore import decode_folder_name, encode_folder_name

pytestmark = pytest.mark.e2e

KB, MB, GB = 1024, 1024**2, 1024**3
PASSWORD = "new place password"
OLD_LOGIN, OLD_PASSWORD = "ann@old-provider.test", 'old "pass" $word #1'
DOMAIN = "arrivals.test"
# Folder → messages as (subject, IMAP flags, INTERNALDATE, body size).
OLD_MAIL = {
    "INBOX": [
        ("First letter", "\\Seen \\Flagged", dt.datetime(2019, 5, 1, 8, 30, tzinfo=dt.UTC), 200),
        ("Unread one", "", dt.datetime(2020, 6, 2, 9, 0, tzinfo=dt.UTC), 300),
        ("Big attachment", "\\Seen", dt.datetime(2021, 2, 3, 10, 15, tzinfo=dt.UTC), 10 * MB),
    ],
    "Sent": [("My reply", "\\Seen \\Answered", dt.datetime(2019, 5, 2, 7, 0, tzinfo=dt.UTC), 150)],
    "Reisen & Über/2024": [
        ("Booking confirmed", "\\Seen $Important", dt.datetime(2024, 3, 4, tzinfo=dt.UTC), 400)
    ],
    "日本語": [("Konnichiwa", "", dt.datetime(2023, 1, 1, tzinfo=dt.UTC), 100)],
}


def _message(subject: str, size: int) -> bytes:
    head = f"From: friend@elsewhere.test\r\nTo: {OLD_LOGIN}\r\nSubject: {subject}\r\nMessage-ID: <{abs(hash(subject))}@old>\r\n\r\n"
    line = b"y" * 76 + b"\r\n"
    return head.encode() + line * max(size // len(line), 1)


@pytest.fixture(scope="module")
def stacks() -> Iterator[tuple[ScratchStack, OldProvider]]:
    old = OldProvider()
    # The stack's own migration runner trusts the old provider's authority, as an operator sets it,
    # and may reach it on loopback (servers on private networks are refused otherwise).
    scratch = ScratchStack(
        min_mailbox_bytes=KB,
        extra_settings=f'migration_ca_bundle = "{old.ca_file}"\nmigration_private_servers = true\n',
    )
    try:
        old.start()
        old.add_user(OLD_LOGIN, OLD_PASSWORD)
        for folder, messages in OLD_MAIL.items():
            for subject, flags, date, size in messages:
                old.append(OLD_LOGIN, folder, _message(subject, size), flags=flags, date=date)
        scratch.start(web=True)
        with scratch.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Arrivals", storage_pool_bytes=5 * GB)
            domain = domains.create_domain(
                session,
                OPERATOR,
                tenant=tenant,
                name=DOMAIN,
                max_mailboxes=10,
                max_aliases=10,
                max_mailbox_bytes=GB,
            )
            for local_part, quota in (("ann", GB), ("bob", GB), ("cy", GB), ("tiny", MB), ("dee", GB)):
                mailboxes.create_mailbox(
                    session,
                    OPERATOR,
                    domain=domain,
                    local_part=local_part,
                    quota_bytes=quota,
                    password=PASSWORD,
                )
        yield scratch, old
    finally:
        scratch.stop()
        old.stop()


def _run(scratch: ScratchStack, old: OldProvider, *arguments: str) -> str:
    result = letterhead(scratch.home, "migrate", *arguments)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _run_queued(scratch: ScratchStack, old: OldProvider) -> None:
    _run(scratch, old, "run", "--parallel", "3", "--ca-file", str(old.ca_file))


def _report(scratch: ScratchStack, old: OldProvider, job: int) -> dict[str, dict]:
    return {row["address"]: row for row in json.loads(_run(scratch, old, "show", str(job), "--json"))}


def _imap(scratch: ScratchStack, user: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", scratch.ports["imaps"], ssl_context=tls_context(scratch), timeout=60
    )
    client.login(user, PASSWORD)
    return client


def _folder_contents(
    scratch: ScratchStack, user: str
) -> dict[str, list[tuple[str, set[str], dt.datetime, int]]]:
    """Every folder's messages as the user's mail program sees them over IMAPS."""
    client = _imap(scratch, user)
    try:
        _, listed = client.list()
        contents = {}
        for line in listed:
            attributes, name = re.match(rb'\((.*?)\) "/" (.*)', line).groups()
            if b"\\Noselect" in attributes:
                continue
            folder = decode_folder_name(name.decode().strip('"'))
            client.select(f'"{encode_folder_name(folder)}"', readonly=True)
            _, numbers = client.search(None, "ALL")
            messages = []
            for number in numbers[0].split():
                _, fetched = client.fetch(
                    number, "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
                )
                meta, header = fetched[0]
                flags = set(imaplib.ParseFlags(meta)) - {b"\\Recent"}
                date = dt.datetime(*imaplib.Internaldate2tuple(meta)[:6]).astimezone(dt.UTC)
                size = int(re.search(rb"RFC822\.SIZE (\d+)", meta).group(1))
                subject = email.message_from_bytes(header)["Subject"]
                messages.append((subject, {flag.decode() for flag in flags}, date, size))
            contents[folder] = messages
        return contents
    finally:
        client.logout()


def test_a_mailbox_is_copied_whole_and_each_failure_is_told_in_words(
    stacks: tuple[ScratchStack, OldProvider], tmp_path: Path
) -> None:
    scratch, old = stacks
    server = f"127.0.0.1:{old.port}"
    unused_port = old.port + 1 if old.port < 65000 else old.port - 1
    rows = [
        f'ann@{DOMAIN},{server},{OLD_LOGIN},"{OLD_PASSWORD.replace(chr(34), chr(34) * 2)}"',
        f"bob@{DOMAIN},{server},{OLD_LOGIN},not the password",
        f"cy@{DOMAIN},127.0.0.1:{unused_port},{OLD_LOGIN},whatever",
        f'tiny@{DOMAIN},{server},{OLD_LOGIN},"{OLD_PASSWORD.replace(chr(34), chr(34) * 2)}"',
    ]
    csv_file = tmp_path / "mailboxes.csv"
    csv_file.write_text("address,old server,old login,old password\n" + "\n".join(rows) + "\n")
    started = _run(scratch, old, "start", DOMAIN, "--csv", str(csv_file))
    job = int(re.search(r"Migration job (\d+): 4 mailbox", started).group(1))
    _run_queued(scratch, old)

    report = _report(scratch, old, job)
    ann = report[f"ann@{DOMAIN}"]
    expected_messages = sum(len(messages) for messages in OLD_MAIL.values())
    assert (ann["state"], ann["messages_done"], ann["messages_total"]) == (
        "done",
        expected_messages,
        expected_messages,
    )
    assert ann["bytes_done"] == ann["bytes_total"] > 10 * MB
    assert report[f"bob@{DOMAIN}"]["state"] == "failed"
    assert (
        report[f"bob@{DOMAIN}"]["error"] == f"The old server refused the login or password for {OLD_LOGIN}."
    )
    assert (
        report[f"cy@{DOMAIN}"]["error"]
        == f"The old server 127.0.0.1 refused the connection on port {unused_port}."
    )
    tiny = report[f"tiny@{DOMAIN}"]
    assert tiny["state"] == "failed" and "raise this mailbox's storage" in tiny["error"]
    assert "Nothing was copied" in tiny["error"]
    (listed,) = json.loads(_run(scratch, old, "list", DOMAIN, "--json"))
    assert (listed["job"], listed["mailboxes"], listed["done"], listed["failed"]) == (job, 4, 1, 3)

    # What the user's mail program sees here: every folder, flag and date, the big message whole.
    copied = _folder_contents(scratch, f"ann@{DOMAIN}")
    for folder, messages in OLD_MAIL.items():
        assert sorted(s for s, *_ in copied[folder]) == sorted(s for s, *_ in messages), folder
        for subject, flags, date, size in messages:
            (here,) = [m for m in copied[folder] if m[0] == subject]
            assert here[1] == set(flags.split()), (folder, subject)
            assert here[2] == date, (folder, subject)
            assert here[3] == len(_message(subject, size)), (folder, subject)
    # The wrong password and the refused copy brought nothing.
    for user in (f"bob@{DOMAIN}", f"tiny@{DOMAIN}"):
        folders = _folder_contents(scratch, user)
        assert "INBOX" in folders and not any(folders.values()), (user, folders)
        assert "Reisen & Über/2024" not in folders

    # Cut-over day: new mail at the old provider, and mail already delivered here, both kept once.
    old.append(
        OLD_LOGIN,
        "INBOX",
        _message("Sent on cut-over day", 500),
        date=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
    )
    local = send(scratch, "friend@elsewhere.test", [f"ann@{DOMAIN}"], subject="Delivered here already")
    assert wait_for_subject(scratch, f"ann@{DOMAIN}", PASSWORD, local, timeout=30)
    _run(scratch, old, "again", str(job))
    _run_queued(scratch, old)
    ann = _report(scratch, old, job)[f"ann@{DOMAIN}"]
    assert (ann["state"], ann["pass"], ann["passes"], ann["messages_last_pass"]) == ("done", "new", 2, 1)
    inbox = [subject for subject, *_ in _folder_contents(scratch, f"ann@{DOMAIN}")["INBOX"]]
    assert sorted(inbox) == sorted(
        ["First letter", "Unread one", "Big attachment", "Sent on cut-over day", "Delivered here already"]
    )
    # Once more: nothing new, nothing twice.
    _run(scratch, old, "again", str(job))
    _run_queued(scratch, old)
    assert _report(scratch, old, job)[f"ann@{DOMAIN}"]["messages_last_pass"] == 0
    assert len(_folder_contents(scratch, f"ann@{DOMAIN}")["INBOX"]) == 5

    # Closing the job deletes the old passwords; none was ever written to a log or left on disk.
    _run(scratch, old, "close", str(job))
    with scratch.installation.sessions() as session:
        sealed = session.scalars(select(MigrationMailbox.old_password_sealed)).all()
    assert sealed and all(value is None for value in sealed)
    for path in scratch.home.rglob("*"):
        if path.is_file() and path.stat().st_size < 50 * MB and path.suffix not in {".db", ".db-wal"}:
            assert b"not the password" not in path.read_bytes(), path
            assert OLD_PASSWORD.encode() not in path.read_bytes(), path
    assert not list((scratch.settings.run_dir / "migrations").iterdir())
    refused = letterhead(scratch.home, "migrate", "again", str(job))
    assert refused.returncode == 1 and "closed" in refused.stderr


def test_a_job_started_through_the_api_is_copied_in_the_background(
    stacks: tuple[ScratchStack, OldProvider],
) -> None:
    scratch, old = stacks
    with scratch.installation.transaction() as session:
        domain = domains.find_domain(session, DOMAIN)
        tenant = domain.tenant
        _, secret = tokens.create_token(
            session, OPERATOR, tenant=tenant, kind="domain", domain=domain, name="migrate"
        )
    body = {"mailboxes": [{"address": f"dee@{DOMAIN}", "old_server": f"127.0.0.1:{old.port}", "old_login": OLD_LOGIN,
                           "old_password": OLD_PASSWORD}]}  # fmt: skip
    status, job = api_call(scratch, secret, "POST", f"/domains/{DOMAIN}/migrations", body)
    assert status == 201, job
    # What the periodic runner does every few seconds (test stacks run no periodic runner).
    assert migration_runner.start_if_queued(scratch.installation)
    deadline = time.monotonic() + 90
    while True:
        status, report = api_call(scratch, secret, "GET", f"/migrations/{job['id']}")
        (row,) = report["mailboxes"]
        if row["state"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert row["state"] == "done", row
    assert row["messages_done"] == row["messages_total"] >= sum(len(m) for m in OLD_MAIL.values())
    inbox = {subject for subject, *_ in _folder_contents(scratch, f"dee@{DOMAIN}")["INBOX"]}
    assert {subject for subject, *_ in OLD_MAIL["INBOX"]} <= inbox
    # The runner ends once the queue is empty.
    deadline = time.monotonic() + 30
    while migration_runner.RUNNER.pid(scratch.settings) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert migration_runner.RUNNER.pid(scratch.settings) is None


def test_a_copy_that_fills_the_mailbox_stops_in_words_and_a_rerun_after_more_storage_finishes(
    stacks: tuple[ScratchStack, OldProvider],
) -> None:
    """dsync ignores the quota while it copies, and the check before a copy is an estimate (mail
    may arrive meanwhile): the runner's guard stops a copy that filled the mailbox, in words, keeps
    what was copied, and a pass after its storage was raised copies the rest, each message once."""
    scratch, old = stacks
    with scratch.installation.transaction() as session:
        domain = domains.find_domain(session, DOMAIN)
        small = mailboxes.create_mailbox(session, OPERATOR, domain=domain, local_part="small", quota_bytes=MB,
                                         password=PASSWORD)  # fmt: skip
        small_id = small.id
    config = scratch.settings.live_config.resolve() / "dovecot" / "dovecot.conf"
    server = imap_migration.OldServer("127.0.0.1", old.port, "imaps", OLD_LOGIN)
    work = scratch.settings.run_dir / "migrations"
    guard = migration_runner.storage_guard(config, f"small@{DOMAIN}", MB)
    with pytest.raises(imap_migration.CopyFailed) as stopped:
        imap_migration.copy_mailbox(config, f"small@{DOMAIN}", server, OLD_PASSWORD, work_dir=work,
                                    ca_file=old.ca_file, stop_when=guard, check_seconds=0.2)  # fmt: skip
    assert str(stopped.value).startswith("The mailbox here filled up during the copy (")
    assert "Raise this mailbox's storage and run the migration again" in str(stopped.value)
    kept = _folder_contents(scratch, f"small@{DOMAIN}")
    old_subjects = sorted(subject for subjects in _folder_contents_old(old).values() for subject in subjects)
    assert len({subject for messages in kept.values() for subject, *_ in messages}) >= 1
    with scratch.installation.transaction() as session:
        mailboxes.set_mailbox_quota(session, OPERATOR, session.get(Mailbox, small_id), 100 * MB)
    imap_migration.copy_mailbox(config, f"small@{DOMAIN}", server, OLD_PASSWORD, work_dir=work,
                                ca_file=old.ca_file, stop_when=migration_runner.storage_guard(config, f"small@{DOMAIN}", 100 * MB))  # fmt: skip
    copied = _folder_contents(scratch, f"small@{DOMAIN}")
    assert sorted(subject for messages in copied.values() for subject, *_ in messages) == old_subjects


def _folder_contents_old(old: OldProvider) -> dict[str, list[str]]:
    client = old.client(OLD_LOGIN)
    try:
        _, listed = client.list()
        contents = {}
        for line in listed:
            attributes, name = re.match(rb'\((.*?)\) "/" (.*)', line).groups()
            if b"\\Noselect" in attributes:
                continue
            client.select(name.decode(), readonly=True)
            _, numbers = client.search(None, "ALL")
            subjects = []
            for number in numbers[0].split():
                _, fetched = client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                subjects.append(email.message_from_bytes(fetched[0][1])["Subject"])
            contents[name.decode()] = subjects
        return contents
    finally:
        client.logout()


def test_an_old_server_on_a_private_network_is_refused_unless_the_operator_allows_it(
    stacks: tuple[ScratchStack, OldProvider],
) -> None:
    """A tenant must not use the platform to probe its own machine or private networks."""
    scratch, _ = stacks
    for host in ("127.0.0.1", "10.1.2.3", "localhost", "169.254.169.254"):
        assert migration_runner._refused_address(host, private_allowed=False), host
        assert migration_runner._refused_address(host, private_allowed=True) is None
    assert migration_runner._refused_address("192.0.2.1", private_allowed=False)  # documentation range
    assert scratch.settings.migration_private_servers
