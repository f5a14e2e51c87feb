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

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, ValidationError
from controlplane.models import Alias, AliasDestination, Domain, Mailbox, SenderRule
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
    return lists_of(session, actor, mailbox)


# Rows whose change can change what some address allows (rspamd's copy, `allowed_senders`).
_ADDRESS_ATTRIBUTES = {
    Mailbox: ("local_part", "domain_id"),
    Alias: ("local_part", "domain_id"),
    AliasDestination: ("address", "alias_id"),
    Domain: ("name",),
    SenderRule: ("sender", "verdict", "mailbox_id"),
}


@event.listens_for(Session, "after_flush")
def _republish_when_addresses_change(session: Session, _context: object) -> None:
    """Every write that adds, removes or renames an address, an alias's destination or a list
    entry refreshes rspamd's copy after commit, wherever in the services it happens (a deleted
    domain's sets must not outlive it, nor an alias's when its destinations change)."""
    if session.info.get("on_sender_lists_changed") is None:
        return
    for row in (*session.new, *session.deleted):
        if type(row) in _ADDRESS_ATTRIBUTES:
            changes.signal(session, "sender_lists_changed")
            return
    for row in session.dirty:
        attributes = _ADDRESS_ATTRIBUTES.get(type(row), ())
        state = inspect(row)
        if any(state.attrs[name].history.has_changes() for name in attributes):
            changes.signal(session, "sender_lists_changed")
            return


def allowed_senders(session: Session) -> dict[str, set[str]]:
    """What rspamd must know to refuse no message a recipient allows: a set of senders for each
    address that receives mail (templates/rspamd/rspamd.local.lua.j2 reads them).

    - a mailbox: its allow list;
    - an alias: the senders every one of its destinations allows (an outside destination allows
      nobody), as a message to it reaches them all;
    - a catch-all, under "@domain": the same for its destinations;
    - "" (which no sender matches) for an address that must not fall through to another's set:
      every address of a domain whose catch-all has a set, and every address with a "+" (Postfix
      would try it without its +extension next).

    Addresses with nothing to say have no set."""
    own: dict[str, set[str]] = {}
    for local_part, domain, sender in session.execute(
        select(Mailbox.local_part, Domain.name, SenderRule.sender)
        .join(Domain, Domain.id == Mailbox.domain_id)
        .join(SenderRule, (SenderRule.mailbox_id == Mailbox.id) & (SenderRule.verdict == "allow"))
    ):
        own.setdefault(f"{local_part}@{domain}", set()).add(sender)
    destinations: dict[str, list[str]] = {}
    for local_part, domain, destination in session.execute(
        select(Alias.local_part, Domain.name, AliasDestination.address)
        .join(Domain, Domain.id == Alias.domain_id)
        .join(AliasDestination, AliasDestination.alias_id == Alias.id)
    ):
        destinations.setdefault(f"{local_part}@{domain}", []).append(destination.lower())

    def allowed_by(address: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if address in own:
            return own[address]
        if address not in destinations or address in seen:
            return set()  # a mailbox with no list, or an outside address
        found: set[str] | None = None
        for destination in destinations[address]:
            allowed = allowed_by(destination, seen | {address})
            found = set(allowed) if found is None else found & allowed
            if not found:
                return set()
        return found or set()

    published = {address: senders for address, senders in own.items() if senders}
    for address in destinations:
        if senders := allowed_by(address):
            published[address] = senders
    catch_all_domains = {address[1:] for address in published if address.startswith("@")}
    for local_part, domain in (
        session.execute(
            select(Mailbox.local_part, Domain.name)
            .join(Domain, Domain.id == Mailbox.domain_id)
            .where(Domain.name.in_(catch_all_domains) | Mailbox.local_part.contains("+"))
        ).all()
        + session.execute(
            select(Alias.local_part, Domain.name)
            .join(Domain, Domain.id == Alias.domain_id)
            .where(
                (Alias.local_part != "")
                & (Domain.name.in_(catch_all_domains) | Alias.local_part.contains("+"))
            )
        ).all()
    ):
        published.setdefault(f"{local_part}@{domain}", {""})
    return published
