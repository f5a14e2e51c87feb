"""Domains of a tenant and their limits (mailbox count, alias count, largest mailbox)."""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.daemons import usage
from controlplane.errors import AlreadyExists, LimitReached, NotFound, ValidationError
from controlplane.models import Domain, Mailbox, Tenant
from controlplane.services import audit, dkim, locks, mail_logs, scope, storage
from controlplane.services.changes import signal_domains_changed
from controlplane.services.scope import Actor
from controlplane.validation import normalize_domain


@dataclasses.dataclass(frozen=True)
class DomainCounts:
    mailboxes: int
    aliases: int
    allocated_bytes: int


_NO_COUNTS = DomainCounts(mailboxes=0, aliases=0, allocated_bytes=0)


def _require_count(value: int, field: str, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError(f"{what} must be a whole number, zero or more.", field=field)


def _require_size(value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValidationError("The largest mailbox must be a positive size.", field="max_mailbox_bytes")


def create_domain(
    session: Session,
    actor: Actor,
    *,
    tenant: Tenant,
    name: str,
    max_mailboxes: int,
    max_aliases: int,
    max_mailbox_bytes: int | None = None,
) -> Domain:
    """Full admins and the operator add domains; a domain name exists once on the platform."""
    scope.require_full_admin(actor, tenant)
    ascii_name = normalize_domain(name, field="name")
    _require_count(max_mailboxes, "max_mailboxes", "The mailbox limit")
    _require_count(max_aliases, "max_aliases", "The alias limit")
    if max_mailbox_bytes is None:
        max_mailbox_bytes = tenant.max_mailbox_bytes
    _require_size(max_mailbox_bytes)
    if find_domain(session, ascii_name) is not None:
        raise AlreadyExists(f"The domain {name} is already hosted here.", field="name")
    domain = Domain(
        tenant=tenant,
        name=ascii_name,
        max_mailboxes=max_mailboxes,
        max_aliases=max_aliases,
        max_mailbox_bytes=max_mailbox_bytes,
    )
    session.add(domain)
    session.flush()
    audit.record_change(
        session, actor, "domain.create", domain.name, tenant_id=tenant.id, domain_id=domain.id
    )
    mail_logs.adopt_earlier_logs(session, domain)
    dkim.create_key(session, domain)
    signal_domains_changed(session)
    return domain


def find_domain(session: Session, name: str) -> Domain | None:
    return session.scalar(select(Domain).where(Domain.name == name))


def get_domain(session: Session, actor: Actor, name: str, *, signup_allowed: bool = False) -> Domain:
    """Find a domain by its Unicode or A-label name, within the actor's scope (a sign-up actor's
    only where `signup_allowed`: to create a mailbox in it)."""
    try:
        ascii_name = normalize_domain(name, field="domain")
    except ValidationError:
        raise NotFound(f"No such domain: {name!r}.") from None
    domain = find_domain(session, ascii_name)
    missing = f"No such domain: {name}."
    if domain is None:
        raise NotFound(missing)
    scope.require_domain(actor, domain, signup_allowed=signup_allowed, missing=missing)
    return domain


def list_domains(session: Session, actor: Actor, tenant: Tenant | None = None) -> list[Domain]:
    query = select(Domain).order_by(Domain.name)
    if tenant is not None:
        scope.require_tenant(actor, tenant)
        query = query.where(Domain.tenant_id == tenant.id)
    if not actor.is_operator:
        query = query.where(Domain.tenant_id == actor.tenant_id)
    if actor.kind == "signup":
        return []
    if actor.domain_id is not None:
        query = query.where(Domain.id == actor.domain_id)
    return list(session.scalars(query))


@dataclasses.dataclass(frozen=True)
class DomainSummary:
    domain: Domain
    counts: DomainCounts


def list_domain_summaries(
    session: Session, actor: Actor, tenant: Tenant | None = None
) -> list[DomainSummary]:
    """The domains the actor may see, each with its counts, in two queries whatever their size."""
    listed = list_domains(session, actor, tenant)
    counts = _counts_of(session, [domain.id for domain in listed])
    return [DomainSummary(domain=domain, counts=counts.get(domain.id, _NO_COUNTS)) for domain in listed]


def _counts_of(session: Session, domain_ids: list[int]) -> dict[int, DomainCounts]:
    # The database keeps these columns as mailboxes and aliases come and go (triggers of
    # migration 0003): reading them costs the same for 10 mailboxes as for 100,000. They are
    # selected as columns, not read from loaded Domain objects, which would not see changes
    # the triggers made since they were loaded.
    rows = session.execute(
        select(Domain.id, Domain.mailbox_count, Domain.alias_count, Domain.allocated_bytes).where(
            Domain.id.in_(domain_ids)
        )
    )
    return {
        domain_id: DomainCounts(
            mailboxes=int(mailboxes), aliases=int(aliases), allocated_bytes=int(allocated)
        )
        for domain_id, mailboxes, aliases, allocated in rows
    }


def domain_counts(session: Session, domain: Domain) -> DomainCounts:
    """How many mailboxes and aliases the domain has and the storage given to its mailboxes."""
    return _counts_of(session, [domain.id]).get(domain.id, _NO_COUNTS)


def mailbox_limit_reached(domain: Domain) -> LimitReached:
    """What refuses a mailbox beyond the domain's limit (mailboxes.create_mailboxes counts them)."""
    return LimitReached(
        f"The domain {domain.display_name} may have at most {domain.max_mailboxes} mailboxes.",
        field="max_mailboxes",
    )


def require_alias_slot(session: Session, domain: Domain) -> None:
    if domain_counts(session, domain).aliases >= domain.max_aliases:
        raise LimitReached(
            f"The domain {domain.display_name} may have at most {domain.max_aliases} aliases.",
            field="max_aliases",
        )


def update_domain(
    session: Session,
    actor: Actor,
    domain: Domain,
    *,
    max_mailboxes: int | None = None,
    max_aliases: int | None = None,
    max_mailbox_bytes: int | None = None,
    active: bool | None = None,
) -> Domain:
    """Only full admins change a domain's limits; a limit never drops below what exists."""
    scope.require_domain(actor, domain)
    scope.require_full_admin(actor, domain.tenant)
    # A limit lowered while a mailbox is being added must see that mailbox.
    locks.lock_tenant(session, domain.tenant_id)
    # Validate everything before changing anything: a refused call changes nothing.
    counts = domain_counts(session, domain)
    if max_mailboxes is not None:
        _require_count(max_mailboxes, "max_mailboxes", "The mailbox limit")
        if max_mailboxes < counts.mailboxes:
            raise ValidationError(
                f"{domain.display_name} already has {counts.mailboxes} mailboxes; "
                "delete some before lowering the limit.",
                field="max_mailboxes",
            )
    if max_aliases is not None:
        _require_count(max_aliases, "max_aliases", "The alias limit")
        if max_aliases < counts.aliases:
            raise ValidationError(
                f"{domain.display_name} already has {counts.aliases} aliases; "
                "delete some before lowering the limit.",
                field="max_aliases",
            )
    if max_mailbox_bytes is not None:
        _require_size(max_mailbox_bytes)
        largest = session.scalar(select(func.max(Mailbox.quota_bytes)).where(Mailbox.domain_id == domain.id))
        if largest is not None and largest > max_mailbox_bytes:
            raise ValidationError(
                f"A mailbox in {domain.display_name} already has {storage.format_bytes(largest)}; "
                "reduce it before lowering the largest mailbox size.",
                field="max_mailbox_bytes",
            )
    if max_mailboxes is not None:
        domain.max_mailboxes = max_mailboxes
    if max_aliases is not None:
        domain.max_aliases = max_aliases
    if max_mailbox_bytes is not None:
        domain.max_mailbox_bytes = max_mailbox_bytes
    if active is not None and bool(active) != domain.active:
        domain.active = bool(active)
        signal_domains_changed(session)
    session.flush()
    audit.record_change(
        session, actor, "domain.update", domain.name, tenant_id=domain.tenant_id, domain_id=domain.id,
        max_mailboxes=domain.max_mailboxes, max_aliases=domain.max_aliases,
        max_mailbox_bytes=domain.max_mailbox_bytes, active=domain.active,
    )  # fmt: skip
    return domain


def delete_domain(session: Session, actor: Actor, domain: Domain) -> None:
    """Deleting a domain removes its mailboxes and aliases with it."""
    scope.require_domain(actor, domain)
    scope.require_full_admin(actor, domain.tenant)
    name, tenant_id = domain.name, domain.tenant_id
    key_files = [(name, key.selector) for key in domain.dkim_keys]
    session.delete(domain)
    session.flush()
    usage.forget_usage_after_commit(session, domain=name)
    dkim.remove_keys_after_commit(session, key_files)
    audit.record_change(session, actor, "domain.delete", name, tenant_id=tenant_id)
    signal_domains_changed(session)
