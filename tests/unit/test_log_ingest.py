from __future__ import annotations

import datetime as dt
import gc
import gzip
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.logs import ingest as ingest_module
from controlplane.logs.ingest import ingest_file
from controlplane.logs.search_indexes import no_mail_daemons
from controlplane.models import (
    AuthEvent,
    LogCheckpoint,
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    UnparsedLogLine,
)
from tests.factories import make_domain, make_mailbox

FIXTURES = Path(__file__).parent.parent / "fixtures" / "logs"
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


class Killed(BaseException):
    """Like the process dying: not an error ingestion may catch and carry on from."""


def _ingest_fixture(db: Session, tmp_path: Path, name: str = "postfix.log", **kwargs):
    path = tmp_path / name
    shutil.copy(FIXTURES / name, path)
    return path, ingest_file(db, path, reference=REFERENCE, **kwargs)


def _transaction(db: Session, message_id: str) -> MailTransaction:
    return db.scalars(select(MailTransaction).where(MailTransaction.message_id == message_id)).one()


def _outcomes(transaction: MailTransaction) -> dict[str, tuple[str, str]]:
    return {r.recipient: (r.outcome, r.reason) for r in transaction.recipients}


def _counts(db: Session) -> tuple[int, ...]:
    models = (MailTransaction, MailQueueEntry, MailRecipientResult, AuthEvent, UnparsedLogLine)
    return tuple(db.scalar(select(func.count()).select_from(model)) for model in models)


def test_delivered_message_has_client_sender_size_and_recipient(db: Session, tmp_path: Path) -> None:
    domain = make_domain(db, name="a.test")
    _ingest_fixture(db, tmp_path)
    transaction = _transaction(db, "delivered-1@client.example")
    assert (transaction.client_name, transaction.client_ip, transaction.sender, transaction.size) == (
        "client.example",
        "192.0.2.10",
        "bob@client.example",
        812,
    )
    assert [e.queue_id for e in transaction.queue_entries] == ["B8F9120C127"]
    assert transaction.finished_at is not None
    [recipient] = transaction.recipients
    assert (recipient.outcome, recipient.status_code, recipient.domain_id) == (
        "delivered",
        "250 2.0.0",
        domain.id,
    )


def test_alias_fan_out_records_each_recipient_with_its_own_outcome(db: Session, tmp_path: Path) -> None:
    _ingest_fixture(db, tmp_path)
    transaction = _transaction(db, "alias-2@client.example")
    assert _outcomes(transaction) == {
        # Delivered into alice's mailbox here through the alias info@: delivered, not forwarded.
        "alice@a.test": ("delivered", ""),
        "carol@a.test": ("bounced", "mailbox full"),
    }
    assert {r.orig_to for r in transaction.recipients} == {"info@a.test"}


def test_noqueue_rejects_are_transactions_of_their_own(db: Session, tmp_path: Path) -> None:
    _ingest_fixture(db, tmp_path)
    refused = db.scalars(
        select(MailRecipientResult)
        .where(MailRecipientResult.outcome == "refused")
        .order_by(MailRecipientResult.id)
    ).all()
    assert [(r.recipient, r.status_code, r.reason) for r in refused] == [
        ("nobody@a.test", "550 5.1.1", "recipient not found"),
        ("x@elsewhere.example", "554 5.7.1", "relay denied"),
        ("carol@a.test", "554 5.7.1", "authentication required"),
    ]
    assert refused[0].transaction.helo == "client.example"
    assert refused[0].transaction.sender == "bob@client.example"


def test_a_refusal_of_an_ipv6_client_is_stored_with_its_address(db: Session, tmp_path: Path) -> None:
    # Postfix writes an IPv6 client as name[2001:db8::7], colons inside the brackets.
    path = tmp_path / "mail.log"
    path.write_text(
        "Nov 24 00:19:40 mail postfix/smtpd[9470]: NOQUEUE: reject: RCPT from unknown[2001:db8::7]: 554 5.7.1 "
        "<x@elsewhere.example>: Relay access denied; from=<b@c.example> to=<x@elsewhere.example> "
        "proto=ESMTP helo=<[IPv6:2001:db8::7]>\n"
    )
    ingest_file(db, path, reference=REFERENCE)
    refused = db.scalars(select(MailRecipientResult)).one()
    assert (refused.recipient, refused.outcome, refused.status_code, refused.reason) == (
        "x@elsewhere.example",
        "refused",
        "554 5.7.1",
        "relay denied",
    )
    transaction = refused.transaction
    assert (transaction.client_name, transaction.client_ip, transaction.helo, transaction.sender) == (
        "unknown",
        "2001:db8::7",
        "[IPv6:2001:db8::7]",
        "b@c.example",
    )
    assert db.scalar(select(func.count()).select_from(UnparsedLogLine)) == 0


