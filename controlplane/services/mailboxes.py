"""Mailboxes: addresses that store mail and log in, within their domain's and tenant's limits."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.daemons import usage
from controlplane.db import after_commit
from controlplane.errors import AlreadyExists, LetterheadError, NotFound, ValidationError
from controlplane.models import GIB, Alias, AliasDestination, Domain, Mailbox
from controlplane.services import audit, domains, locks, mail_homes, nodes, passwords, scope, storage, tokens
from controlplane.services.scope import Actor
from controlplane.validation import normalize_display_name, normalize_local_part, split_address


def min_mailbox_bytes(session: Session) -> int:
    """The smallest mailbox: 1 GB, smaller only where the session's owner says so (tests)."""
    return int(session.info.get("min_mailbox_bytes", GIB))


def find_address_owner(session: Session, domain: Domain, local_part: str) -> Mailbox | Alias | None:
    mailbox = session.scalar(
        select(Mailbox).where(Mailbox.domain_id == domain.id, Mailbox.local_part == local_part)
    )
    if mailbox is not None:
        return mailbox
    return session.scalar(select(Alias).where(Alias.domain_id == domain.id, Alias.local_part == local_part))


def require_address_free(session: Session, domain: Domain, local_part: str) -> None:
    owner = find_address_owner(session, domain, local_part)
    if owner is not None:
        raise _address_taken(domain, local_part, "a mailbox" if isinstance(owner, Mailbox) else "an alias")


def _address_taken(domain: Domain, local_part: str, owner_kind: str) -> AlreadyExists:
    return AlreadyExists(
        f"{local_part}@{domain.display_name} is already taken by {owner_kind}.", field="local_part"
    )


@dataclasses.dataclass(frozen=True)
class NewMailbox:
    """A mailbox to create, as asked for: a plain `password` or an already-hashed `password_hash`."""

    local_part: str
    quota_bytes: int
    password: str | None = None
    password_hash: str | None = None
    display_name: str = ""
    is_domain_admin: bool = False


def create_mailbox(
    session: Session,
    actor: Actor,
    *,
    domain: Domain,
    local_part: str,
    quota_bytes: int,
    password: str | None = None,
    password_hash: str | None = None,
    display_name: str = "",
    is_domain_admin: bool = False,
) -> Mailbox:
    """Create a mailbox within the domain's mailbox limit, its size limits and the tenant's pool.

    Give either a plain password (hashed here) or an already-hashed one (migrations).
    """
    scope.require_domain(actor, domain, signup_allowed=True)
    if actor.kind == "signup":
        # Counted under the tenant's lock, like the domain's limits: two sign-ups at once are
        # two, not one each.
        locks.lock_tenant(session, domain.tenant_id)
        tokens.require_signup_allowance(session, tokens.get_token_of_actor(session, actor))
    requested = NewMailbox(
        local_part=local_part, quota_bytes=quota_bytes, password=password, password_hash=password_hash,
        display_name=display_name, is_domain_admin=is_domain_admin,
    )  # fmt: skip
    (outcome,) = _create_mailboxes(session, actor, domain, [requested])
    if isinstance(outcome, LetterheadError):
        raise outcome
    return outcome


def create_mailboxes(
    session: Session, actor: Actor, *, domain: Domain, requested: Sequence[NewMailbox]
) -> list[Mailbox | LetterheadError]:
    """Create many mailboxes in `domain`, each under the rules of `create_mailbox` and accepted or
    refused on its own; returns, in order, each new mailbox or the error that refused it.

    Sign-up actors may not: their hourly allowance counts one mailbox at a time.
    """
    scope.require_domain(actor, domain)
    return _create_mailboxes(session, actor, domain, requested)


