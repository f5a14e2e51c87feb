"""End to end: the real stack's Postfix and Dovecot logs, read by the follower `up` started.

Each case is done by a real client against the real daemons; the records are then found in
the database the way the viewers and the CLI find them (services/mail_logs.py).
"""

from __future__ import annotations

import datetime as dt
import imaplib
import json
import os
import poplib
import smtplib
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from controlplane.daemons.process import output_of, run_tool, wait_until
from controlplane.logs import search_indexes
from controlplane.logs.ingest import ingest_file
from controlplane.models import AuthEvent, MailRecipientResult, MailTransaction
from controlplane.runners import stack
from controlplane.runners.scratch import ScratchStack
from controlplane.services import aliases, domains, mail_logs, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import imap_subjects, pop3_subjects, send, until_found, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
TEAM = ["reader@logs.test", "second@logs.test", "third@logs.test"]


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Logs", storage_pool_bytes=1000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="logs.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=200 * KB,
        )  # fmt: skip
        for local_part in ("reader", "second", "third"):
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=domain,
                local_part=local_part,
                password=PASSWORD,
                quota_bytes=100 * KB,
            )
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="tiny", password=PASSWORD, quota_bytes=2 * KB
        )
        aliases.create_alias(session, OPERATOR, domain=domain, local_part="team", destinations=TEAM)
    return mail_stack


def _steps(dialogue) -> list[tuple[str, str]]:
    """Each command's verb and each final reply's code (EHLO's 250- continuation lines dropped)."""
    return [
        (line.direction, line.text.split()[0].upper() if line.direction == "<" else line.text[:3])
        for line in dialogue
        if not (line.direction == ">" and line.text[3:4] == "-")
    ]


def test_the_follower_runs_with_the_stack(world: ScratchStack) -> None:
    [follower] = [s for s in stack.status(world.settings) if s.name == "log-follower"]
    assert follower.pid is not None


def test_a_delivered_message_is_recorded_with_its_smtp_dialogue(world: ScratchStack) -> None:
    subject = send(world, "sender@elsewhere.test", ["reader@logs.test"])
    assert wait_for_subject(world, "reader@logs.test", PASSWORD, subject)

    def delivered(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "sender@elsewhere.test")
        for view in found:
            dialogue = view.transaction.dialogue
            if [r.recipient for r in view.recipients] == ["reader@logs.test"] and any(
                line.text.startswith("221") for line in dialogue
            ):
                return view, [(line.direction, line.text) for line in dialogue], _steps(dialogue)
        return None

    found = until_found(world, delivered)
    assert found is not None, "the delivery and its whole dialogue never reached the database"
    view, lines, steps = found
    [recipient] = view.recipients
    assert (recipient.outcome, recipient.status_code, recipient.reason) == ("delivered", "250 2.0.0", "")
    assert view.transaction.client_ip == "127.0.0.1"
    assert steps == [
        (">", "220"),
        ("<", "EHLO"),
        (">", "250"),
        ("<", "MAIL"),
        (">", "250"),
        ("<", "RCPT"),
        (">", "250"),
        ("<", "DATA"),
        (">", "354"),
        (">", "250"),
        ("<", "QUIT"),
        (">", "221"),
    ]
    [queue_id] = [entry.queue_id for entry in view.transaction.queue_entries]
    assert lines[1] == ("<", "ehlo client.test")
    assert any(text.startswith("mail FROM:<sender@elsewhere.test>") for _, text in lines)
    assert ("<", "rcpt TO:<reader@logs.test>") in lines
    assert (">", f"250 2.0.0 Ok: queued as {queue_id}") in lines
    assert [line.time for line in view.transaction.dialogue] == sorted(
        line.time for line in view.transaction.dialogue
    )


def test_an_unknown_recipient_is_refused_and_its_dialogue_shows_the_refusal(world: ScratchStack) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(world, "sender@elsewhere.test", ["nobody@logs.test"])

    def refused(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "nobody@logs.test")
        if found and any(line.text.startswith("221") for line in found[0].transaction.dialogue):
            return found[0]
        return None

    view = until_found(world, refused)
    assert view is not None, "the refusal and its dialogue never reached the database"
    [recipient] = view.recipients
    assert (recipient.outcome, recipient.status_code, recipient.reason) == (
        "refused",
        "550 5.1.1",
        "recipient not found",
    )
    assert _steps(view.transaction.dialogue) == [
        (">", "220"),
        ("<", "EHLO"),
        (">", "250"),
        ("<", "MAIL"),
        (">", "250"),
        ("<", "RCPT"),
        (">", "550"),
        ("<", "RSET"),
        (">", "250"),
        ("<", "QUIT"),
        (">", "221"),
    ]
    assert ("<", "rcpt TO:<nobody@logs.test>") in [(d.direction, d.text) for d in view.transaction.dialogue]


