"""Searching what the mail logs recorded: SMTP transactions and mail-service logins, in scope.

A transaction belongs to the domains it touched: its sender's and each recipient's. A domain
admin sees transactions to or from their domain, but of a message they only received, only the
recipients in their own domain; full admins the same over all their tenant's domains; the
operator everything, including mail for domains that are not ours.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, exists, false, func, or_, select, union, update
from sqlalchemy.orm import Session, selectinload

from controlplane.errors import NotFound, ValidationError
from controlplane.logs.rspamd import verdict_words
from controlplane.models import (
    AuditEntry,
    AuthEvent,
    Domain,
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    Tenant,
)
from controlplane.services import scope, smtp_replies
from controlplane.services.scope import Actor

MAX_PAGE = 500
# How the viewers group recipient outcomes: what a customer asks about ("was it accepted?").
RESULTS = {
    "accepted": ("delivered", "forwarded", "relayed"),
    "refused": ("refused",),
    "deferred": ("deferred",),
    "bounced": ("bounced", "expired"),
}
RESULT_OF_OUTCOME = {outcome: result for result, outcomes in RESULTS.items() for outcome in outcomes}
LOGIN_SERVICES = ("admin", "webmail", "smtp", "imap", "pop3", "sieve")


@dataclass(frozen=True)
class TransactionView:
    transaction: MailTransaction
    recipients: list[MailRecipientResult]

    @property
    def spam_verdict(self) -> str:
        """What the spam filter made of the message, in words; empty if it was not scanned."""
        t = self.transaction
        junk = any(r.reason.startswith("filed as junk") for r in self.recipients)
        return verdict_words(t.spam_action, t.spam_score, t.spam_symbols, junk=junk)


def _domain_ids(
    session: Session, actor: Actor, tenant: Tenant | None, domain: Domain | None
) -> list[int] | None:
    """The domains whose mail the viewer sees; None means every domain (the operator)."""
    return scope.viewed_records(actor, tenant=tenant, domain=domain).domain_ids(session)


def _day(on: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(on.year, on.month, on.day, tzinfo=dt.UTC)
    # The last day the calendar has ends at its last moment rather than overflowing.
    end = start + dt.timedelta(days=1) if on < dt.date.max else dt.datetime.max.replace(tzinfo=dt.UTC)
    return start, end


def search_transactions(
    session: Session,
    actor: Actor,
    query: str = "",
    *,
    tenant: Tenant | None = None,
    domain: Domain | None = None,
    on: dt.date | None = None,
    result: str | None = None,
    direction: str | None = None,
    also: str = "",
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[TransactionView], int]:
    """One page, newest first, of the transactions matching `query` exactly as an address (sender,
    recipient, original recipient, SASL user), client IP, message-id or queue ID; and their total.

    `result` keeps transactions with a recipient the viewer sees in that state (RESULTS);
    `direction` "in" keeps mail to the viewer's domains, "out" mail from them; `also` keeps those
    that match it too (mail between two addresses). Raises NotFound, NotInScope, ValidationError.
    """
    domain_ids = _domain_ids(session, actor, tenant, domain)
    criteria: list[ColumnElement[bool]] = []
    if domain_ids is not None:
        criteria.append(_visible(domain_ids))
    query = query.strip()
    if query:
        # Each way of matching reads its own index; OR-ing EXISTS clauses instead would scan
        # every transaction ever logged.
        criteria.append(MailTransaction.id.in_(_matching_ids(query, domain_ids)))
    if also.strip():
        criteria.append(MailTransaction.id.in_(_matching_ids(also.strip(), domain_ids)))
    if on is not None:
        start, end = _day(on)
        criteria += [MailTransaction.time >= start, MailTransaction.time < end]
    if result:
        criteria.append(_has_result(result, domain_ids))
    if direction:
        criteria.append(_in_direction(direction, domain_ids))
    criteria.append(_stored_by_now(session, MailTransaction))
    total = session.scalar(select(func.count()).select_from(MailTransaction).where(*criteria)) or 0
    found = session.scalars(
        select(MailTransaction)
        .where(*criteria)
        .options(selectinload(MailTransaction.recipients), selectinload(MailTransaction.queue_entries))
        .order_by(MailTransaction.time.desc(), MailTransaction.id.desc())
        .offset(max(offset, 0))
        .limit(min(max(limit, 1), MAX_PAGE))
    ).all()
    return [_view(t, domain_ids) for t in found], total


def _stored_by_now(session: Session, model: type[MailTransaction] | type[AuthEvent]) -> ColumnElement[bool]:
    """The rows stored before this search began, so that a transaction or login stored while it
    runs is in neither its count nor its page.

    They are two statements, and each reads the database as it is then (SQLite outside a
    transaction, PostgreSQL in READ COMMITTED): a transaction the log follower stored between
    them was in the page and not in the count. On SQLite rows are stored with ever larger ids
    (one writer at a time, ids set aside in the transaction that stores them), so the newest id
    read first bounds both. Not covered: a recipient's row or outcome stored meanwhile for a
    transaction already there, which can still make it match one statement and not the other;
    and on PostgreSQL, ids taken from a sequence by writers committing out of order (the
    follower's batch and a panel login, two nodes).
    """
    newest = session.scalar(select(func.max(model.id))) or 0
    if session.get_bind().dialect.name == "sqlite":
        # `+ 0`: a condition for both statements, never a reason for SQLite's planner (which
        # has no statistics here) to walk the table by id instead of the index the search names.
        return model.id + 0 <= newest
    return model.id <= newest


def _visible(domain_ids: list[int]) -> ColumnElement[bool]:
    return or_(
        MailTransaction.sender_domain_id.in_(domain_ids) if domain_ids else false(),
        exists().where(
            MailRecipientResult.transaction_id == MailTransaction.id,
            MailRecipientResult.domain_id.in_(domain_ids),
        ),
    )


def _matching_ids(query: str, domain_ids: list[int] | None):
    """The ids of transactions `query` names, one indexed lookup per column.

    A recipient's address matches only where the viewer may see that recipient: searching
    another domain's address must not reveal that a message of ours also went there.
    """
    values = sorted({query, query.lower()})
    message_id = query.removeprefix("<").removesuffix(">")

    def recipients_where(column) -> Select:
        found = select(MailRecipientResult.transaction_id).where(column.in_(values))
        if domain_ids is None:
            return found
        return found.join(MailTransaction, MailTransaction.id == MailRecipientResult.transaction_id).where(
            or_(
                MailRecipientResult.domain_id.in_(domain_ids),
                MailTransaction.sender_domain_id.in_(domain_ids) if domain_ids else false(),
            )
        )

    return union(
        select(MailTransaction.id).where(MailTransaction.sender.in_(values)),
        select(MailTransaction.id).where(MailTransaction.sasl_user.in_(values)),
        select(MailTransaction.id).where(MailTransaction.client_ip == query),
        select(MailTransaction.id).where(MailTransaction.message_id == message_id),
        recipients_where(MailRecipientResult.recipient),
        recipients_where(MailRecipientResult.orig_to),
        # Short queue IDs are upper-case hex, which people type in any case; long ones
        # (enable_long_queue_ids) mix cases that matter, so they match exactly.
        select(MailQueueEntry.transaction_id).where(MailQueueEntry.queue_id.in_({query, query.upper()})),
    )


def _has_result(result: str, domain_ids: list[int] | None) -> ColumnElement[bool]:
    if result not in RESULTS:
        raise ValidationError(
            f"Unknown result {result!r}: choose one of {', '.join(RESULTS)}.", field="result"
        )
    recipient_visible = (
        []
        if domain_ids is None
        else [
            or_(
                MailTransaction.sender_domain_id.in_(domain_ids) if domain_ids else false(),
                MailRecipientResult.domain_id.in_(domain_ids),
            )
        ]
    )
    return exists().where(
        MailRecipientResult.transaction_id == MailTransaction.id,
        MailRecipientResult.outcome.in_(RESULTS[result]),
        *recipient_visible,
    )


def _in_direction(direction: str, domain_ids: list[int] | None) -> ColumnElement[bool]:
    if direction == "out":
        if domain_ids is None:
            return MailTransaction.sender_domain_id.is_not(None)
        return MailTransaction.sender_domain_id.in_(domain_ids) if domain_ids else false()
    if direction == "in":
        ours = (
            MailRecipientResult.domain_id.is_not(None)
            if domain_ids is None
            else MailRecipientResult.domain_id.in_(domain_ids)
        )
        return exists().where(MailRecipientResult.transaction_id == MailTransaction.id, ours)
    raise ValidationError(
        f"Unknown direction {direction!r}: choose in (mail received) or out (mail sent).", field="direction"
    )


def get_transaction(
    session: Session,
    actor: Actor,
    transaction_id: int,
    *,
    tenant: Tenant | None = None,
    domain: Domain | None = None,
) -> TransactionView:
    """One transaction the viewer may see, with the recipients they may see.

    Raises NotFound (also for another domain's transaction), NotInScope.
    """
    domain_ids = _domain_ids(session, actor, tenant, domain)
    # An id beyond what the database can hold names nothing (and must not reach the driver).
    in_range = 1 <= transaction_id < 2**63
    transaction = session.get(MailTransaction, transaction_id) if in_range else None
    if transaction is None or not _sees(transaction, domain_ids):
        raise NotFound(f"No such transaction: {transaction_id}.")
    return _view(transaction, domain_ids)


def _sees(transaction: MailTransaction, domain_ids: list[int] | None) -> bool:
    if domain_ids is None:
        return True
    return transaction.sender_domain_id in domain_ids or any(
        r.domain_id in domain_ids for r in transaction.recipients
    )


@dataclass(frozen=True)
class DayCounts:
    """How many recipients of one day's transactions (UTC) ended in each result."""

    day: dt.date
    accepted: int = 0
    refused: int = 0
    deferred: int = 0
    bounced: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.refused + self.deferred + self.bounced


def day_counts(
    session: Session,
    actor: Actor,
    *,
    tenant: Tenant | None = None,
    domain: Domain | None = None,
    last: dt.date,
    days: int = 30,
) -> list[DayCounts]:
    """Per day, oldest first, the `days` days up to `last`: the viewer's recipients by result.

    A recipient counts for the day its transaction began, as the per-day list shows it.
    Raises NotFound, NotInScope, ValidationError.
    """
    if not 1 <= days <= 366:
        raise ValidationError("Choose between 1 and 366 days.", field="days")
    if last.toordinal() - days < dt.date.min.toordinal():
        raise ValidationError("That range starts before the year 1.", field="last")
    domain_ids = _domain_ids(session, actor, tenant, domain)
    first = last - dt.timedelta(days=days - 1)
    day = func.date(MailTransaction.time)
    statement = (
        select(day, MailRecipientResult.outcome, func.count())
        .join(MailRecipientResult, MailRecipientResult.transaction_id == MailTransaction.id)
        .where(MailTransaction.time >= _day(first)[0], MailTransaction.time < _day(last)[1])
        .group_by(day, MailRecipientResult.outcome)
    )
    if domain_ids is not None:
        statement = statement.where(
            or_(
                MailTransaction.sender_domain_id.in_(domain_ids) if domain_ids else false(),
                MailRecipientResult.domain_id.in_(domain_ids),
            )
        )
    counts: dict[dt.date, dict[str, int]] = {}
    for on, outcome, number in session.execute(statement):
        on = on if isinstance(on, dt.date) else dt.date.fromisoformat(on)
        result = RESULT_OF_OUTCOME[outcome]
        totals = counts.setdefault(on, {})
        totals[result] = totals.get(result, 0) + number
    return [
        DayCounts(first + dt.timedelta(days=n), **counts.get(first + dt.timedelta(days=n), {}))
        for n in range(days)
    ]


def _view(transaction: MailTransaction, domain_ids: list[int] | None) -> TransactionView:
    if domain_ids is None or transaction.sender_domain_id in domain_ids:
        return TransactionView(transaction, list(transaction.recipients))
    # Received mail: other domains' recipients of the same message are not the viewer's business.
    return TransactionView(transaction, [r for r in transaction.recipients if r.domain_id in domain_ids])


def search_logins(
    session: Session,
    actor: Actor,
    query: str = "",
    *,
    tenant: Tenant | None = None,
    domain: Domain | None = None,
    service: str | None = None,
    success: bool | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[AuthEvent], int]:
    """One page, newest first, of login attempts (any service) matching `query` as the login or
    the client IP; and their total. Full admins see every login of their tenant, the panel's
    included; domain admins their domain's mailboxes'. Attempts at unknown logins are the
    operator's alone.

    Raises NotFound, NotInScope, ValidationError.
    """
    # A tenant's view includes its full admins' own panel logins, which belong to no domain.
    criteria = scope.viewed_records(actor, tenant=tenant, domain=domain).criteria(AuthEvent)
    query = query.strip()
    if query:
        # As for transactions: one indexed lookup per column, then the scope over those few rows.
        criteria.append(
            AuthEvent.id.in_(
                union(
                    select(AuthEvent.id).where(AuthEvent.account == query.lower()),
                    select(AuthEvent.id).where(AuthEvent.login == query),
                    select(AuthEvent.id).where(AuthEvent.client_ip == query),
                )
            )
        )
    if service:
        if service not in LOGIN_SERVICES:
            raise ValidationError(
                f"Unknown service {service!r}: choose one of {', '.join(LOGIN_SERVICES)}.", field="service"
            )
        criteria.append(AuthEvent.service == service)
    if success is not None:
        criteria.append(AuthEvent.success.is_(success))
    criteria.append(_stored_by_now(session, AuthEvent))
    total = session.scalar(select(func.count()).select_from(AuthEvent).where(*criteria)) or 0
    found = session.scalars(
        select(AuthEvent)
        .where(*criteria)
        .order_by(AuthEvent.time.desc(), AuthEvent.id.desc())
        .offset(max(offset, 0))
        .limit(min(max(limit, 1), MAX_PAGE))
    ).all()
    return list(found), total


@dataclass(frozen=True)
class DialogueStep:
    """One line of an SMTP conversation as a person reads it."""

    side: str  # "client" or "server"
    text: str
    time: dt.datetime | None
    # Since the step before, when both times are known.
    elapsed: dt.timedelta | None
    code: str
    meaning: str


_REPLY_START = re.compile(r"^(?P<code>[2-5]\d\d)(?:[ -](?P<enhanced>[245]\.\d{1,3}\.\d{1,3}))?")


_RCPT = re.compile(r"^rcpt\s+to:\s*<(?P<address>[^>]*)>", re.IGNORECASE)


def dialogue_steps(view: TransactionView) -> list[DialogueStep]:
    """The transaction's SMTP dialogue in order, each server reply's code explained in words.

    Postfix logs what smtpd received as "<" and what it answered as ">" (logs/dialogue.py);
    a transaction whose session was not captured (submission, or before capture began) has none.
    A viewer shown only some recipients (their domain's, of a message it received) is not
    shown the RCPT commands, nor the answers to them, that name the others.
    """
    transaction = view.transaction
    partial = len(view.recipients) < len(transaction.recipients)
    visible = {address.lower() for r in view.recipients for address in (r.recipient, r.orig_to) if address}
    steps: list[DialogueStep] = []
    previous: dt.datetime | None = None
    hiding = False
    for line in transaction.dialogue:
        side = "client" if line.direction == "<" else "server"
        if side == "client":
            rcpt = _RCPT.match(line.text)
            hiding = partial and rcpt is not None and rcpt["address"].lower() not in visible
        if hiding:
            continue
        reply = _REPLY_START.match(line.text) if side == "server" else None
        code = " ".join(part for part in (reply["code"], reply["enhanced"]) if part) if reply else ""
        elapsed = line.time - previous if previous is not None else None
        steps.append(
            DialogueStep(side, line.text, line.time, elapsed, code, smtp_replies.explain_reply(code))
        )
        previous = line.time
    return steps


def adopt_earlier_logs(session: Session, domain: Domain) -> None:
    """Mail and logins read from the logs before `domain` was created here become its own, so
    its tenant sees what arrived for it (mail sent ahead of a move, say). Only rows logged
    after the name was last deleted: what a previous owner's domain of that name received
    stays out of sight (those rows lost their domain when it was deleted, like these had none).
    """
    deleted_at = session.scalar(
        select(func.max(AuditEntry.time)).where(
            AuditEntry.action == "domain.delete", AuditEntry.target == domain.name
        )
    )
    suffix = f"%@{domain.name}"

    def since(column):
        return [column > deleted_at] if deleted_at is not None else []

    session.execute(
        update(MailRecipientResult)
        .where(
            MailRecipientResult.domain_id.is_(None),
            func.lower(
                func.coalesce(func.nullif(MailRecipientResult.orig_to, ""), MailRecipientResult.recipient)
            ).like(suffix),
            *since(MailRecipientResult.time),
        )
        .values(domain_id=domain.id),
        execution_options={"synchronize_session": False},
    )
    session.execute(
        update(MailTransaction)
        .where(
            MailTransaction.sender_domain_id.is_(None),
            func.lower(MailTransaction.sender).like(suffix),
            *since(MailTransaction.time),
        )
        .values(sender_domain_id=domain.id),
        execution_options={"synchronize_session": False},
    )
    session.execute(
        update(AuthEvent)
        .where(AuthEvent.domain_id.is_(None), AuthEvent.account.like(suffix), *since(AuthEvent.time))
        .values(domain_id=domain.id, tenant_id=domain.tenant_id),
        execution_options={"synchronize_session": False},
    )
