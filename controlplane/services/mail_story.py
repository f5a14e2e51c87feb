""" "What happened to my mail?": the story of the mail to or from an address, in words.

An admin types an address (optionally a second one, and a day) and reads, newest first, each
message between them with what became of it and why: delivered, filed as junk, refused before it
was accepted, deferred and retried, bounced. A refusal because the mailbox was full says how full
it is now; when a refusal or bounce points at the sending domain's authentication, or no mail at
all reached a hosted address, the domain's MX, SPF and DKIM records are asked now and what is wrong
with them is told. Scoped as the log viewers are (services/mail_logs.py): a domain admin reads only
what touched their domain, and of another domain's recipients nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import dns.resolver
from sqlalchemy.orm import Session

from controlplane.daemons import usage
from controlplane.dns.checks import check_records
from controlplane.dns.records import ExpectedRecord
from controlplane.errors import ValidationError
from controlplane.models import Domain, Mailbox, MailRecipientResult, Tenant
from controlplane.services import brand_dns, domains, mail_logs, mailboxes, scope
from controlplane.services.scope import Actor
from controlplane.services.storage import format_bytes
from controlplane.settings import Settings

MAX_EVENTS = 200
# A receiving server's words for "your domain's authentication did not convince me".
_AUTHENTICATION_WORDS = (
    "spf",
    "dkim",
    "dmarc",
    "authenticat",
    "5.7.26",
    "5.7.27",
    "5.7.25",
    "unauthenticated",
)


@dataclasses.dataclass(frozen=True)
class StoryLine:
    """One recipient of one message, and what became of it."""

    transaction_id: int
    time: dt.datetime
    sender: str
    recipient: str
    result: str  # accepted, refused, deferred, bounced (mail_logs.RESULTS)
    sentence: str
    reply: str  # the server's own words, when it gave any
    spam_verdict: str
    mailbox_note: str
    node: str


@dataclasses.dataclass(frozen=True)
class MailStory:
    address: str
    other: str
    day: dt.date | None
    lines: list[StoryLine]
    messages: int  # how many messages matched, of which `lines` tells the newest
    summary: str
    dns_notes: list[str]


def mail_story(
    session: Session,
    actor: Actor,
    settings: Settings,
    address: str,
    *,
    other: str = "",
    on: dt.date | None = None,
    tenant: Tenant | None = None,
    domain: Domain | None = None,
    resolver: dns.resolver.Resolver | None = None,
) -> MailStory:
    """Raises ValidationError (not an address), NotFound / NotInScope (a domain not the actor's)."""
    address = _address(address, "address")
    other = _address(other, "other") if other.strip() else ""
    views, total = mail_logs.search_transactions(
        session, actor, address, tenant=tenant, domain=domain, on=on, limit=MAX_EVENTS, also=other
    )
    lines = [line for view in views for line in _lines(view, address, other)]
    _add_mailbox_notes(session, actor, settings, lines)
    dns_notes = _dns_notes(
        session, actor, settings, [a for a in (address, other) if a], lines, total, resolver
    )
    return MailStory(address, other, on, lines, total, _summary(address, other, on, lines, total), dns_notes)


def _address(text: str, field: str) -> str:
    """Any address mail may carry (a remote one need not follow our own rules for local parts)."""
    text = text.strip()
    local, at, domain_name = text.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain_name
        or len(text) > 320
        or any(c.isspace() or ord(c) < 32 for c in text)
    ):
        raise ValidationError(f"{text[:100]!r} is not an email address.", field=field)
    return text.lower()


def _lines(view: mail_logs.TransactionView, address: str, other: str) -> list[StoryLine]:
    transaction = view.transaction
    sender = transaction.sender or ""
    verdict = view.spam_verdict
    wanted = [
        recipient
        for recipient in view.recipients
        if _involves(sender, recipient, address) and (not other or _involves(sender, recipient, other))
    ] or view.recipients
    return [
        StoryLine(
            transaction_id=transaction.id,
            time=recipient.time or transaction.time,
            sender=sender or "<> (a bounce or notice)",
            recipient=recipient.recipient,
            result=mail_logs.RESULT_OF_OUTCOME.get(recipient.outcome, recipient.outcome),
            sentence=_sentence(recipient),
            # The detail quotes the server's reply with its codes; only a bare status has none.
            reply=_reply_text(recipient.detail) or recipient.status_code,
            spam_verdict=verdict,
            mailbox_note="",
            node=transaction.node,
        )
        for recipient in wanted
    ]


def _involves(sender: str, recipient: MailRecipientResult, address: str) -> bool:
    return address in {sender.lower(), recipient.recipient.lower(), (recipient.orig_to or "").lower()}


def _reply_text(detail: str) -> str:
    return detail.strip()[:300]


