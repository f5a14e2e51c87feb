"""Each mailbox's allow and block lists: mail from an allowed sender is never filed as junk, mail
from a blocked sender always is (as Outlook's safe and blocked senders, or Gmail's block, which
files into Spam: nothing is refused or lost, the user can still look). A sender is an address or
a whole domain (`@example.com`); an address wins over its domain, so "block @example.com, allow
ann@example.com" lets Ann through.

The lists apply per recipient at delivery: Dovecot reads them from SQL with the mailbox's userdb
row (view `mail_sender_lists`) and the global Sieve rule matches them against the envelope
sender and the From address (templates/dovecot/sieve/junk.sieve.j2). An allowed From whose
domain's DMARC fails is not trusted (anyone can write that From). Changes apply to the next
delivery. Both lists ride in one userdb reply, which Dovecot caps at 8 KiB: hence MAX_CHARACTERS.

The mailbox's user manages them (the webmail), and so do the admins who manage its domain.
"""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.models import Domain, Mailbox, SenderRule
from controlplane.services import audit, changes, locks, scope
from controlplane.services.scope import Actor
from controlplane.validation import normalize_address, normalize_domain

VERDICTS = {"allow": "allowed", "block": "blocked"}
# Characters of both lists together (each entry plus its comma): a userdb reply must stay well
# inside Dovecot's 8 KiB line (lib-auth), or every delivery to the mailbox would fail.
MAX_CHARACTERS = 4000
MAX_ENTRIES = 200


@dataclasses.dataclass(frozen=True)
class SenderLists:
    allowed: list[str]
    blocked: list[str]


def _require_mailbox(actor: Actor, mailbox: Mailbox) -> None:
    missing = "No such mailbox."
    if actor.kind == "mailbox":
        if actor.mailbox_id != mailbox.id:
            raise NotFound(missing)
        return
    scope.require_domain(actor, mailbox.domain, missing=missing)


def normalize_sender(text: str, *, field: str = "sender") -> str:
    """`ann@example.com`, or `@example.com` (also typed as `example.com`) for the whole domain."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("Give a sender: an address, or @ and a domain for all of it.", field=field)
    text = text.strip()
    try:
        if "@" in text and not text.startswith("@"):
            return normalize_address(text, field=field)
        return "@" + normalize_domain(text.removeprefix("@"), field=field)
    except ValidationError as error:
        raise ValidationError(
            f"{text[:100]!r} is neither an address nor @ and a domain: {error.message}", field=field
        ) from None


def lists_of(session: Session, actor: Actor, mailbox: Mailbox) -> SenderLists:
    _require_mailbox(actor, mailbox)
    rows = session.execute(
        select(SenderRule.sender, SenderRule.verdict)
        .where(SenderRule.mailbox_id == mailbox.id)
        .order_by(SenderRule.sender)
    ).all()
    return SenderLists(
        allowed=[sender for sender, verdict in rows if verdict == "allow"],
        blocked=[sender for sender, verdict in rows if verdict == "block"],
    )


def add_sender(session: Session, actor: Actor, mailbox: Mailbox, sender: str, verdict: str) -> SenderLists:
    """Put `sender` on the `verdict` list ("allow" or "block"), taking it off the other one."""
    _require_mailbox(actor, mailbox)
    if verdict not in VERDICTS:
        raise ValidationError('The list is "allow" or "block".', field="list")
    sender = normalize_sender(sender)
    # Two additions at once must not both pass the size check.
    locks.lock_tenant(session, mailbox.domain.tenant_id)
    existing = session.scalar(
        select(SenderRule).where(SenderRule.mailbox_id == mailbox.id, SenderRule.sender == sender)
    )
    if existing is None:
        count, characters = session.execute(
            select(func.count(), func.coalesce(func.sum(func.length(SenderRule.sender) + 1), 0)).where(
                SenderRule.mailbox_id == mailbox.id
            )
        ).one()
        if count >= MAX_ENTRIES or characters + len(sender) + 1 > MAX_CHARACTERS:
            raise ValidationError(
                f"The allow and block lists of {mailbox.address} are full (at most {MAX_ENTRIES} senders, "
                f"{MAX_CHARACTERS} characters together): remove some, or list a whole domain instead "
                "of its addresses.",
                field="sender",
            )
        session.add(SenderRule(mailbox_id=mailbox.id, sender=sender, verdict=verdict))
    elif existing.verdict != verdict:
        existing.verdict = verdict
    else:
        return lists_of(session, actor, mailbox)
    session.flush()
    audit.record_change(
        session, actor, f"mailbox.sender_{verdict}", mailbox.address, tenant_id=mailbox.domain.tenant_id,
        domain_id=mailbox.domain_id, sender=sender,
    )  # fmt: skip
    changes.signal(session, "sender_lists_changed", mailbox.id)
    return lists_of(session, actor, mailbox)


def remove_sender(session: Session, actor: Actor, mailbox: Mailbox, sender: str) -> SenderLists:
    _require_mailbox(actor, mailbox)
    normalized = normalize_sender(sender)
    existing = session.scalar(
        select(SenderRule).where(SenderRule.mailbox_id == mailbox.id, SenderRule.sender == normalized)
    )
    if existing is None:
        raise NotFound(f"{normalized} is on neither list of {mailbox.address}.")
    session.delete(existing)
    session.flush()
    audit.record_change(
        session, actor, "mailbox.sender_unlisted", mailbox.address, tenant_id=mailbox.domain.tenant_id,
        domain_id=mailbox.domain_id, sender=normalized,
    )  # fmt: skip
    changes.signal(session, "sender_lists_changed", mailbox.id)
    return lists_of(session, actor, mailbox)


def allowed_senders(session: Session, mailbox_ids: list[int] | None = None) -> dict[str, list[str]]:
    """Each mailbox's allowed senders by its address (rspamd's copy: never refused as spam);
    `mailbox_ids`: only these, with an empty list for one that allows nobody."""
    query = (
        select(Mailbox.id, Mailbox.local_part, Domain.name, SenderRule.sender)
        .join(Domain, Domain.id == Mailbox.domain_id)
        .outerjoin(SenderRule, (SenderRule.mailbox_id == Mailbox.id) & (SenderRule.verdict == "allow"))
    )
    if mailbox_ids is not None:
        query = query.where(Mailbox.id.in_(mailbox_ids))
    else:
        query = query.where(SenderRule.id.is_not(None))
    allowed: dict[str, list[str]] = {}
    for _id, local_part, domain, sender in session.execute(query):
        senders = allowed.setdefault(f"{local_part}@{domain}", [])
        if sender is not None:
            senders.append(sender)
    return allowed
