"""Alerts a domain's admins ask for: a mail when mail to or from the domain bounced or was refused
more than N times within an hour, or when one of its mailboxes passes 95% of its storage.

The periodic runner asks `due_alerts` every few minutes and sends what it returns from the
platform's postmaster address (runners/periodic.py). An alert goes to an address of the domain
itself (one of its mailboxes or aliases), so the platform never mails anyone else on an admin's
word. A bounce alert is sent at most once an hour; a mailbox's storage alert once, and again only
after it fell below 90% and passed 95% anew.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter

from sqlalchemy import delete, select, union
from sqlalchemy.orm import Session

from controlplane.daemons import usage
from controlplane.errors import ValidationError
from controlplane.models import (
    Alias,
    Domain,
    DomainAlert,
    Mailbox,
    MailboxStorageAlert,
    MailRecipientResult,
    MailTransaction,
)
from controlplane.services import audit, scope
from controlplane.services.scope import Actor
from controlplane.services.storage import format_bytes
from controlplane.settings import Settings

STORAGE_ALERT_PERCENT = 95
STORAGE_REARM_PERCENT = 90
BOUNCE_WINDOW = dt.timedelta(hours=1)
MAX_THRESHOLD = 1_000_000
FAILED_OUTCOMES = ("bounced", "refused", "expired")
QUEUE_LIFETIME = dt.timedelta(days=6)


@dataclasses.dataclass(frozen=True)
class AlertSettings:
    recipient: str
    bounce_threshold: int | None
    storage_warning: bool


def get_alerts(session: Session, actor: Actor, domain: Domain) -> AlertSettings | None:
    scope.require_domain(actor, domain)
    row = session.get(DomainAlert, domain.id)
    return AlertSettings(row.recipient, row.bounce_threshold, row.storage_warning) if row else None


def set_alerts(
    session: Session,
    actor: Actor,
    domain: Domain,
    *,
    recipient: str,
    bounce_threshold: int | None,
    storage_warning: bool,
) -> AlertSettings:
    """Turn the domain's alerts on or off; `recipient` must be one of the domain's addresses."""
    scope.require_domain(actor, domain)
    recipient = recipient.strip().lower()
    local_part, _, domain_name = recipient.rpartition("@")
    if domain_name != domain.name or not local_part:
        raise ValidationError(
            f"Alerts go to an address of {domain.name} (a mailbox or an alias).", field="recipient"
        )
    exists = session.scalar(
        select(Mailbox.id).where(Mailbox.domain_id == domain.id, Mailbox.local_part == local_part)
    ) or session.scalar(select(Alias.id).where(Alias.domain_id == domain.id, Alias.local_part == local_part))
    if not exists:
        raise ValidationError(
            f"{recipient} is neither a mailbox nor an alias of {domain.name}.", field="recipient"
        )
    if bounce_threshold is not None and not 0 <= bounce_threshold <= MAX_THRESHOLD:
        raise ValidationError(
            f"The threshold is a number of messages from 0 to {MAX_THRESHOLD}.", field="bounce_threshold"
        )
    row = session.get(DomainAlert, domain.id)
    if bounce_threshold is None and not storage_warning:
        if row is not None:
            session.delete(row)
    else:
        if row is None:
            row = DomainAlert(domain_id=domain.id)
            session.add(row)
        row.recipient, row.bounce_threshold, row.storage_warning = (
            recipient,
            bounce_threshold,
            storage_warning,
        )
    session.flush()
    audit.record(
        session, actor, action="domain.alerts", target=domain.name, tenant_id=domain.tenant_id, domain_id=domain.id,
        details={"recipient": recipient, "bounce_threshold": bounce_threshold, "storage_warning": storage_warning},
    )  # fmt: skip
    return AlertSettings(recipient, bounce_threshold, storage_warning)


# --- what the periodic runner sends ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Notice:
    recipient: str
    subject: str
    body: str
    domain_id: int
    mailbox_id: int | None = None  # a storage alert's mailbox; None for a bounce alert


def due_alerts(session: Session, settings: Settings, now: dt.datetime | None = None) -> list[Notice]:
    """The alerts due now. Each is recorded with `mark_sent` once it was handed over, so one that
    cannot be sent is tried again at the next run and holds up no other."""
    now = now or dt.datetime.now(dt.UTC)
    notices: list[Notice] = []
    for alert, domain in session.execute(
        select(DomainAlert, Domain).join(Domain, Domain.id == DomainAlert.domain_id)
    ):
        if alert.bounce_threshold is not None:
            notice = _bounce_notice(session, settings, alert, domain, now)
            if notice is not None:
                notices.append(notice)
        if alert.storage_warning:
            notices += _storage_notices(session, settings, alert, domain, now)
    session.flush()
    return notices


def mark_sent(session: Session, notice: Notice, now: dt.datetime | None = None) -> None:
    now = now or dt.datetime.now(dt.UTC)
    if notice.mailbox_id is None:
        alert = session.get(DomainAlert, notice.domain_id)
        if alert is not None:
            alert.last_bounce_alert_at = now
    elif session.get(MailboxStorageAlert, notice.mailbox_id) is None:
        session.add(MailboxStorageAlert(mailbox_id=notice.mailbox_id, alerted_at=now))
    session.flush()


def _bounce_notice(
    session: Session, settings: Settings, alert: DomainAlert, domain: Domain, now: dt.datetime
) -> Notice | None:
    last = alert.last_bounce_alert_at
    if last is not None and now - last < BOUNCE_WINDOW:
        return None
    since = max(now - BOUNCE_WINDOW, last) if last is not None else now - BOUNCE_WINDOW
    # Two indexed reads, not one OR across both tables (which would scan every recipient ever
    # logged): recipients in the domain by (domain_id, time), and recipients of mail the domain
    # sent, by sender domain among transactions recent enough to bounce now (the queue gives up
    # after 5 days).
    failing = MailRecipientResult.outcome.in_(FAILED_OUTCOMES)
    to_domain = select(MailRecipientResult.id).where(
        MailRecipientResult.domain_id == domain.id, MailRecipientResult.time >= since, failing
    )
    from_domain = (
        select(MailRecipientResult.id)
        .join(MailTransaction, MailTransaction.id == MailRecipientResult.transaction_id)
        .where(
            MailTransaction.sender_domain_id == domain.id,
            MailTransaction.time >= since - QUEUE_LIFETIME,
            MailRecipientResult.time >= since,
            failing,
        )
    )
    failed = session.execute(
        select(MailRecipientResult.recipient, MailRecipientResult.reason).where(
            MailRecipientResult.id.in_(union(to_domain, from_domain))
        )
    ).all()
    if len(failed) <= (alert.bounce_threshold or 0):
        return None
    reasons = Counter(reason or "no reason given" for _, reason in failed)
    lines = "\n".join(f"  {count} × {reason}" for reason, count in reasons.most_common(10))
    return Notice(
        domain_id=domain.id,
        recipient=alert.recipient,
        subject=f"{len(failed)} messages to or from {domain.name} bounced or were refused in the last hour",
        body=(
            f"In the hour up to {now:%Y-%m-%d %H:%M} UTC, {len(failed)} recipients of mail to or from "
            f"{domain.name} bounced or were refused (you asked to be told above {alert.bounce_threshold}).\n\n"
            f"Why:\n{lines}\n\n"
            f"Each message's story: https://{settings.hostname}/admin/logs/story (type the address).\n"
            "You are told at most once an hour. Change this in the domain's page of the admin panel.\n"
        ),
    )


def _storage_notices(
    session: Session, settings: Settings, alert: DomainAlert, domain: Domain, now: dt.datetime
) -> list[Notice]:
    mailboxes = list(session.scalars(select(Mailbox).where(Mailbox.domain_id == domain.id)))
    used = usage.usage_of_mailboxes(settings, mailboxes)
    alerted = set(
        session.scalars(
            select(MailboxStorageAlert.mailbox_id).where(
                MailboxStorageAlert.mailbox_id.in_([mailbox.id for mailbox in mailboxes])
            )
        )
    )
    notices = []
    for mailbox in mailboxes:
        measured = used.get(mailbox.address)
        if measured is None or not mailbox.quota_bytes:
            continue
        percent = 100 * measured.bytes / mailbox.quota_bytes
        if mailbox.id in alerted:
            if percent < STORAGE_REARM_PERCENT:
                session.execute(
                    delete(MailboxStorageAlert).where(MailboxStorageAlert.mailbox_id == mailbox.id)
                )
            continue
        if percent < STORAGE_ALERT_PERCENT:
            continue
        notices.append(
            Notice(
                domain_id=domain.id,
                mailbox_id=mailbox.id,
                recipient=alert.recipient,
                subject=f"{mailbox.address} is {percent:.0f}% full",
                body=(
                    f"The mailbox {mailbox.address} holds {format_bytes(measured.bytes)} of its "
                    f"{format_bytes(mailbox.quota_bytes)} ({percent:.0f}%). Once it is full, mail to it "
                    "is refused. Raise its storage in the admin panel, or ask its user to delete old or "
                    "large messages.\n\nYou are told once; again only after it fell below "
                    f"{STORAGE_REARM_PERCENT}% and filled up anew.\n"
                ),
            )
        )
    return notices
