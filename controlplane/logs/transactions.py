"""Assemble Postfix events into MailTransaction rows, correlated by queue ID.

The database is the assembler's memory: each event updates the transaction its queue ID
belongs to, so a message whose lines are split across two ingest runs (or a crash) is
still assembled into one row, and nothing is held only in memory.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.logs.postfix import PostfixEvent
from controlplane.models import Domain, MailQueueEntry, MailRecipientResult, MailTransaction

# Postfix's maximal_queue_lifetime is 5 days by default; a day's slack for deferred retries.
QUEUE_LIFETIME = dt.timedelta(days=6)
# "250 2.0.0 Ok: queued as 4ABC123": a content filter or relay on this host accepted the
# message and re-queued it under a new ID, which continues the same transaction.
_QUEUED_AS = re.compile(r"queued as (?P<queue_id>[0-9A-Za-z]{6,})")
_LOOPBACK_RELAY = re.compile(r"\[(127\.\d+\.\d+\.\d+|::1)\]")
_REPLY = re.compile(r"(?P<code>[245]\d\d)[ -](?P<enhanced>[245]\.\d{1,3}\.\d{1,3})?")

# Checked in order; the first rule whose words appear in the reply (lowercased) names it.
_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (
            "user unknown",
            "unknown user",
            "recipient address rejected: undeliverable",
            "5.1.1",
            "no such user",
            "mailbox unavailable",
        ),
        "recipient not found",
    ),
    (("quota exceeded", "mailbox is full", "mailbox full", "over quota", "5.2.2", "4.2.2"), "mailbox full"),
    (("relay access denied", "relaying denied"), "relay denied"),
    (("authentication required", "not logged in", "5.7.0"), "authentication required"),
    (("sender address rejected: domain not found",), "sender domain not found"),
    (("helo command rejected",), "HELO name rejected"),
    (("host or domain name not found", "name service error"), "recipient domain not found"),
    (
        ("connection refused", "connection timed out", "network is unreachable", "no route to host"),
        "receiving server unreachable",
    ),
    (("greylist", "try again later"), "temporarily refused by the receiving server"),
    (("message size exceeds", "message too large", "5.3.4"), "message too large"),
    (("spam", "blocked", "blacklist", "blocklist", "5.7.1"), "refused as unwanted mail"),
)


def plain_reason(outcome: str, detail: str, dsn: str = "") -> str:
    """Why a recipient got `outcome`, in words an operator or a user understands."""
    if outcome in {"delivered", "forwarded", "relayed"}:
        return ""
    if outcome == "expired":
        return "gave up: still undeliverable when the queue lifetime ran out"
    text = f"{detail} {dsn}".lower()
    for words, reason in _REASONS:
        if any(word in text for word in words):
            return reason
    if outcome == "deferred":
        return "temporary failure, will retry"
    return "refused by the receiving server"


def _status_code(detail: str, dsn: str) -> str:
    reply = _REPLY.match(detail)
    if reply:
        return " ".join(part for part in (reply["code"], reply["enhanced"] or dsn) if part)
    return dsn


def _domain_id(session: Session, address: str | None, cache: dict[str, int | None]) -> int | None:
    if not address or "@" not in address:
        return None
    name = address.rsplit("@", 1)[1].lower()
    if name not in cache:
        cache[name] = session.scalar(select(Domain.id).where(Domain.name == name))
    return cache[name]


class TransactionAssembler:
    """Feeds Postfix events into the session; the caller flushes and commits."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._domains: dict[str, int | None] = {}
        # Entries created in this batch are not yet visible to queries before a flush; the
        # dict also saves a query per line for the messages currently in flight.
        self._open: dict[str, MailQueueEntry] = {}

    def add(self, event: PostfixEvent) -> None:
        if event.kind == "reject":
            self._add_refusal(event)
            return
        if event.queue_id is None or event.kind == "sasl-failed":
            return
        entry = self._entry(event)
        if entry is None:
            return
        transaction = entry.transaction
        if event.kind == "connect-client":
            if transaction.client_ip:
                return  # a re-injection: the content filter's connection is not the client
            transaction.client_name = event.client_name
            transaction.client_ip = event.client_ip
            transaction.sasl_user = event.sasl_user
        elif event.kind == "message-id":
            transaction.message_id = event.message_id[:998]
        elif event.kind == "queued":
            transaction.sender = event.sender
            transaction.sender_domain_id = _domain_id(self.session, event.sender, self._domains)
            if transaction.size is None:
                transaction.size = event.size
        elif event.kind == "delivery":
            self._add_delivery(entry, event)
        elif event.kind == "expired":
            for recipient in transaction.recipients:
                if recipient.outcome == "deferred":
                    recipient.outcome = "expired"
                    recipient.reason = plain_reason("expired", recipient.detail)
                    recipient.time = event.time
        elif event.kind == "removed":
            entry.removed = True
            self._open.pop(entry.queue_id, None)
            if all(other.removed for other in transaction.queue_entries):
                transaction.finished_at = event.time

    def _entry(self, event: PostfixEvent) -> MailQueueEntry | None:
        assert event.queue_id is not None
        entry = self._open.get(event.queue_id)
        if entry is not None and entry.time <= event.time - QUEUE_LIFETIME:
            entry = None
        if entry is None:
            self.session.flush()
            entry = self.session.scalars(
                select(MailQueueEntry)
                .where(
                    MailQueueEntry.queue_id == event.queue_id,
                    MailQueueEntry.removed.is_(False),
                    # Short queue IDs are reused; an entry whose "removed" line was never seen
                    # (lost in a rotation) must not capture a new message weeks later.
                    MailQueueEntry.time > event.time - QUEUE_LIFETIME,
                )
                .order_by(MailQueueEntry.id.desc())
                .limit(1)
            ).first()
        if entry is None:
            if event.kind == "removed":
                return None  # the rest of this message was logged before our first checkpoint
            transaction = MailTransaction(time=event.time)
            entry = MailQueueEntry(queue_id=event.queue_id, time=event.time, transaction=transaction)
            self.session.add(transaction)
        self._open[event.queue_id] = entry
        return entry

    def _add_delivery(self, entry: MailQueueEntry, event: PostfixEvent) -> None:
        transaction = entry.transaction
        outcome = _outcome(event)
        existing = next(
            (
                r
                for r in transaction.recipients
                if r.recipient == event.recipient and r.orig_to == event.orig_to
            ),
            None,
        )
        if existing is None:
            existing = MailRecipientResult(
                recipient=event.recipient[:320],
                orig_to=event.orig_to[:320],
                domain_id=_domain_id(self.session, event.orig_to or event.recipient, self._domains),
                attempts=0,
            )
            transaction.recipients.append(existing)
        existing.time = event.time
        existing.queue_id = entry.queue_id
        existing.outcome = outcome
        existing.relay = event.relay[:255]
        existing.status_code = _status_code(event.detail, event.dsn)[:16]
        existing.detail = event.detail
        existing.reason = plain_reason(outcome, event.detail, event.dsn)
        existing.attempts += 1
        reinjected = _QUEUED_AS.search(event.detail)
        if event.status == "sent" and reinjected and _LOOPBACK_RELAY.search(event.relay):
            queue_id = reinjected["queue_id"]
            follow_on = MailQueueEntry(queue_id=queue_id, time=event.time, transaction=transaction)
            self.session.add(follow_on)
            self._open[queue_id] = follow_on

    def _add_refusal(self, event: PostfixEvent) -> None:
        # A refusal after queueing belongs to its queued transaction; NOQUEUE is one of its own.
        if event.queue_id is not None:
            entry = self._entry(event)
            assert entry is not None
            transaction = entry.transaction
        else:
            transaction = MailTransaction(time=event.time, finished_at=event.time)
            self.session.add(transaction)
        transaction.client_name = transaction.client_name or event.client_name
        transaction.client_ip = transaction.client_ip or event.client_ip
        transaction.helo = event.helo[:255]
        if transaction.sender is None:
            transaction.sender = event.sender
            transaction.sender_domain_id = _domain_id(self.session, event.sender, self._domains)
        transaction.recipients.append(
            MailRecipientResult(
                time=event.time,
                recipient=event.recipient[:320],
                domain_id=_domain_id(self.session, event.recipient, self._domains),
                queue_id=event.queue_id or "",
                outcome="refused",
                status_code=_status_code(event.detail, event.dsn)[:16],
                detail=event.detail,
                reason=plain_reason("refused", event.detail, event.dsn),
                attempts=1,
            )
        )


def _outcome(event: PostfixEvent) -> str:
    if event.status == "sent":
        if event.orig_to and event.orig_to.lower() != event.recipient.lower():
            return "forwarded"
        return "relayed" if event.program == "smtp" else "delivered"
    if event.status in {"deferred", "bounced", "expired"}:
        return event.status
    return "bounced"  # status=undeliverable and other final failures
