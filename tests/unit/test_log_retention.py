"""Retention: records older than log_retention_days are purged with everything hanging off them."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import cli
from controlplane.errors import NotInScope, ValidationError
from controlplane.logs.ingest import ingest_file
from controlplane.models import (
    AuthEvent,
    DmarcRecord,
    DmarcReport,
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    SmtpDialogueLine,
    UnparsedLogLine,
)
from controlplane.runners.follower import DailyPurge
from controlplane.services import dmarc_reports
from controlplane.services.log_retention import purge_expired_logs
from controlplane.services.scope import OPERATOR, tenant_admin
from controlplane.settings import load_settings
from tests.factories import make_domain, make_tenant
from tests.unit.services.test_dmarc_reports import report_mail, report_xml

FIXTURES = Path(__file__).parent.parent / "fixtures" / "logs"
REFERENCE = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
MODELS = (MailTransaction, MailQueueEntry, MailRecipientResult, SmtpDialogueLine, AuthEvent, UnparsedLogLine)


def _counts(db: Session) -> dict[str, int]:
    return {model.__name__: db.scalar(select(func.count()).select_from(model)) for model in MODELS}


@pytest.fixture
def ingested(db: Session, tmp_path: Path) -> dict[str, int]:
    """Nov 24 (postfix.log, dovecot.log) and Nov 25 (dialogue.log) 2026, every kind of row."""
    for name in ("postfix.log", "dovecot.log", "dialogue.log"):
        shutil.copy(FIXTURES / name, tmp_path / name)
        ingest_file(db, tmp_path / name, reference=REFERENCE)
    counts = _counts(db)
    assert all(counts.values()), counts
    return counts


def test_nothing_younger_than_the_retention_is_purged(db: Session, ingested: dict[str, int]) -> None:
    result = purge_expired_logs(db, OPERATOR, retention_days=10, now=REFERENCE)
    assert (result.transactions, result.logins, result.dialogue_lines) == (0, 0, 0)
    assert _counts(db) == ingested


def test_older_records_are_purged_with_their_recipients_queue_entries_and_dialogue(
    db: Session, ingested: dict[str, int]
) -> None:
    # The cut falls between Nov 24 (postfix.log, dovecot.log) and Nov 25 (dialogue.log).
    now = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC) + dt.timedelta(days=90)
    result = purge_expired_logs(db, OPERATOR, retention_days=90, now=now)
    db.commit()
    remaining = _counts(db)
    assert remaining["MailTransaction"] == 2  # the delivered and the refused one of Nov 25
    assert remaining["MailTransaction"] + result.transactions == ingested["MailTransaction"]
    assert remaining["SmtpDialogueLine"] == ingested["SmtpDialogueLine"] == 27
    kept_ids = set(db.scalars(select(MailTransaction.id)))
    for model in (MailQueueEntry, MailRecipientResult, SmtpDialogueLine):
        assert set(db.scalars(select(model.transaction_id))) <= kept_ids, model.__name__
    assert remaining["AuthEvent"] == 0 and result.logins == ingested["AuthEvent"]
    assert db.scalar(select(func.min(MailTransaction.time))) >= result.cutoff

    everything = purge_expired_logs(db, OPERATOR, retention_days=1, now=now)
    assert everything.dialogue_lines == 27
    assert set(_counts(db).values()) == {0}


def test_dialogue_of_a_session_that_made_no_transaction_is_purged_by_its_own_time(
    db: Session, tmp_path: Path
) -> None:
    path = tmp_path / "postfix.log"
    path.write_text(
        "Nov 25 19:00:00 mail postfix/smtpd[1]: > scan.example[198.51.100.1]: 220 mail.letterhead.test ESMTP\n"
        "Nov 25 19:00:00 mail postfix/smtpd[1]: < scan.example[198.51.100.1]: QUIT\n"
    )
    ingest_file(db, path, reference=REFERENCE)
    assert purge_expired_logs(db, OPERATOR, retention_days=5, now=REFERENCE).dialogue_lines == 0
    assert purge_expired_logs(db, OPERATOR, retention_days=4, now=REFERENCE).dialogue_lines == 2


def test_only_the_operator_purges_and_only_whole_positive_days(db: Session, ingested: dict[str, int]) -> None:
    tenant = make_tenant(db, name="Reseller")
    with pytest.raises(NotInScope):
        purge_expired_logs(db, tenant_admin(tenant.id), retention_days=1, now=REFERENCE)
    for bad in (0, -3, 10**9):
        with pytest.raises(ValidationError):
            purge_expired_logs(db, OPERATOR, retention_days=bad, now=REFERENCE)
    assert _counts(db) == ingested


def test_the_retention_setting_defaults_to_90_days_and_is_read_from_the_environment(tmp_path: Path) -> None:
    assert load_settings(environ={}, home=tmp_path).log_retention_days == 90
    assert (
        load_settings(environ={"LETTERHEAD_LOG_RETENTION_DAYS": "30"}, home=tmp_path).log_retention_days == 30
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_follower_purges_when_it_starts_then_once_a_day(installation, tmp_path: Path) -> None:
    clock = FakeClock()
    purge = DailyPurge(installation, 90, clock=clock)
    assert purge.run_if_due() is not None
    clock.now += 23 * 3600
    assert purge.run_if_due() is None
    clock.now += 3600
    assert purge.run_if_due() is not None


def test_cli_purge_prints_what_it_deleted(settings, installation, tmp_path: Path) -> None:
    log = tmp_path / "postfix.log"
    # Postfix's own maillog_file format carries the year: these lines are years old whatever today is.
    log.write_text(
        "2020-01-06T10:00:00.000000+00:00 mail postfix/smtpd[1]: NOQUEUE: reject: RCPT from c.example[192.0.2.1]: "
        "550 5.1.1 <nobody@a.test>: Recipient address rejected: User unknown in virtual mailbox table; "
        "from=<s@c.example> to=<nobody@a.test> proto=ESMTP helo=<c.example>\n"
    )
    env = {"LETTERHEAD_HOME": str(settings.home)}
    runner = CliRunner()
    assert runner.invoke(cli.main, ["logs", "ingest", str(log)], env=env).exit_code == 0
    refused = runner.invoke(cli.main, ["logs", "purge", "--days", "0"], env=env)
    assert refused.exit_code == 1
    assert "whole number of days from 1" in refused.stderr
    kept = runner.invoke(cli.main, ["logs", "purge", "--days", "36500", "--json"], env=env)
    assert (kept.exit_code, json.loads(kept.stdout)["transactions"]) == (0, 0), kept.output
    purged = runner.invoke(cli.main, ["logs", "purge", "--days", "365"], env=env)
    assert purged.exit_code == 0, purged.output
    header, row = purged.stdout.splitlines()
    assert header.split() == [
        "BEFORE",
        "TRANSACTIONS",
        "DIALOGUE_LINES",
        "LOGINS",
        "UNPARSED_LINES",
        "REPORTS",
    ]
    assert row.split()[1:] == ["1", "0", "0", "0", "0"]
    with installation.sessions() as session:
        assert session.scalar(select(func.count()).select_from(MailTransaction)) == 0


def test_dmarc_and_tls_reports_older_than_the_retention_are_purged(db: Session) -> None:
    make_domain(db, name="own.test")
    now = dt.datetime.now(dt.UTC)
    for report_id, days_ago in (("old", 40), ("new", 2)):
        xml = report_xml(report_id=report_id, begin=now - dt.timedelta(days=days_ago))
        dmarc_reports.receive_message(db, report_mail(xml, "r.xml", "text/xml"))
    result = purge_expired_logs(db, OPERATOR, retention_days=30, now=now)
    assert result.reports == 1
    assert list(db.scalars(select(DmarcReport.report_id))) == ["new"]
    assert db.scalar(select(func.count()).select_from(DmarcRecord)) == 2