def _create_mailboxes(
    session: Session, actor: Actor, domain: Domain, requested: Sequence[NewMailbox]
) -> list[Mailbox | LetterheadError]:
    # One pass of checks per mailbox, in the order a single creation makes them, against the
    # domain's room read once and counted down; then the accepted plain passwords are hashed
    # on every core at once, and all rows written in one flush. A refused mailbox writes
    # nothing, so it needs no savepoint to undo.
    outcomes: list[NewMailbox | LetterheadError] = []
    for item in requested:
        try:
            outcomes.append(_checked_fields(actor, item))
        except LetterheadError as error:
            outcomes.append(error)
    room = _MailboxRoom(
        session, domain, [item.local_part for item in outcomes if isinstance(item, NewMailbox)]
    )
    for index, item in enumerate(outcomes):
        if isinstance(item, NewMailbox):
            try:
                room.take(item.local_part, item.quota_bytes)
            except LetterheadError as error:
                outcomes[index] = error
    accepted = [item for item in outcomes if isinstance(item, NewMailbox)]
    hashes = iter(passwords.hash_passwords([item.password for item in accepted if item.password is not None]))
    # Several mail nodes: a batch goes to the node holding fewest mailboxes now.
    home_node = nodes.place_mailbox(session) if accepted else None
    results = [
        Mailbox(
            domain=domain,
            node_id=home_node.id if home_node is not None else None,
            local_part=item.local_part,
            password_hash=item.password_hash if item.password is None else next(hashes),
            quota_bytes=item.quota_bytes,
            display_name=item.display_name,
            is_domain_admin=item.is_domain_admin,
        )
        if isinstance(item, NewMailbox)
        else item
        for item in outcomes
    ]
    created = [mailbox for mailbox in results if isinstance(mailbox, Mailbox)]
    session.add_all(created)
    session.flush()
    audit.record_changes(
        session, actor, "mailbox.create",
        [(mailbox.address, {"quota_bytes": mailbox.quota_bytes}) for mailbox in created],
        tenant_id=domain.tenant_id, domain_id=domain.id,
    )  # fmt: skip
    return results


def _checked_fields(actor: Actor, item: NewMailbox) -> NewMailbox:
    """The mailbox's own fields checked and normalized (a password hash too, a plain password
    only checked); raises on the first that is refused."""
    local_part = normalize_local_part(item.local_part)
    display_name = normalize_display_name(item.display_name)
    if (item.password is None) == (item.password_hash is None):
        raise ValidationError("Give a password or a password hash, not both or neither.", field="password")
    if item.password is not None:
        passwords.validate_password(item.password)
        password_hash = None
    else:
        password_hash = passwords.normalize_password_hash(item.password_hash or "")
    if item.is_domain_admin and actor.kind in ("domain_admin", "signup"):
        raise ValidationError("Only full admins may grant the domain-admin role.", field="is_domain_admin")
    return dataclasses.replace(
        item, local_part=local_part, display_name=display_name, password_hash=password_hash,
        is_domain_admin=bool(item.is_domain_admin),
    )  # fmt: skip


class _MailboxRoom:
    """What a domain has left for new mailboxes: its free addresses, the slots under its mailbox
    limit and its tenant's free pool, read once for a batch and counted down as it is accepted."""

    def __init__(self, session: Session, domain: Domain, local_parts: list[str]) -> None:
        # Everything below is read under the tenant's lock, held until the rows are written.
        self.pool = storage.locked_pool_usage(session, domain.tenant)
        self.domain = domain
        self.taken = _address_owners(session, domain, local_parts)
        self.mailboxes = domains.domain_counts(session, domain).mailboxes
        self.min_bytes = min_mailbox_bytes(session)

    def take(self, local_part: str, quota_bytes: int) -> None:
        """Raises AlreadyExists, LimitReached, ValidationError (size), PoolExhausted."""
        domain = self.domain
        if local_part in self.taken:
            raise _address_taken(domain, local_part, self.taken[local_part])
        if self.mailboxes >= domain.max_mailboxes:
            raise domains.mailbox_limit_reached(domain)
        storage.require_mailbox_size(domain, quota_bytes, self.min_bytes)
        if quota_bytes > self.pool.free_bytes:
            raise storage.pool_exhausted(domain.tenant, self.pool, quota_bytes)
        self.taken[local_part] = "a mailbox"
        self.mailboxes += 1
        self.pool = dataclasses.replace(self.pool, allocated_bytes=self.pool.allocated_bytes + quota_bytes)