def test_a_message_for_a_full_mailbox_is_recorded_as_mailbox_full(world: ScratchStack) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(world, "sender@elsewhere.test", ["tiny@logs.test"], size=8 * KB)

    def full(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "tiny@logs.test")
        return [(r.outcome, r.status_code, r.reason) for view in found for r in view.recipients]

    assert until_found(world, full) == [("refused", "552 5.2.2", "mailbox full")]


def test_an_alias_fans_out_to_three_mailboxes_each_recorded(world: ScratchStack) -> None:
    subject = send(world, "sender@elsewhere.test", ["team@logs.test"])
    for address in TEAM:
        assert wait_for_subject(world, address, PASSWORD, subject)

    def fanned_out(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "team@logs.test")
        outcomes = sorted((r.recipient, r.orig_to, r.outcome) for view in found for r in view.recipients)
        return outcomes if len(outcomes) == 3 else None

    assert until_found(world, fanned_out) == [(address, "team@logs.test", "delivered") for address in TEAM]


def test_failed_and_successful_imap_pop3_and_submission_logins_are_recorded_with_why(
    world: ScratchStack,
) -> None:
    started = time.time()
    imap_subjects(world, "second@logs.test", PASSWORD)
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(world, "second@logs.test", "wrong password")
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(world, "ghost@logs.test", PASSWORD)
    pop3_subjects(world, "second@logs.test", PASSWORD)
    with pytest.raises(poplib.error_proto):
        pop3_subjects(world, "second@logs.test", "wrong password")
    send(
        world,
        "second@logs.test",
        ["reader@logs.test"],
        port="submission",
        login=("second@logs.test", PASSWORD),
    )
    for login in (("second@logs.test", "nope"), ("ghost@logs.test", PASSWORD)):
        with pytest.raises(smtplib.SMTPAuthenticationError):
            send(world, "second@logs.test", ["reader@logs.test"], port="submission", login=login)

    def logins(session):
        events, _ = mail_logs.search_logins(session, OPERATOR, "127.0.0.1", limit=500)
        seen = {
            (e.service, e.success, e.login, e.reason)
            for e in events
            if e.time.timestamp() >= int(started) and e.login in ("second@logs.test", "ghost@logs.test")
        }
        # Postfix's failure may be read before Dovecot's verdict: wait for every reason.
        complete = len(seen) >= 8 and not any(
            reason == "wrong password or unknown user" for *_, reason in seen
        )
        return seen if complete else None

    assert until_found(world, logins) == {
        ("imap", True, "second@logs.test", ""),
        ("imap", False, "second@logs.test", "wrong password"),
        ("imap", False, "ghost@logs.test", "unknown or disabled mailbox"),
        ("pop3", True, "second@logs.test", ""),
        ("pop3", False, "second@logs.test", "wrong password"),
        ("smtp", True, "second@logs.test", ""),
        # The login tried, from Postfix's sasl_username=, and why, from Dovecot's auth log.
        ("smtp", False, "second@logs.test", "wrong password"),
        ("smtp", False, "ghost@logs.test", "unknown or disabled mailbox"),
    }


