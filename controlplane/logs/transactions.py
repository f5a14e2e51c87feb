"""Assemble Postfix events into MailTransaction rows, correlated by queue ID.

The database is the assembler's memory: each event updates the transaction its queue ID
belongs to, so a message whose lines are split across two ingest runs (or a crash) is
still assembled into one row. Rows are plain objects of the ingestion's store (store.py),
written in bulk with each batch's checkpoint.

A message's usual lines (client=, message-id, queued, a delivery, its removal) are assembled in C
where the compiled part is built (_assemble.c: the same rows, written in place); it leaves every
case it is not certain of to the code here, which remains the reference.
"""

from __future__ import annotations

import functools
import re

from controlplane.logs.compiled import load as load_compiled
from controlplane.logs.dovecot import AuthVerdicts
from controlplane.logs.postfix import PostfixEvent
from controlplane.logs.rspamd import SpamVerdict, verdict_words
from controlplane.logs.store import QUEUE_LIFETIME, MailLogStore, QueueEntryRow, RecipientRow, TransactionRow

_assemble = load_compiled("_assemble")
_NOT_DONE = _assemble.NOT_DONE if _assemble is not None else object()

# "250 2.0.0 Ok: queued as 4ABC123": a content filter or relay on this host accepted the
# message and re-queued it under a new ID, which continues the same transaction.
_QUEUED_AS = re.compile(r"queued as (?P<queue_id>[0-9A-Za-z]{6,})")
_LOOPBACK_RELAY = re.compile(r"\[(127\.\d+\.\d+\.\d+|::1)\]")
# Dovecot's LMTP reply to a stored message names its session: "250 2.0.0 <a@b> SESSION Saved".
_LMTP_SAVED = re.compile(r"250 2\.0\.0 <[^>]*> (?P<session>\S+) Saved")
_REPLY = re.compile(r"(?P<code>[245]\d\d)[ -](?P<enhanced>[245]\.\d{1,3}\.\d{1,3})?")

# Checked in order; the first rule whose words appear in the reply (lowercased) names it.
_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    # Letterhead's own refusals first: their texts also hold the generic codes below (5.7.1).
    (
        ("sender address rejected: not owned by user",),
        "the sender address is not one the logged-in user may send as",
    ),
    (
        ("in the from: header", "from: header naming"),
        "the From: header names an address the logged-in user may not use",
    ),
    (("empty sender is not allowed",), "an empty sender is not allowed for logged-in users"),
    (("greylisted",), "greylisted: a sender not seen lately must retry in a few minutes"),
    (("too many recipients: at most",), "more recipients than the sender may put in one message"),
    (("hourly sending limit reached",), "the sender's hourly sending limit was reached"),
    (("client host rejected: access denied",), "the sending host is refused by the server's access rules"),
    (("quota check unavailable",), "the mailbox's quota could not be checked just then"),
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
    """Why a recipient got `outcome`, in words an operator or a user understands; a temporary
    refusal says that it is retried."""
    if outcome in {"delivered", "forwarded", "relayed"}:
        return ""
    if outcome == "expired":
        return "gave up: still undeliverable when the queue lifetime ran out"
    return _failure_reason(outcome, detail, dsn)


# Deferrals and refusals repeat their replies (one per retry, one per guessed address).
@functools.lru_cache(maxsize=4096)
def _failure_reason(outcome: str, detail: str, dsn: str) -> str:
    text = f"{detail} {dsn}".lower()
    temporary = outcome == "deferred" or (outcome == "refused" and _status_code(detail, dsn).startswith("4"))
    for words, reason in _REASONS:
        if any(word in text for word in words):
            return (
                f"{reason} (temporary: the sender will retry)"
                if temporary and "retry" not in reason
                else reason
            )
    if outcome == "deferred":
        return "temporary failure, will retry"
    if temporary:
        return "temporarily refused (the sender will retry)"
    return "refused by the receiving server" if outcome != "refused" else "refused by this server"


def _status_code(detail: str, dsn: str) -> str:
    reply = _REPLY.match(detail)
    if reply is None:
        return dsn
    code, enhanced = reply.group("code", "enhanced")
    enhanced = enhanced or dsn
    return f"{code} {enhanced}" if enhanced else code