def test_deferred_then_relayed_keeps_one_recipient_row_with_two_attempts(db: Session, tmp_path: Path) -> None:
    _ingest_fixture(db, tmp_path)
    transaction = _transaction(db, "deferred-3@a.test")
    [recipient] = transaction.recipients
    assert (recipient.outcome, recipient.attempts, recipient.relay) == (
        "relayed",
        2,
        "mx.remote.example[192.0.2.50]:25",
    )
    assert transaction.sasl_user == "alice@a.test"


def test_a_message_still_deferred_at_queue_lifetime_is_expired(db: Session, tmp_path: Path) -> None:
    _ingest_fixture(db, tmp_path)
    [recipient] = _transaction(db, "expired-4@a.test").recipients
    assert recipient.outcome == "expired"
    assert recipient.reason.startswith("gave up")


def test_reinjection_after_a_content_filter_continues_the_same_transaction(
    db: Session, tmp_path: Path
) -> None:
    _ingest_fixture(db, tmp_path)
    transaction = _transaction(db, "filtered-5@client.example")
    assert [e.queue_id for e in transaction.queue_entries] == ["A1B2C3D4E5F", "0F1E2D3C4B5"]
    assert transaction.client_ip == "192.0.2.10"
    [recipient] = transaction.recipients
    assert (recipient.outcome, recipient.queue_id) == ("delivered", "0F1E2D3C4B5")
    assert transaction.finished_at is not None


def test_unparsed_lines_are_counted_and_kept(db: Session, tmp_path: Path) -> None:
    _, result = _ingest_fixture(db, tmp_path)
    kept = db.scalars(select(UnparsedLogLine.line)).all()
    assert result.unparsed == len(kept) == 3
    assert "garbage line without any timestamp" in kept


def test_a_junk_filing_line_that_is_not_one_is_kept_once(db: Session, tmp_path: Path) -> None:
    # Names Dovecot's Junk filing but is none (no LMTP session) and carries no timestamp.
    path = tmp_path / "odd.log"
    path.write_text("lmtp: stored mail into mailbox 'Junk' by someone\n")
    result = ingest_file(db, path, reference=REFERENCE)
    kept = db.scalars(select(UnparsedLogLine.line)).all()
    assert result.unparsed == len(kept) == 1


def test_logins_from_dovecot_and_postfix_become_auth_events(db: Session, tmp_path: Path) -> None:
    domain = make_domain(db, name="a.test")
    make_mailbox(db, domain=domain, local_part="alice")
    db.commit()
    _ingest_fixture(db, tmp_path)
    _ingest_fixture(db, tmp_path, "dovecot.log")
    events = db.scalars(select(AuthEvent).order_by(AuthEvent.time)).all()
    assert [(e.service, e.login, e.client_ip, e.success, e.reason) for e in events] == [
        ("smtp", "alice@a.test", "203.0.113.5", True, ""),
        ("smtp", "", "198.51.100.9", False, "wrong password or unknown user"),
        ("imap", "alice@a.test", "192.0.2.10", True, ""),
        ("imap", "alice@a.test", "198.51.100.9", False, "wrong password or unknown user"),
        ("pop3", "bob@a.test", "192.0.2.11", True, ""),
        ("pop3", "ghost@a.test", "198.51.100.9", False, "wrong password or unknown user"),
    ]
    assert {e.domain_id for e in events if e.login.endswith("@a.test")} == {domain.id}
    assert events[2].network == "192.0.2.0/24"


def test_a_second_run_reads_nothing_twice(db: Session, tmp_path: Path) -> None:
    path, _ = _ingest_fixture(db, tmp_path)
    before = _counts(db)
    again = ingest_file(db, path, reference=REFERENCE)
    assert again.lines == 0
    assert _counts(db) == before