def _address_owners(session: Session, domain: Domain, local_parts: list[str]) -> dict[str, str]:
    """Which of these local parts are taken in the domain, and by what: "a mailbox" or "an alias"."""
    owners: dict[str, str] = {}
    # In slices, to stay under the database's limit on bound parameters.
    for start in range(0, len(local_parts), 500):
        wanted = local_parts[start : start + 500]
        for model, kind in ((Alias, "an alias"), (Mailbox, "a mailbox")):
            owners.update(
                (taken, kind)
                for taken in session.scalars(
                    select(model.local_part).where(model.domain_id == domain.id, model.local_part.in_(wanted))
                )
            )
    return owners


def _record(session: Session, actor: Actor, action: str, mailbox: Mailbox, **details: object) -> None:
    audit.record_change(
        session, actor, action, mailbox.address, tenant_id=mailbox.domain.tenant_id,
        domain_id=mailbox.domain_id, **details,
    )  # fmt: skip


def find_mailbox(session: Session, address: str) -> Mailbox | None:
    try:
        local_part, domain_name = split_address(address)
    except ValidationError:
        return None
    return session.scalar(
        select(Mailbox)
        .join(Domain, Mailbox.domain_id == Domain.id)
        .where(Domain.name == domain_name, Mailbox.local_part == local_part)
    )


def get_mailbox(session: Session, actor: Actor, address: str) -> Mailbox:
    mailbox = find_mailbox(session, address)
    missing = f"No such mailbox: {address}."
    if mailbox is None:
        raise NotFound(missing)
    scope.require_domain(actor, mailbox.domain, missing=missing)
    return mailbox


def get_mailbox_by_id(session: Session, actor: Actor, mailbox_id: int) -> Mailbox:
    mailbox = session.get(Mailbox, mailbox_id)
    if mailbox is None:
        raise NotFound("No such mailbox.")
    scope.require_domain(actor, mailbox.domain, missing="No such mailbox.")
    return mailbox


# Above every character a local part may hold: `prefix <= x < prefix + _AFTER_ALL` holds
# exactly for the strings starting with `prefix` (SQLite compares text by code point).
_AFTER_ALL = "\U0010ffff"


def _mailbox_filter(domain: Domain, search: str):
    """A domain's mailboxes whose local part starts with `search`, ignoring case.

    A prefix, not a substring: as a range on the (domain, local part) unique index it reads
    only the matching rows, where `LIKE '%...%'` reads every mailbox of the domain. People
    look an address up by its start ("anna.k" finds anna.keller); the search is literal
    (no wildcards) and an address typed in full, with "@domain", finds that mailbox.
    """
    criteria = [Mailbox.domain_id == domain.id]
    prefix = search.strip().lower().partition("@")[0]
    if prefix:
        criteria += [Mailbox.local_part >= prefix, Mailbox.local_part < prefix + _AFTER_ALL]
    return criteria


def page_of_mailboxes(
    session: Session, actor: Actor, domain: Domain, *, search: str = "", offset: int = 0, limit: int = 50
) -> tuple[list[Mailbox], int]:
    """One page of a domain's mailboxes, searched by the start of the part before @, and how
    many match in all."""
    scope.require_domain(actor, domain)
    criteria = _mailbox_filter(domain, search)
    if len(criteria) == 1:
        total = count_mailboxes(session, domain)
    else:
        total = session.scalar(select(func.count(Mailbox.id)).where(*criteria)) or 0
    rows = session.scalars(
        select(Mailbox).where(*criteria).order_by(Mailbox.local_part).offset(max(offset, 0)).limit(limit)
    )
    return list(rows), int(total)


def list_mailboxes(
    session: Session, actor: Actor, domain: Domain, *, search: str = "", offset: int = 0, limit: int = 100
) -> list[Mailbox]:
    scope.require_domain(actor, domain)
    query = select(Mailbox).where(*_mailbox_filter(domain, search)).order_by(Mailbox.local_part)
    return list(session.scalars(query.offset(offset).limit(limit)))


