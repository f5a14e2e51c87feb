"""How long the mail logs are kept: older records are deleted, by day, for every tenant alike."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import CursorResult, Delete, delete, select
from sqlalchemy.orm import Session

from controlplane.errors import ValidationError
from controlplane.models import (
    AuthEvent,
    DmarcRecord,
    DmarcReport,
    LogCheckpoint,
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    SmtpDialogueLine,
    TlsReport,
    TlsReportFailure,
    UnparsedLogLine,
)
from controlplane.services import scope
from controlplane.services.scope import Actor

MAX_RETENTION_DAYS = 36_500


@dataclass(frozen=True)
class PurgeResult:
    cutoff: dt.datetime
    transactions: int
    dialogue_lines: int
    logins: int
    unparsed_lines: int
    # DMARC and TLS reports whose period ended before the cut: anyone can mail reports, so
    # without a limit they would grow for ever.
    reports: int = 0


def purge_expired_logs(
    session: Session, actor: Actor, *, retention_days: int, now: dt.datetime | None = None
) -> PurgeResult:
    """Records older than `retention_days` are deleted: mail transactions with their queue
    entries, recipients and SMTP dialogue, dialogue of sessions that made no transaction,
    login attempts of every service, unparsed log lines, and DMARC and TLS reports.

    Raises NotInScope (the operator's alone), ValidationError.
    """
    scope.require_operator(actor)
    if not isinstance(retention_days, int) or not 1 <= retention_days <= MAX_RETENTION_DAYS:
        raise ValidationError(
            f"The log retention must be a whole number of days from 1 to {MAX_RETENTION_DAYS}.",
            field="log_retention_days",
        )
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=retention_days)
    expired = select(MailTransaction.id).where(MailTransaction.time < cutoff)
    # The children explicitly, not through ON DELETE CASCADE: a connection without SQLite's
    # foreign_keys pragma would otherwise leave them behind.
    session.flush()
    dialogue = _delete(
        session,
        delete(SmtpDialogueLine).where(
            (SmtpDialogueLine.transaction_id.in_(expired))
            | (SmtpDialogueLine.transaction_id.is_(None) & (SmtpDialogueLine.time < cutoff))
        ),
    )
    _delete(session, delete(MailRecipientResult).where(MailRecipientResult.transaction_id.in_(expired)))
    _delete(session, delete(MailQueueEntry).where(MailQueueEntry.transaction_id.in_(expired)))
    transactions = _delete(session, delete(MailTransaction).where(MailTransaction.time < cutoff))
    logins = _delete(session, delete(AuthEvent).where(AuthEvent.time < cutoff))
    unparsed = _delete(session, delete(UnparsedLogLine).where(UnparsedLogLine.time < cutoff))
    old_dmarc = select(DmarcReport.id).where(DmarcReport.ends_at < cutoff)
    _delete(session, delete(DmarcRecord).where(DmarcRecord.dmarc_report_id.in_(old_dmarc)))
    reports = _delete(session, delete(DmarcReport).where(DmarcReport.ends_at < cutoff))
    old_tls = select(TlsReport.id).where(TlsReport.ends_at < cutoff)
    _delete(session, delete(TlsReportFailure).where(TlsReportFailure.tls_report_id.in_(old_tls)))
    reports += _delete(session, delete(TlsReport).where(TlsReport.ends_at < cutoff))
    # Checkpoints of rotated-away copies (no longer tied to a file) that nothing read since:
    # a copy that old would only bring back records just purged.
    _delete(
        session, delete(LogCheckpoint).where(LogCheckpoint.inode.is_(None), LogCheckpoint.updated_at < cutoff)
    )
    return PurgeResult(cutoff, transactions, dialogue, logins, unparsed, reports)


def _delete(session: Session, statement: Delete) -> int:
    # Rows are not loaded to be deleted one by one: millions may expire on the first run.
    result = session.execute(statement.execution_options(synchronize_session=False))
    return result.rowcount if isinstance(result, CursorResult) else 0