def test_a_crash_mid_file_resumes_without_loss_or_duplicates(
    db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference_path = tmp_path / "reference"
    reference_path.mkdir()
    _ingest_fixture(db, reference_path)
    expected = _counts(db)
    for model in (MailTransaction, AuthEvent, UnparsedLogLine, LogCheckpoint):
        db.execute(model.__table__.delete())
    db.commit()

    real_read = ingest_module._LineReader.read
    calls = 0

    def crash_on_line_20(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 20:
            raise Killed
        return real_read(*args, **kwargs)

    monkeypatch.setattr(ingest_module._LineReader, "read", crash_on_line_20)
    with pytest.raises(Killed):
        _ingest_fixture(db, tmp_path, batch_lines=7)
    db.rollback()
    assert db.scalar(select(LogCheckpoint.offset)) > 0  # two batches were committed
    monkeypatch.setattr(ingest_module._LineReader, "read", real_read)
    ingest_file(db, tmp_path / "postfix.log", reference=REFERENCE, batch_lines=7)
    assert _counts(db) == expected


def test_an_unfinished_last_line_waits_for_its_newline(db: Session, tmp_path: Path) -> None:
    path = tmp_path / "postfix.log"
    line = (FIXTURES / "postfix.log").read_text().splitlines(keepends=True)[14]
    path.write_text(line[:60])
    assert ingest_file(db, path, reference=REFERENCE).lines == 0
    with path.open("a") as stream:
        stream.write(line[60:])
    assert ingest_file(db, path, reference=REFERENCE).lines == 1
    assert db.scalar(select(MailRecipientResult.recipient)) == "nobody@a.test"


def _write_halves(path: Path) -> tuple[str, str]:
    lines = (FIXTURES / "postfix.log").read_text().splitlines(keepends=True)
    first, second = "".join(lines[:20]), "".join(lines[20:])
    path.write_text(first)
    return first, second


def test_rename_rotation_finishes_the_old_file_then_reads_the_new_one(db: Session, tmp_path: Path) -> None:
    reference_path = tmp_path / "reference"
    reference_path.mkdir()
    _ingest_fixture(db, reference_path)
    expected = _counts(db)
    for model in (MailTransaction, AuthEvent, UnparsedLogLine, LogCheckpoint):
        db.execute(model.__table__.delete())
    db.commit()

    path = tmp_path / "postfix.log"
    first, second = _write_halves(path)
    lines = first.splitlines(keepends=True)
    path.write_text("".join(lines[:10]))
    ingest_file(db, path, reference=REFERENCE)
    path.write_text(first)  # written after our read, before the rename
    path.rename(tmp_path / "postfix.log.1")
    path.write_text(second)
    result = ingest_file(db, path, reference=REFERENCE)
    assert result.rotated
    assert _counts(db) == expected


def test_copy_truncate_rotation_reads_the_rest_from_the_copy(db: Session, tmp_path: Path) -> None:
    reference_path = tmp_path / "reference"
    reference_path.mkdir()
    _ingest_fixture(db, reference_path)
    expected = _counts(db)
    for model in (MailTransaction, AuthEvent, UnparsedLogLine, LogCheckpoint):
        db.execute(model.__table__.delete())
    db.commit()

    path = tmp_path / "postfix.log"
    first, second = _write_halves(path)
    path.write_text("".join(first.splitlines(keepends=True)[:10]))
    ingest_file(db, path, reference=REFERENCE)
    path.write_text(first)
    with gzip.open(tmp_path / "postfix.log.1.gz", "wt") as copy:
        copy.write(first)
    with path.open("r+") as live:  # truncate in place: the inode stays the same
        live.truncate(0)
        live.write(second)
    result = ingest_file(db, path, reference=REFERENCE)
    assert result.rotated
    assert _counts(db) == expected


def test_gzip_files_are_read_like_plain_ones(db: Session, tmp_path: Path) -> None:
    reference_path = tmp_path / "reference"
    reference_path.mkdir()
    _ingest_fixture(db, reference_path)
    expected = _counts(db)
    for model in (MailTransaction, AuthEvent, UnparsedLogLine, LogCheckpoint):
        db.execute(model.__table__.delete())
    db.commit()
    path = tmp_path / "postfix.log.2.gz"
    with gzip.open(path, "wb") as stream:
        stream.write((FIXTURES / "postfix.log").read_bytes())
    ingest_file(db, path, reference=REFERENCE)
    assert _counts(db) == expected


def test_a_reused_queue_id_weeks_later_starts_a_new_transaction(db: Session, tmp_path: Path) -> None:
    path = tmp_path / "postfix.log"
    # The first message's "removed" line was lost (say, in a rotation); its entry stays open.
    path.write_text(
        "Nov 01 10:00:00 mail postfix/cleanup[1]: AAAAAA1111: message-id=<old@a.test>\n"
        "Nov 20 10:00:00 mail postfix/cleanup[1]: AAAAAA1111: message-id=<new@a.test>\n"
    )
    ingest_file(db, path, reference=REFERENCE)
    assert sorted(db.scalars(select(MailTransaction.message_id))) == ["new@a.test", "old@a.test"]


def test_a_reject_after_queueing_joins_the_queued_transaction(db: Session, tmp_path: Path) -> None:
    path = tmp_path / "postfix.log"
    path.write_text(
        "Nov 24 01:00:00 mail postfix/smtpd[1]: BBBBBB2222: client=c.example[192.0.2.1]\n"
        "Nov 24 01:00:01 mail postfix/smtpd[1]: BBBBBB2222: reject: RCPT from c.example[192.0.2.1]: 550 5.1.1 "
        "<nobody@a.test>: Recipient address rejected: User unknown in virtual mailbox table; "
        "from=<s@c.example> to=<nobody@a.test> proto=ESMTP helo=<c.example>\n"
    )
    ingest_file(db, path, reference=REFERENCE)
    [transaction] = db.scalars(select(MailTransaction)).all()
    assert [(r.recipient, r.outcome, r.queue_id) for r in transaction.recipients] == [
        ("nobody@a.test", "refused", "BBBBBB2222")
    ]


def _expected_counts(db: Session, tmp_path: Path) -> tuple[int, ...]:
    """The rows the whole fixture makes when read once; the tables are emptied again after."""
    reference_path = tmp_path / "reference"
    reference_path.mkdir()
    _ingest_fixture(db, reference_path)
    expected = _counts(db)
    for model in (MailTransaction, AuthEvent, UnparsedLogLine, LogCheckpoint):
        db.execute(model.__table__.delete())
    db.commit()
    return expected


def test_a_renamed_file_read_under_its_new_name_resumes_where_its_old_name_stopped(
    db: Session, tmp_path: Path
) -> None:
    expected = _expected_counts(db, tmp_path)
    path = tmp_path / "postfix.log"
    first, second = _write_halves(path)
    ingest_file(db, path, reference=REFERENCE)
    with path.open("a") as live:
        live.write(second)  # logged after our read, before the rename
    path.rename(tmp_path / "postfix.log.1")
    result = ingest_file(db, tmp_path / "postfix.log.1", reference=REFERENCE)
    assert result.lines == len(second.splitlines())
    assert _counts(db) == expected
    [checkpoint] = db.scalars(select(LogCheckpoint)).all()
    assert checkpoint.path == str(tmp_path / "postfix.log.1")


def test_the_compressed_copy_of_a_file_read_live_resumes_by_content(db: Session, tmp_path: Path) -> None:
    expected = _expected_counts(db, tmp_path)
    path = tmp_path / "postfix.log"
    first, second = _write_halves(path)
    ingest_file(db, path, reference=REFERENCE)
    with gzip.open(tmp_path / "postfix.log.1.gz", "wt") as copy:
        copy.write(first + second)
    path.unlink()  # logrotate's compress step removes the renamed plain file
    result = ingest_file(db, tmp_path / "postfix.log.1.gz", reference=REFERENCE)
    assert result.lines == len(second.splitlines())
    assert _counts(db) == expected
    assert ingest_file(db, tmp_path / "postfix.log.1.gz", reference=REFERENCE).lines == 0


def test_a_copy_truncated_file_then_its_copy_by_name_store_each_line_once(
    db: Session, tmp_path: Path
) -> None:
    expected = _expected_counts(db, tmp_path)
    path = tmp_path / "postfix.log"
    lines = (FIXTURES / "postfix.log").read_text().splitlines(keepends=True)
    # Split between whole messages: read out of order, a message's lines would be two transactions.
    first, second = "".join(lines[:14]), "".join(lines[14:])
    path.write_text("".join(lines[:7]))
    ingest_file(db, path, reference=REFERENCE)
    path.write_text(first)
    (tmp_path / "elsewhere").write_text(first)  # the copy is not beside the file at the next read
    with path.open("r+") as live:
        live.truncate(0)
        live.write(second)
    assert ingest_file(db, path, reference=REFERENCE).lines == len(lines) - 14
    # The copy turns up later under another name: it resumes after the 7 lines read live.
    assert ingest_file(db, tmp_path / "elsewhere", reference=REFERENCE).lines == 7
    assert _counts(db) == expected
    assert ingest_file(db, path, reference=REFERENCE).lines == 0


def test_a_file_shrunk_below_its_checkpoint_is_read_again_from_its_start(db: Session, tmp_path: Path) -> None:
    path = tmp_path / "postfix.log"
    lines = (FIXTURES / "postfix.log").read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:6]))
    ingest_file(db, path, reference=REFERENCE)
    inode = path.stat().st_ino
    with path.open("r+") as live:
        live.truncate(0)
        live.write(lines[14])  # a NOQUEUE refusal, shorter than what was read
    assert path.stat().st_ino == inode
    result = ingest_file(db, path, reference=REFERENCE)
    assert (result.rotated, result.lines) == (True, 1)
    assert db.scalar(select(func.count()).select_from(MailRecipientResult)) == 2