def count_mailboxes(session: Session, domain: Domain) -> int:
    return domains.domain_counts(session, domain).mailboxes


def set_hourly_messages(
    session: Session, actor: Actor, mailbox: Mailbox, hourly_messages: int | None
) -> Mailbox:
    """A full admin lowers (or raises, up to the tenant's own hourly limit) how many messages one
    mailbox may send per hour; None: the tenant's per-mailbox limit. The sending limits service
    reads it on the mailbox's next message."""
    scope.require_domain(actor, mailbox.domain)
    tenant = mailbox.domain.tenant
    scope.require_full_admin(actor, tenant)
    if hourly_messages is not None and (
        isinstance(hourly_messages, bool)
        or not isinstance(hourly_messages, int)
        or not 1 <= hourly_messages <= tenant.tenant_hourly_messages
    ):
        raise ValidationError(
            f"Messages per hour must be a whole number from 1 to {tenant.tenant_hourly_messages:,} "
            "(the tenant's own hourly limit).",
            field="hourly_messages",
        )
    mailbox.hourly_messages = hourly_messages
    session.flush()
    _record(session, actor, "mailbox.hourly_messages", mailbox, hourly_messages=hourly_messages)
    return mailbox


def set_mailbox_quota(session: Session, actor: Actor, mailbox: Mailbox, quota_bytes: int) -> Mailbox:
    """A new size applies to the next delivery: Dovecot reads it from SQL on each lookup."""
    scope.require_domain(actor, mailbox.domain)
    locks.lock_tenant(session, mailbox.domain.tenant_id)
    storage.require_mailbox_size(mailbox.domain, quota_bytes, min_mailbox_bytes(session))
    storage.require_pool(session, mailbox.domain.tenant, quota_bytes - mailbox.quota_bytes)
    mailbox.quota_bytes = quota_bytes
    session.flush()
    _record(session, actor, "mailbox.quota", mailbox, quota_bytes=quota_bytes)
    return mailbox


def set_mailbox_password(
    session: Session,
    actor: Actor,
    mailbox: Mailbox,
    *,
    password: str | None = None,
    password_hash: str | None = None,
) -> Mailbox:
    scope.require_domain(actor, mailbox.domain)
    if (password is None) == (password_hash is None):
        raise ValidationError("Give a password or a password hash, not both or neither.", field="password")
    mailbox.password_hash = (
        passwords.hash_password(password)
        if password is not None
        else passwords.normalize_password_hash(password_hash or "")
    )
    session.flush()
    _record(session, actor, "mailbox.password", mailbox)
    return mailbox


def change_own_password(
    session: Session, actor: Actor, mailbox: Mailbox, *, current: str, new: str
) -> Mailbox:
    """A user changes their own password (the webmail): the current one is required, the new one
    follows the rules and gets the hash the admins' passwords get."""
    if actor.kind != "mailbox" or actor.mailbox_id != mailbox.id:
        raise NotFound("No such mailbox.")
    if not isinstance(current, str) or not passwords.verify_password(current, mailbox.password_hash):
        raise ValidationError("Your current password is not right.", field="current_password")
    if new == current:
        raise ValidationError("Choose a password you do not use now.", field="new_password")
    passwords.validate_password(new, field="new_password")
    mailbox.password_hash = passwords.hash_password(new)
    session.flush()
    _record(session, actor, "mailbox.password", mailbox)
    return mailbox