def _sentence(recipient: MailRecipientResult) -> str:
    reason = recipient.reason
    via = f" (written to {recipient.orig_to}, an alias)" if recipient.orig_to else ""
    if recipient.outcome == "delivered":
        if reason.startswith("filed as junk"):
            return f"Delivered to {recipient.recipient}{via}, into the Junk folder: {reason}."
        return f"Delivered to {recipient.recipient}'s mailbox{via}."
    if recipient.outcome == "forwarded":
        return f"Forwarded to {recipient.recipient}{via}."
    if recipient.outcome == "relayed":
        server = f" ({recipient.relay})" if recipient.relay else ""
        return f"Handed to {recipient.recipient}'s mail server{server}, which accepted it."
    tries = f" after {recipient.attempts} attempts" if recipient.attempts > 1 else ""
    if recipient.outcome == "deferred":
        return f"Not delivered to {recipient.recipient} yet{tries}: {reason}. The server keeps trying."
    if recipient.outcome == "bounced":
        return f"Returned to the sender{tries}: {recipient.recipient} could not be reached: {reason}."
    if recipient.outcome == "expired":
        return f"Returned to the sender: {recipient.recipient} could not be reached for days ({reason})."
    return f"Refused before it was accepted, for {recipient.recipient}: {reason}."


def _add_mailbox_notes(session: Session, actor: Actor, settings: Settings, lines: list[StoryLine]) -> None:
    full = {line.recipient for line in lines if "mailbox full" in line.sentence}
    if not full:
        return
    # Only mailboxes of domains the viewer manages: a sender's admin sees that another domain's
    # mailbox was full, never how full it is now.
    mailboxes = {
        mailbox.address: mailbox
        for mailbox in (_hosted_mailbox(session, address) for address in full)
        if mailbox is not None and scope.domain_in_scope(actor, mailbox.domain)
    }
    used = usage.usage_of_mailboxes(settings, mailboxes.values())
    for index, line in enumerate(lines):
        mailbox = mailboxes.get(line.recipient)
        if mailbox is None or "mailbox full" not in line.sentence:
            continue
        measured = used.get(line.recipient)
        if measured is None:
            note = f"The mailbox was full then; its storage is {format_bytes(mailbox.quota_bytes)}."
        else:
            share = round(100 * measured.bytes / mailbox.quota_bytes) if mailbox.quota_bytes else 0
            note = (
                f"The mailbox was full then; it now holds {format_bytes(measured.bytes)} of "
                f"{format_bytes(mailbox.quota_bytes)} ({share}%)."
            )
        lines[index] = dataclasses.replace(line, mailbox_note=note)


def _hosted_mailbox(session: Session, address: str) -> Mailbox | None:
    return mailboxes.find_mailbox(session, address)


def _dns_notes(
    session: Session,
    actor: Actor,
    settings: Settings,
    addresses: list[str],
    lines: list[StoryLine],
    total: int,
    resolver: dns.resolver.Resolver | None,
) -> list[str]:
    """What is wrong now with a hosted domain's MX, SPF or DKIM records, when the story suggests
    it: its mail bounced for its authentication (SPF, DKIM), or no mail at all to it (MX)."""
    asked: dict[str, set[str]] = {}
    if total == 0:
        for address in addresses:
            asked.setdefault(address.rpartition("@")[2], set()).add("MX")
    # Another server's refusal of the domain's mail comes back as a bounce, in that server's words
    # (a refusal at our own RCPT is about the client, never the domain's DNS).
    for line in lines:
        if line.result == "bounced" and any(word in line.reply.lower() for word in _AUTHENTICATION_WORDS):
            asked.setdefault(line.sender.lower().rpartition("@")[2], set()).update({"SPF", "DKIM"})
    notes: list[str] = []
    for name, kinds in asked.items():
        hosted = domains.find_domain(session, name) if name else None
        if hosted is None or not scope.domain_in_scope(actor, hosted):
            continue
        notes += _domain_dns_notes(settings, hosted, kinds, resolver)
    return notes


def _domain_dns_notes(
    settings: Settings, hosted: Domain, kinds: set[str], resolver: dns.resolver.Resolver | None
) -> list[str]:
    wanted: list[tuple[str, ExpectedRecord]] = []
    for record in brand_dns.dns_plan(settings, hosted):
        kind = (
            "MX"
            if record.type == "MX"
            else "SPF"
            if record.senders is not None
            else "DKIM"
            if record.judge == "dkim"
            else ""
        )
        if kind in kinds:
            wanted.append((kind, record))
    checks = check_records([record for _, record in wanted], resolver or brand_dns.resolver_for(settings))
    notes = []
    for (kind, record), check in zip(wanted, checks, strict=True):
        if check.state == "ok":
            continue
        if check.state == "unchecked":
            notes.append(f"{kind} of {hosted.name} could not be checked just now: {check.note}")
            continue
        found = ", ".join(check.found) if check.found else "nothing"
        effect = (
            "Mail for the domain cannot reach this server until it is fixed."
            if kind == "MX"
            else "Receiving servers may refuse or bounce the domain's mail."
        )
        notes.append(
            f"{kind} of {hosted.name} is {check.state}: {record.name} {record.type} should be "
            f"{record.value!r}; DNS has {found}. {effect}"
        )
    return notes


def _summary(address: str, other: str, on: dt.date | None, lines: list[StoryLine], total: int) -> str:
    between = f"between {address} and {other}" if other else f"to or from {address}"
    when = f" on {on:%Y-%m-%d}" if on else ""
    if total == 0:
        return f"No message {between}{when} is in the logs."
    counts = {result: sum(line.result == result for line in lines) for result in mail_logs.RESULTS}
    told = ", ".join(f"{count} {result}" for result, count in counts.items() if count)
    shown = (
        f" (the newest {len({line.transaction_id for line in lines})} told here)"
        if total > MAX_EVENTS
        else ""
    )
    return f"{total} message{'s' if total != 1 else ''} {between}{when}{shown}; their recipients: {told}."
