"""Searching what the mail logs recorded: SMTP transactions and mail-service logins, in scope.

A transaction belongs to the domains it touched: its sender's and each recipient's. A domain
admin sees transactions to or from their domain, but of a message they only received, only the
recipients in their own domain; full admins the same over all their tenant's domains; the
operator everything, including mail for domains that are not ours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, false, func, or_, select
from sqlalchemy.orm import Session, selectinload

from controlplane.models import (
    AuthEvent,
    Domain,
    MailQueueEntry,
    MailRecipientResult,
    MailTransaction,
    Tenant,
)
from controlplane.services import scope
from controlplane.services.errors import NotFound
from controlplane.services.scope import Actor

MAX_PAGE = 500


@dataclass(frozen=True)
class TransactionView:
    transaction: MailTransaction
    recipients: list[MailRecipientResult]


def _domain_ids(
    session: Session, actor: Actor, tenant: Tenant | None, domain: Domain | None
) -> list[int] | None:
    """The domains whose mail the viewer sees; None means every domain (the operator)."""
    if tenant is None and domain is None:
        scope.require_operator(actor)
        return None
    if domain is None:
        assert tenant is not None
        scope.require_full_admin(actor, tenant)
        return list(session.scalars(select(Domain.id).where(Domain.tenant_id == tenant.id)))
    if tenant is not None and domain.tenant_id != tenant.id:
        raise NotFound(f"No such domain: {domain.display_name}.")
    scope.require_domain(actor, domain)
    return [domain.id]


def _day(on: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(on.year, on.month, on.day, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def search_transactions(
    session: Session,
    actor: Actor,
    query: str = "",
    *,
    tenant: Tenant | None = None,
    domain: Domain | None = None,
    on: dt.date | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[TransactionView], int]:
    """One page, newest first, of the transactions matching `query` exactly as an address (sender,
    recipient, original recipient, SASL user), client IP, message-id or queue ID; and their total.

    Raises NotFound, NotInScope.
    """
    domain_ids = _domain_ids(session, actor, tenant, domain)
    criteria: list[ColumnElement[bool]] = []
    if domain_ids is not None:
        criteria.append(
            or_(
                MailTransaction.sender_domain_id.in_(domain_ids) if domain_ids else false(),
                exists().where(
                    MailRecipientResult.transaction_id == MailTransaction.id,
                    MailRecipientResult.domain_id.in_(domain_ids),
                ),
            )
        )
    query = query.strip()
    if query:
        message_id = query.removeprefix("<").removesuffix(">")
        criteria.append(
            or_(
                MailTransaction.sender == query,
                MailTransaction.sasl_user == query,
                MailTransaction.client_ip == query,
                MailTransaction.message_id == message_id,
                exists().where(
                    MailRecipientResult.transaction_id == MailTransaction.id,
                    or_(MailRecipientResult.recipient == query, MailRecipientResult.orig_to == query),
                ),
                exists().where(
                    MailQueueEntry.transaction_id == MailTransaction.id, MailQueueEntry.queue_id == query
                ),
            )
        )
    if on is not None:
        start, end = _day(on)
        criteria += [MailTransaction.time >= start, MailTransaction.time < end]
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
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[AuthEvent], int]:
    """One page, newest first, of login attempts (any service) matching `query` as the login or
    the client IP; and their total. Attempts at unknown logins are the operator's alone.

    Raises NotFound, NotInScope.
    """
    domain_ids = _domain_ids(session, actor, tenant, domain)
    criteria: list[ColumnElement[bool]] = []
    if domain_ids is not None:
        criteria.append(AuthEvent.domain_id.in_(domain_ids))
    query = query.strip()
    if query:
        criteria.append(
            or_(AuthEvent.account == query.lower(), AuthEvent.login == query, AuthEvent.client_ip == query)
        )
    total = session.scalar(select(func.count()).select_from(AuthEvent).where(*criteria)) or 0
    found = session.scalars(
        select(AuthEvent)
        .where(*criteria)
        .order_by(AuthEvent.time.desc(), AuthEvent.id.desc())
        .offset(max(offset, 0))
        .limit(min(max(limit, 1), MAX_PAGE))
    ).all()
    return list(found), total