class TransactionAssembler:
    """Feeds Postfix events into the store; the caller flushes the store and commits.

    `junk_filings` knows the LMTP sessions whose delivery Dovecot filed into Junk (its log is
    read first: it logs the filing before Postfix logs the delivery), and keeps the deliveries
    read before their filing for `file_as_junk`."""

    def __init__(self, store: MailLogStore, junk_filings: AuthVerdicts | None = None) -> None:
        self.store = store
        self.junk_filings = junk_filings if junk_filings is not None else AuthVerdicts()

    def add(self, event: PostfixEvent) -> TransactionRow | None:
        """Apply `event`; the transaction a client= line or a refusal named, for its dialogue."""
        if _compiled_add is not None:
            done = _compiled_add(self.store, event, self.junk_filings)
            if done is not _NOT_DONE:
                return done  # type: ignore[no-any-return]
        if event.kind == "reject":
            return self._add_refusal(event)
        if event.queue_id is None or event.kind == "sasl-failed":
            return
        entry = self._entry(event)
        if entry is None:
            return
        transaction = entry.transaction
        store = self.store
        if event.kind == "connect-client":
            if transaction.client_ip:
                return  # a re-injection: the content filter's connection is not the client
            transaction.client_name = event.client_name
            transaction.client_ip = event.client_ip
            transaction.sasl_user = event.sasl_user
        elif event.kind == "message-id":
            transaction.message_id = event.message_id[:998]
        elif event.kind == "queued":
            # The first queueing names the sender; a re-queued copy may carry a rewritten one
            # (SRS, for a forward), which is not who sent it.
            if transaction.sender is None or len(transaction.entries) < 2:
                transaction.sender = event.sender
                transaction.sender_domain_id = store.domain_id(event.sender)
            if transaction.size is None:
                transaction.size = event.size
        elif event.kind == "delivery":
            self._add_delivery(entry, event)
            return
        elif event.kind == "expired":
            for recipient in transaction.recipients:
                if recipient.outcome == "deferred":
                    recipient.outcome = "expired"
                    recipient.reason = plain_reason("expired", recipient.detail)
                    recipient.time = event.time
                    store.changed(recipient)
            return
        elif event.kind == "removed":
            entry.removed = True
            store.changed(entry)
            store.forget(entry)
            if not all(other.removed for other in transaction.entries):
                return
            store.finish(transaction, event.time)
            return transaction
        store.changed(transaction)
        return transaction

    def add_spam_verdict(self, verdict: SpamVerdict) -> None:
        """rspamd's verdict on the message that had `verdict.queue_id`, read before or after
        Postfix's lines about it."""
        if not verdict.queue_id:
            return  # scanned outside a mail transaction (rspamc by hand)
        store = self.store
        entry = store.latest_entry(verdict.queue_id, verdict.time)
        if entry is None:
            transaction = store.new_transaction(verdict.time)
            entry = store.new_entry(transaction, verdict.queue_id, verdict.time)
        transaction = entry.transaction
        transaction.spam_action = verdict.action[:16]
        transaction.spam_score = verdict.score
        transaction.spam_symbols = verdict.stored_symbols()
        store.changed(transaction)
        for recipient in transaction.recipients:
            if _refused_as_spam(transaction, recipient):
                recipient.reason = _spam_reason(transaction)
                store.changed(recipient)

    def file_as_junk(self, delivery: object) -> None:
        """Dovecot's line filing `delivery` (a RecipientRow noted by this or an earlier
        assembler) into Junk, read after Postfix's delivery line."""
        assert isinstance(delivery, RecipientRow)
        delivery.reason = _junk_reason(delivery.transaction)
        self.store.changed(delivery)

    def _entry(self, event: PostfixEvent) -> QueueEntryRow | None:
        assert event.queue_id is not None
        entry = self.store.open_entry(event.queue_id, event.time)
        if entry is None:
            if event.kind == "removed":
                return None  # the rest of this message was logged before our first checkpoint
            transaction = self.store.new_transaction(event.time)
            return self.store.new_entry(transaction, event.queue_id, event.time)
        self.store.remember(entry)
        return entry

    def _add_delivery(self, entry: QueueEntryRow, event: PostfixEvent) -> None:
        transaction = entry.transaction
        store = self.store
        outcome = _outcome(event)
        existing = None
        for row in transaction.recipients:
            if row.recipient == event.recipient and row.orig_to == event.orig_to:
                existing = row
                break
        else:
            # The same recipient handed to this host's own listener and re-queued under this
            # entry's ID (a forward going round for SRS): that row goes on; Postfix no longer
            # knows the alias the recipient came through.
            for row in transaction.recipients:
                if _handed_on(row, event.recipient, entry.queue_id):
                    existing = row
                    if row.outcome == "forwarded" and outcome == "relayed":
                        outcome = "forwarded"
                    break
        if existing is None:
            existing = store.new_recipient(
                transaction,
                recipient=event.recipient[:320],
                orig_to=event.orig_to[:320],
                domain_id=store.domain_id(event.orig_to or event.recipient),
                attempts=0,
            )
        existing.time = event.time
        existing.queue_id = entry.queue_id
        existing.outcome = outcome
        existing.relay = event.relay[:255]
        existing.status_code = _status_code(event.detail, event.dsn)[:16]
        existing.detail = event.detail
        existing.reason = plain_reason(outcome, event.detail, event.dsn)
        saved = _LMTP_SAVED.match(event.detail) if outcome == "delivered" else None
        if saved:
            if self.junk_filings.filed_as_junk(saved["session"]):
                existing.reason = _junk_reason(transaction)
            else:
                self.junk_filings.note_saved(saved["session"], event.time, existing)
        existing.attempts += 1
        store.changed(existing)
        # The substring first: a regular expression's search over every delivery's reply cost more.
        reinjected = _QUEUED_AS.search(event.detail) if "queued as " in event.detail else None
        if event.status == "sent" and reinjected and _LOOPBACK_RELAY.search(event.relay):
            store.new_entry(transaction, reinjected["queue_id"], event.time)

    def _add_refusal(self, event: PostfixEvent) -> TransactionRow:
        # A refusal after queueing belongs to its queued transaction; NOQUEUE is one of its own.
        store = self.store
        if event.queue_id is not None:
            entry = self._entry(event)
            assert entry is not None
            transaction = entry.transaction
        else:
            transaction = store.new_transaction(event.time, finished_at=event.time)
        transaction.client_name = transaction.client_name or event.client_name
        transaction.client_ip = transaction.client_ip or event.client_ip
        transaction.helo = event.helo[:255]
        if transaction.sender is None:
            transaction.sender = event.sender
            transaction.sender_domain_id = store.domain_id(event.sender)
        store.changed(transaction)
        recipient = store.new_recipient(
            transaction,
            time=event.time,
            recipient=event.recipient[:320],
            domain_id=store.domain_id(event.recipient),
            queue_id=event.queue_id or "",
            outcome="refused",
            status_code=_status_code(event.detail, event.dsn)[:16],
            detail=event.detail,
            reason=plain_reason("refused", event.detail, event.dsn),
            attempts=1,
        )
        if _refused_as_spam(transaction, recipient):
            recipient.reason = _spam_reason(transaction)
        return transaction