def update_mailbox(
    session: Session,
    actor: Actor,
    mailbox: Mailbox,
    *,
    display_name: str | None = None,
    active: bool | None = None,
    local_part: str | None = None,
) -> Mailbox:
    scope.require_domain(actor, mailbox.domain)
    # Validate everything before changing anything: a refused call changes nothing.
    new_display_name = normalize_display_name(display_name) if display_name is not None else None
    new_local_part = normalize_local_part(local_part) if local_part is not None else mailbox.local_part
    if new_local_part != mailbox.local_part:
        require_address_free(session, mailbox.domain, new_local_part)
    if new_display_name is not None:
        mailbox.display_name = new_display_name
    if active is not None:
        mailbox.active = bool(active)
    if new_local_part != mailbox.local_part:
        old_address = mailbox.address
        mailbox.local_part = new_local_part
        _rename_destination_in_aliases(
            session, old_address, mailbox.address, tenant_id=mailbox.domain.tenant_id
        )
        usage.forget_usage_after_commit(session, addresses=[old_address])
    session.flush()
    _record(
        session, actor, "mailbox.update", mailbox, display_name=mailbox.display_name, active=mailbox.active
    )
    return mailbox


def set_domain_admin(session: Session, actor: Actor, mailbox: Mailbox, granted: bool) -> Mailbox:
    """Only a tenant's full admins (or the operator) grant or revoke the domain-admin role."""
    scope.require_domain(actor, mailbox.domain)
    scope.require_full_admin(actor, mailbox.domain.tenant)
    mailbox.is_domain_admin = bool(granted)
    session.flush()
    _record(session, actor, "mailbox.grant_admin" if granted else "mailbox.revoke_admin", mailbox)
    return mailbox


def delete_mailbox(session: Session, actor: Actor, mailbox: Mailbox) -> None:
    """Deleting a mailbox frees its storage in the pool and, after commit, removes its mail."""
    scope.require_domain(actor, mailbox.domain)
    storage_key, address, node_id = mailbox.storage_key, mailbox.address, mailbox.node_id
    _record(session, actor, "mailbox.delete", mailbox)
    remove_destination_from_aliases(session, actor, mailbox.address, tenant_id=mailbox.domain.tenant_id)
    session.delete(mailbox)
    session.flush()
    mail_root = session.info.get("mail_root")
    if mail_homes.held_elsewhere(session, session.info.get("node_name", ""), node_id):
        # Its mail is on another node's disk: that node removes it once this commits.
        mail_homes.remove_mail_after_commit(session, node_id, storage_key)
    elif mail_root:
        maildir = Path(mail_root) / storage_key
        after_commit(
            session, f"remove-mail-{storage_key}", lambda: shutil.rmtree(maildir, ignore_errors=True)
        )
    usage.forget_usage_after_commit(session, addresses=[address])


def remove_destination_from_aliases(session: Session, actor: Actor, address: str, *, tenant_id: int) -> None:
    """A deleted address leaves the aliases of its own tenant that forwarded to it; an alias left
    empty goes too, and so leaves the aliases that forwarded to it in turn. Each change is in the
    audit trail. Another tenant's aliases are never touched: to them the address was an outside
    one, and what happens to it is not theirs to see."""
    pending = [address]
    while pending:
        current = pending.pop()
        for destination in list(session.scalars(_same_tenant_destinations(current, tenant_id))):
            alias = destination.alias
            alias.destinations.remove(destination)
            if alias.destinations:
                action, details = (
                    "alias.destinations",
                    {"destinations": [d.address for d in alias.destinations]},
                )
            else:
                pending.append(alias.address)
                session.delete(alias)
                action, details = "alias.delete", {}
            audit.record_change(
                session, actor, action, alias.address, tenant_id=tenant_id, domain_id=alias.domain_id,
                reason=f"{address} was deleted", **details,
            )  # fmt: skip
        session.flush()


def _same_tenant_destinations(address: str, tenant_id: int):
    return (
        select(AliasDestination)
        .join(Alias, AliasDestination.alias_id == Alias.id)
        .join(Domain, Alias.domain_id == Domain.id)
        .where(AliasDestination.address == address, Domain.tenant_id == tenant_id)
    )


def _rename_destination_in_aliases(
    session: Session, old_address: str, new_address: str, *, tenant_id: int
) -> None:
    """The tenant's own aliases follow a renamed mailbox; other tenants' keep the old address."""
    for destination in session.scalars(_same_tenant_destinations(old_address, tenant_id)):
        destination.address = new_address