def test_rotation_while_following_loses_and_repeats_nothing(world: ScratchStack) -> None:
    """logrotate renames the live log, Postfix's log writer opens a new one, and the old is gzipped:
    the follower finishes the old file through its open descriptor, then reads the new one."""

    def delivered_to(address: str):
        def found(session):
            views, _ = mail_logs.search_transactions(session, OPERATOR, address)
            delivered = [r for view in views for r in view.recipients if r.outcome == "delivered"]
            return delivered or None

        return found

    before = send(world, "rotation@elsewhere.test", ["third@logs.test"])
    assert wait_for_subject(world, "third@logs.test", PASSWORD, before)
    log_dir = world.settings.log_dir
    (log_dir / "postfix.log").rename(log_dir / "postfix.log.1")
    after = send(world, "rotation@elsewhere.test", ["second@logs.test"])
    assert wait_for_subject(world, "second@logs.test", PASSWORD, after)
    assert wait_until(lambda: (log_dir / "postfix.log").exists(), timeout=10), sorted(log_dir.iterdir())
    zipped = run_tool(["gzip", str(log_dir / "postfix.log.1")])
    assert zipped.returncode == 0, output_of(zipped)
    assert until_found(world, delivered_to("second@logs.test"))

    def sent_by_rotation(session):
        # Both deliveries read (a transaction may be stored a poll before its delivery line).
        views, total = mail_logs.search_transactions(session, OPERATOR, "rotation@elsewhere.test")
        recipients = sorted(r.recipient for view in views for r in view.recipients)
        # The count and the page are two reads: a transaction stored between them is in one only.
        return (total, recipients) if len(recipients) >= 2 and total == len(views) else None

    assert until_found(world, sent_by_rotation) == (2, ["second@logs.test", "third@logs.test"])
    # An operator reading the compressed copy by hand stores nothing twice: it is known by content.
    [compressed] = log_dir.glob("postfix.log.*.gz")
    with world.installation.sessions() as session:
        assert ingest_file(session, compressed).lines == 0
    assert until_found(world, sent_by_rotation) == (2, ["second@logs.test", "third@logs.test"])


def test_an_operators_bulk_import_runs_while_the_follower_records_live_mail(
    world: ScratchStack, tmp_path
) -> None:
    """`letterhead logs ingest` of a week of old log (large enough for a bulk import: its rows
    written by a second process on SQLite) while mail arrives and the follower writes its rows
    to the same tables: every old message and login is stored once, and so is the live mail."""
    from bench.loggen import generate_log

    old = tmp_path / "mail.log.1"
    written = generate_log(old, 260_000)
    assert old.stat().st_size >= search_indexes.BULK_IMPORT_BYTES
    # Its stamps (November 10 to 17, no year) dated from the file's time: a year before this
    # run's, wherever in the calendar it falls, and well apart from the live mail's.
    year_ago = dt.datetime(dt.datetime.now(dt.UTC).year - 1, 11, 18, tzinfo=dt.UTC)
    os.utime(old, (year_ago.timestamp(), year_ago.timestamp()))
    command = subprocess.Popen(
        [sys.executable, "-m", "controlplane.cli", "logs", "ingest", "--json", str(old)],
        env={**os.environ, "LETTERHEAD_HOME": str(world.settings.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sent = sent_while_importing = 0
    try:
        while command.poll() is None and sent < 10:
            send(world, "during@elsewhere.test", ["second@logs.test"])
            sent += 1
            sent_while_importing += command.poll() is None
            time.sleep(0.2)  # live mail, not a flood
        out, err = command.communicate(timeout=300)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == 0, err
    assert sent_while_importing >= 1, "the import ended before any live mail came"
    [report] = json.loads(out)
    assert report["lines"] == 260_000 and report["unparsed"] == 0

    def live_recorded(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "during@elsewhere.test")
        return found if len(found) == sent else None

    assert until_found(world, live_recorded), "the follower lost live mail during the import"
    before = year_ago + dt.timedelta(days=1)
    with world.installation.sessions() as session:
        old_rows = {
            "received": session.scalar(
                select(func.count()).select_from(MailTransaction).where(
                    MailTransaction.time < before, MailTransaction.client_ip != "",
                    MailTransaction.queue_entries.any(),
                )
            ),
            "sent": _recipients(session, before, ("delivered", "forwarded", "relayed")),
            "bounced": _recipients(session, before, ("bounced",)),
            "rejected": _recipients(session, before, ("refused",)),
            "login-ok": session.scalar(
                select(func.count()).select_from(AuthEvent).where(AuthEvent.time < before, AuthEvent.success)
            ),
            "login-fail": session.scalar(
                select(func.count()).select_from(AuthEvent).where(AuthEvent.time < before, ~AuthEvent.success)
            ),
        }  # fmt: skip
    assert old_rows == {name: written.get(name, 0) for name in old_rows}
    assert all(old_rows.values())
    assert "during@elsewhere.test" not in old.read_text()  # the live mail is the follower's alone


def _recipients(session, before: dt.datetime, outcomes: tuple[str, ...]) -> int:
    return session.scalar(
        select(func.count())
        .select_from(MailRecipientResult)
        .where(MailRecipientResult.time < before, MailRecipientResult.outcome.in_(outcomes))
    )