def _handed_on(row: RecipientRow, recipient: str, queue_id: str) -> bool:
    """Whether `row` is `recipient` sent to a listener on this host that re-queued it as `queue_id`."""
    if row.recipient != recipient or not _LOOPBACK_RELAY.search(row.relay):
        return False
    reinjected = _QUEUED_AS.search(row.detail)
    return reinjected is not None and reinjected["queue_id"] == queue_id


def _refused_as_spam(transaction: TransactionRow, recipient: RecipientRow) -> bool:
    # rspamd refused it: a permanent refusal of a queued message (at the end of DATA).
    return (
        transaction.spam_action == "reject"
        and recipient.outcome == "refused"
        and recipient.status_code.startswith("5")
        and bool(recipient.queue_id)
    )


def _junk_reason(transaction: TransactionRow) -> str:
    return verdict_words(
        transaction.spam_action or "no action",
        transaction.spam_score,
        transaction.spam_symbols,
        junk=True,
        limit=100,
    )


def _spam_reason(transaction: TransactionRow) -> str:
    return verdict_words(transaction.spam_action, transaction.spam_score, transaction.spam_symbols, limit=100)


def _outcome(event: PostfixEvent) -> str:
    if event.status == "sent":
        if event.program != "smtp":
            # Into a mailbox here, also through an alias (the row keeps orig_to): delivered.
            return "delivered"
        if event.orig_to and event.orig_to.lower() != event.recipient.lower():
            return "forwarded"  # an alias sent it on to an outside address
        return "relayed"
    if event.status in {"deferred", "bounced", "expired"}:
        return event.status
    return "bounced"  # status=undeliverable and other final failures


# A message's usual lines assembled in C (_assemble.c), where the rows' classes are as it
# expects: it answers NOT_DONE, having changed nothing, for every event it leaves to the code above.
_compiled_add = (
    _assemble.add
    if _assemble is not None
    and _assemble.configure(
        PostfixEvent, TransactionRow, QueueEntryRow, QUEUE_LIFETIME, RecipientRow, plain_reason, _junk_reason
    )
    else None
)
