"""The SMTP dialogue from a real Postfix log (port 25, debug_peer_level=1): commands and replies
attached in order to their transaction, trace lines dropped, credentials and content never stored."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.logs.dialogue import REDACTED, redact
from controlplane.logs.ingest import ingest_file
from controlplane.models import (
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    SmtpDialogueLine,
    UnparsedLogLine,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "logs"
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)

# Captured from the stack's own Postfix: one session, a delivered message then a refused RCPT.
DELIVERED = [
    (">", "220 mail.letterhead.test ESMTP"),
    ("<", "ehlo client.example"),
    (">", "250-mail.letterhead.test"),
    (">", "250-PIPELINING"),
    (">", "250-SIZE 52428800"),
    (">", "250-VRFY"),
    (">", "250-ETRN"),
    (">", "250-STARTTLS"),
    (">", "250-ENHANCEDSTATUSCODES"),
    (">", "250-8BITMIME"),
    (">", "250-DSN"),
    (">", "250 CHUNKING"),
    ("<", "mail FROM:<x@elsewhere.test> size=33"),
    (">", "250 2.1.0 Ok"),
    ("<", "rcpt TO:<r@p.test>"),
    (">", "250 2.1.5 Ok"),
    ("<", "data"),
    (">", "354 End data with <CR><LF>.<CR><LF>"),
    (">", "250 2.0.0 Ok: queued as 4jZVKg4ZFCzJJQ3"),
]
REFUSED = [
    ("<", "mail FROM:<x@elsewhere.test> size=21"),
    (">", "250 2.1.0 Ok"),
    ("<", "rcpt TO:<nobody@p.test>"),
    (">", "550 5.1.1 <nobody@p.test>: Recipient address rejected: User unknown in virtual mailbox table"),
    ("<", "rset"),
    (">", "250 2.0.0 Ok"),
    ("<", "QUIT"),
    (">", "221 2.0.0 Bye"),
]


def _dialogue(db: Session, transaction: MailTransaction) -> list[tuple[str, str]]:
    return [(line.direction, line.text) for line in transaction.dialogue]


def _by_queue_id(db: Session, queue_id: str) -> MailTransaction:
    return db.scalars(
        select(MailTransaction).join(MailQueueEntry).where(MailQueueEntry.queue_id == queue_id)
    ).one()


def _refused(db: Session, recipient: str) -> MailTransaction:
    return db.scalars(
        select(MailTransaction).join(MailRecipientResult).where(MailRecipientResult.recipient == recipient)
    ).one()


def test_a_delivered_message_carries_its_dialogue_in_order_without_trace_lines(
    db: Session, tmp_path: Path
) -> None:
    path = tmp_path / "postfix.log"
    path.write_bytes((FIXTURES / "dialogue.log").read_bytes())
    ingest_file(db, path, reference=REFERENCE)
    transaction = _by_queue_id(db, "4jZVKg4ZFCzJJQ3")
    assert _dialogue(db, transaction) == DELIVERED
    assert [r.outcome for r in transaction.recipients] == ["delivered"]
    assert transaction.dialogue[0].time == dt.datetime(2026, 11, 25, 19, 36, 23, tzinfo=dt.UTC)


def test_a_refused_recipient_carries_the_commands_and_the_refusal_it_got(db: Session, tmp_path: Path) -> None:
    path = tmp_path / "postfix.log"
    path.write_bytes((FIXTURES / "dialogue.log").read_bytes())
    ingest_file(db, path, reference=REFERENCE)
    assert _dialogue(db, _refused(db, "nobody@p.test")) == REFUSED
    # Every command and reply found its transaction; the 400-odd trace lines are not kept at all.
    assert db.scalar(select(func.count()).select_from(SmtpDialogueLine)) == len(DELIVERED) + len(REFUSED)
    assert db.scalar(select(func.count()).select_from(UnparsedLogLine)) == 0


def test_a_dialogue_read_in_two_runs_still_joins_its_transaction(db: Session, tmp_path: Path) -> None:
    lines = (FIXTURES / "dialogue.log").read_text().splitlines(keepends=True)
    named = next(i for i, line in enumerate(lines) if ": 4jZVKg4ZFCzJJQ3: client=" in line)
    path = tmp_path / "postfix.log"
    path.write_text("".join(lines[:named]))  # the session so far; its transaction not yet named
    ingest_file(db, path, reference=REFERENCE)
    assert db.scalar(select(func.count()).select_from(SmtpDialogueLine)) == 15
    with path.open("a") as live:
        live.write("".join(lines[named:]))
    ingest_file(db, path, reference=REFERENCE, batch_lines=3)
    assert _dialogue(db, _by_queue_id(db, "4jZVKg4ZFCzJJQ3")) == DELIVERED
    assert _dialogue(db, _refused(db, "nobody@p.test")) == REFUSED


AUTH_SESSION = """\
Nov 25 20:00:00 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 220 mail.letterhead.test ESMTP
Nov 25 20:00:00 mail postfix/smtpd[700]: < c.example[192.0.2.7]: EHLO c.example
Nov 25 20:00:00 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 250 AUTH PLAIN LOGIN
Nov 25 20:00:00 mail postfix/smtpd[700]: < c.example[192.0.2.7]: AUTH PLAIN AGFsaWNlQGEudGVzdABodW50ZXIy
Nov 25 20:00:00 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 535 5.7.8 Error: authentication failed
Nov 25 20:00:01 mail postfix/smtpd[700]: < c.example[192.0.2.7]: AUTH LOGIN
Nov 25 20:00:01 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 334 VXNlcm5hbWU6
Nov 25 20:00:01 mail postfix/smtpd[700]: < c.example[192.0.2.7]: YWxpY2VAYS50ZXN0
Nov 25 20:00:01 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 334 UGFzc3dvcmQ6
Nov 25 20:00:01 mail postfix/smtpd[700]: < c.example[192.0.2.7]: aHVudGVyMg==
Nov 25 20:00:01 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 235 2.7.0 Authentication successful
Nov 25 20:00:02 mail postfix/smtpd[700]: < c.example[192.0.2.7]: MAIL FROM:<alice@a.test>
Nov 25 20:00:02 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 250 2.1.0 Ok
Nov 25 20:00:02 mail postfix/smtpd[700]: < c.example[192.0.2.7]: RCPT TO:<bob@b.example>
Nov 25 20:00:02 mail postfix/smtpd[700]: 7AAAAAAAAAA: client=c.example[192.0.2.7], sasl_method=LOGIN, sasl_username=alice@a.test
Nov 25 20:00:02 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 250 2.1.5 Ok
Nov 25 20:00:02 mail postfix/smtpd[700]: < c.example[192.0.2.7]: DATA
Nov 25 20:00:02 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 354 End data with <CR><LF>.<CR><LF>
Nov 25 20:00:02 mail postfix/smtpd[700]: < c.example[192.0.2.7]: Subject: the secret merger
Nov 25 20:00:02 mail postfix/smtpd[700]: > c.example[192.0.2.7]: 250 2.0.0 Ok: queued as 7AAAAAAAAAA
"""


def test_credentials_and_message_content_never_reach_the_database(db: Session, tmp_path: Path) -> None:
    path = tmp_path / "postfix.log"
    path.write_text(AUTH_SESSION)
    ingest_file(db, path, reference=REFERENCE)
    stored = _dialogue(db, _by_queue_id(db, "7AAAAAAAAAA"))
    assert stored[3:11] == [
        ("<", f"AUTH PLAIN {REDACTED}"),
        (">", "535 5.7.8 Error: authentication failed"),
        ("<", "AUTH LOGIN"),
        (">", f"334 {REDACTED}"),
        ("<", REDACTED),
        (">", f"334 {REDACTED}"),
        ("<", REDACTED),
        (">", "235 2.7.0 Authentication successful"),
    ]
    assert stored[-2] == ("<", REDACTED)  # a content line, had it been logged
    everything = " ".join(db.scalars(select(SmtpDialogueLine.text)))
    for secret in ("AGFsaWNl", "YWxpY2VAYS50ZXN0", "aHVudGVyMg", "VXNlcm5hbWU6", "merger"):
        assert secret not in everything


def test_redaction_keeps_commands_and_replies_and_nothing_else() -> None:
    assert redact("<", "rcpt TO:<a@b.test>", answers_challenge=False) == "rcpt TO:<a@b.test>"
    assert redact("<", "auth plain dXNlcgBwYXNz", answers_challenge=False) == f"auth plain {REDACTED}"
    assert redact("<", "dXNlcgBwYXNz", answers_challenge=False) == REDACTED
    assert redact("<", "QUIT", answers_challenge=True) == REDACTED
    assert redact("<", "", answers_challenge=False) == REDACTED
    assert redact(">", "250 2.1.5 Ok", answers_challenge=False) == "250 2.1.5 Ok"


def test_a_session_without_a_transaction_stays_unattached_and_does_not_join_the_next(
    db: Session, tmp_path: Path
) -> None:
    probe = (
        "Nov 25 19:00:00 mail postfix/smtpd[8288]: > scan.example[198.51.100.1]: 220 mail.letterhead.test ESMTP\n"
        "Nov 25 19:00:00 mail postfix/smtpd[8288]: < scan.example[198.51.100.1]: EHLO scanner\n"
        "Nov 25 19:00:00 mail postfix/smtpd[8288]: < scan.example[198.51.100.1]: QUIT\n"
    )
    path = tmp_path / "postfix.log"
    path.write_text(probe)
    ingest_file(db, path, reference=REFERENCE)
    with path.open("a") as live:
        live.write((FIXTURES / "dialogue.log").read_text())
    ingest_file(db, path, reference=REFERENCE)
    assert _dialogue(db, _by_queue_id(db, "4jZVKg4ZFCzJJQ3")) == DELIVERED
    orphans = db.scalars(select(SmtpDialogueLine.text).where(SmtpDialogueLine.transaction_id.is_(None))).all()
    assert orphans == ["220 mail.letterhead.test ESMTP", "EHLO scanner", "QUIT"]


def test_the_220_that_answers_starttls_does_not_start_a_new_session(db: Session, tmp_path: Path) -> None:
    prefix = "Nov 25 20:10:00 mail postfix/smtpd[701]: "
    lines = [
        "> c.example[192.0.2.8]: 220 mail.letterhead.test ESMTP",
        "< c.example[192.0.2.8]: EHLO c.example",
        "> c.example[192.0.2.8]: 250 STARTTLS",
        "< c.example[192.0.2.8]: STARTTLS",
        "> c.example[192.0.2.8]: 220 2.0.0 Ready to start TLS",
        "< c.example[192.0.2.8]: EHLO c.example",
        "> c.example[192.0.2.8]: 250 SIZE 10240000",
        "< c.example[192.0.2.8]: MAIL FROM:<s@c.example>",
        "> c.example[192.0.2.8]: 250 2.1.0 Ok",
        "< c.example[192.0.2.8]: RCPT TO:<x@elsewhere.example>",
        "NOQUEUE: reject: RCPT from c.example[192.0.2.8]: 554 5.7.1 <x@elsewhere.example>: Relay access denied; "
        "from=<s@c.example> to=<x@elsewhere.example> proto=ESMTP helo=<c.example>",
        "> c.example[192.0.2.8]: 554 5.7.1 <x@elsewhere.example>: Relay access denied",
    ]
    path = tmp_path / "postfix.log"
    path.write_text("".join(prefix + line + "\n" for line in lines))
    ingest_file(db, path, reference=REFERENCE)
    transaction = _refused(db, "x@elsewhere.example")
    assert [text for _, text in _dialogue(db, transaction)] == [
        line.split(": ", 1)[1] for line in lines if not line.startswith("NOQUEUE")
    ]
    assert transaction.recipients[0].reason == "relay denied"