def test_two_readers_of_one_file_never_both_store_the_same_lines(
    db: Session, installation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controlplane.logs.ingest import ConcurrentRead

    expected = _expected_counts(db, tmp_path)
    path = tmp_path / "postfix.log"
    _, second = _write_halves(path)
    ingest_file(db, path, reference=REFERENCE)
    with path.open("a") as live:
        live.write(second)
    real_read = ingest_module._LineReader.read
    raced = False

    def another_reader_first(*args, **kwargs):
        nonlocal raced
        if not raced:
            raced = True
            monkeypatch.setattr(ingest_module._LineReader, "read", real_read)
            with installation.sessions() as other:
                ingest_file(other, path, reference=REFERENCE)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(ingest_module._LineReader, "read", another_reader_first)
    with pytest.raises(ConcurrentRead):
        ingest_file(db, path, reference=REFERENCE)
    assert _counts(db) == expected
    assert ingest_file(db, path, reference=REFERENCE).lines == 0


@pytest.mark.parametrize("compressed", [False, True])
def test_an_older_shorter_copy_of_a_file_read_further_stores_nothing_again(
    db: Session, tmp_path: Path, compressed: bool
) -> None:
    expected = _expected_counts(db, tmp_path)
    path = tmp_path / "postfix.log"
    first, second = _write_halves(path)
    with path.open("a") as live:
        live.write(second)  # the live file grew past the copy below
    ingest_file(db, path, reference=REFERENCE)
    assert _counts(db) == expected
    # A copy an operator took earlier, while only the first half was written.
    copy = tmp_path / ("postfix.log.old.gz" if compressed else "postfix.log.old")
    if compressed:
        with gzip.open(copy, "wt") as handle:
            handle.write(first)
    else:
        copy.write_text(first)
    assert ingest_file(db, copy, reference=REFERENCE).lines == 0
    assert _counts(db) == expected


SRS_FORWARD = """\
Dec  5 12:05:01 mail postfix/smtpd[100]: 4AAAAAAAAAA: client=client.test[192.0.2.10]
Dec  5 12:05:01 mail postfix/cleanup[101]: 4AAAAAAAAAA: message-id=<srs-1@elsewhere.test>
Dec  5 12:05:01 mail postfix/qmgr[102]: 4AAAAAAAAAA: from=<sender@elsewhere.test>, size=900, nrcpt=1 (queue active)
Dec  5 12:05:01 mail postfix/smtp[103]: 4AAAAAAAAAA: to=<someone@elsewhere.test>, orig_to=<outside@a.test>, \
relay=127.0.0.1[127.0.0.1]:10025, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4BBBBBBBBBB)
Dec  5 12:05:01 mail postfix/internal/smtpd[104]: 4BBBBBBBBBB: client=localhost[127.0.0.1]
Dec  5 12:05:01 mail postfix/cleanup[105]: 4BBBBBBBBBB: message-id=<srs-1@elsewhere.test>
Dec  5 12:05:01 mail postfix/qmgr[102]: 4AAAAAAAAAA: removed
Dec  5 12:05:01 mail postfix/qmgr[102]: 4BBBBBBBBBB: from=<SRS0=abcd=JY=elsewhere.test=sender@mail.example.net>, \
size=1200, nrcpt=1 (queue active)
Dec  5 12:05:02 mail postfix/smtp[106]: 4BBBBBBBBBB: to=<someone@elsewhere.test>, relay=mx.elsewhere.test[192.0.2.50]:25, \
delay=0.2, delays=0/0/0/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)
Dec  5 12:05:02 mail postfix/qmgr[102]: 4BBBBBBBBBB: removed
"""


def test_a_forward_going_round_for_srs_is_one_forwarded_recipient(db: Session, tmp_path: Path) -> None:
    make_domain(db, name="a.test")
    path = tmp_path / "postfix.log"
    path.write_text(SRS_FORWARD)
    ingest_file(db, path, reference=dt.datetime(2026, 12, 6, tzinfo=dt.UTC))
    transaction = _transaction(db, "srs-1@elsewhere.test")
    assert transaction.sender == "sender@elsewhere.test"
    [recipient] = transaction.recipients
    assert (recipient.outcome, recipient.orig_to, recipient.relay, recipient.queue_id) == (
        "forwarded", "outside@a.test", "mx.elsewhere.test[192.0.2.50]:25", "4BBBBBBBBBB",
    )  # fmt: skip
    assert transaction.finished_at is not None


@pytest.mark.parametrize(
    "line",
    [
        b"Nov 10 00:00:04 mail postfix/smtpd[1060]: connect from unknown[198.51.100.8]\n",
        b"Nov  1 00:00:05 mail postfix/submission/smtpd[1061]: disconnect from x[198.51.100.8] ehlo=1 commands=1\n",
        b"2026-11-10T00:00:04.123456+00:00 mail postfix/smtpd[1060]: connect from unknown[198.51.100.8]\n",
    ],
)
def test_smtpds_connect_and_disconnect_lines_are_passed_over(line: bytes) -> None:
    assert ingest_module._SESSION_EDGE.match(line)


def test_a_login_line_that_merely_contains_the_words_is_not_passed_over() -> None:
    line = (
        b"Nov 10 00:00:04 mail dovecot: imap-login: Login failed: user=<x/smtpd[1]: connect from y>, "
        b"method=PLAIN, rip=198.51.100.9, lip=10.0.0.2\n"
    )
    assert not ingest_module._SESSION_EDGE.match(line)


def test_an_import_pauses_the_collector_and_hands_it_back_even_when_it_fails(
    db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(FIXTURES / "postfix.log", tmp_path / "postfix.log")
    collector = _watch_the_collector(monkeypatch, fail_at=30)
    with pytest.raises(Killed):
        ingest_module.ingest_files(db, [tmp_path / "postfix.log"], daemons_reading=no_mail_daemons)
    db.rollback()
    assert min(frozen for frozen, _ in collector) > 1000  # the application's objects, at least
    assert not any(enabled for _, enabled in collector)
    assert gc.get_freeze_count() == 0 and gc.isenabled()  # handed back, although the read failed


def test_a_paused_import_collects_after_each_file_it_commits(db: Session, tmp_path: Path) -> None:
    for name in ("one.log", "two.log"):
        shutil.copy(FIXTURES / "postfix.log", tmp_path / name)
    (tmp_path / "two.log").write_bytes((tmp_path / "two.log").read_bytes().replace(b"Nov ", b"Oct "))
    passes = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(count)
    try:
        ingest_module.ingest_files(
            db, [tmp_path / "one.log", tmp_path / "two.log"], daemons_reading=no_mail_daemons
        )
    finally:
        gc.callbacks.remove(count)
    assert passes.count(2) >= 2  # one full pass at least for each file's last commit


def test_the_followers_reads_leave_the_collector_alone(
    db: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(FIXTURES / "postfix.log", tmp_path / "postfix.log")
    collector = _watch_the_collector(monkeypatch)
    ingest_file(db, tmp_path / "postfix.log", reference=REFERENCE)
    assert collector and all(state == (0, True) for state in collector)


def _watch_the_collector(monkeypatch: pytest.MonkeyPatch, fail_at: int = 0) -> list[tuple[int, bool]]:
    """(objects frozen, collector enabled) at each line read past the scan from now on."""
    real_read = ingest_module._LineReader.read
    seen: list[tuple[int, bool]] = []

    def read_and_look(self, raw, scanned):
        seen.append((gc.get_freeze_count(), gc.isenabled()))
        if len(seen) == fail_at:
            raise Killed
        return real_read(self, raw, scanned)

    monkeypatch.setattr(ingest_module._LineReader, "read", read_and_look)
    return seen
