"""Aliases: addresses that forward to one or more destinations, local or external."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from controlplane.errors import NotFound, ValidationError
from controlplane.models import Alias, AliasDestination, Domain
from controlplane.services import audit, domains, locks, mailboxes, scope
from controlplane.services.scope import Actor
from controlplane.validation import normalize_address, normalize_local_part, split_address

MAX_DESTINATIONS = 1000
CATCH_ALL = ""


def _normalize_alias_local_part(local_part: str) -> str:
    # "@" or "*" names the domain's catch-all: Postfix looks up "@domain" last.
    if local_part in ("", "@", "*"):
        return CATCH_ALL
    return normalize_local_part(local_part)


def _normalize_destinations(session: Session, destinations: list[str], *, tenant_id: int) -> list[str]:
    """The destinations checked, without duplicates. An address in one of the tenant's own domains
    must exist; any other is an outside address, even one hosted here for another tenant, whose
    mailboxes this tenant may neither see nor probe."""
    if isinstance(destinations, str):
        destinations = [part for part in destinations.replace(";", ",").split(",")]
    cleaned = sorted({normalize_address(d.strip(), field="destinations") for d in destinations if d.strip()})
    if not cleaned:
        raise ValidationError("An alias needs at least one destination.", field="destinations")
    if len(cleaned) > MAX_DESTINATIONS:
        raise ValidationError(
            f"An alias may have at most {MAX_DESTINATIONS} destinations.", field="destinations"
        )
    for destination in cleaned:
        local_part, domain_name = split_address(destination)
        domain = domains.find_domain(session, domain_name)
        if domain is None or domain.tenant_id != tenant_id:
            continue
        if mailboxes.find_address_owner(session, domain, local_part) is None:
            raise ValidationError(
                f"{destination} is in a domain hosted here but is neither a mailbox nor an alias.",
                field="destinations",
            )
    return cleaned


def _alias_graph(session: Session, tenant_id: int) -> dict[str, list[str]]:
    # Only the tenant's own aliases: another tenant's are not this one's to read, not even
    # as "that would make a loop".
    rows = session.execute(
        select(Alias.local_part, Domain.name, AliasDestination.address)
        .join(Domain, Alias.domain_id == Domain.id)
        .join(AliasDestination, AliasDestination.alias_id == Alias.id)
        .where(Domain.tenant_id == tenant_id)
    )
    graph: dict[str, list[str]] = {}
    for local_part, domain_name, destination in rows:
        graph.setdefault(f"{local_part}@{domain_name}", []).append(destination)
    return graph


def _require_no_loop(session: Session, address: str, destinations: list[str], *, tenant_id: int) -> None:
    """An alias may not reach itself through other aliases: Postfix would bounce such mail."""
    graph = _alias_graph(session, tenant_id)
    graph[address] = destinations
    stack, seen = list(destinations), set()
    while stack:
        current = stack.pop()
        if current == address:
            raise ValidationError(
                f"{address} would forward to itself through its destinations (an alias loop).",
                field="destinations",
            )
        if current in seen:
            continue
        seen.add(current)
        stack.extend(graph.get(current, []))


def create_alias(
    session: Session, actor: Actor, *, domain: Domain, local_part: str, destinations: list[str]
) -> Alias:
    """Create an alias within the domain's alias limit; its address must be free and loop-free."""
    scope.require_domain(actor, domain)
    local_part = _normalize_alias_local_part(local_part)
    locks.lock_tenant(session, domain.tenant_id)  # the slot counted is the slot written
    cleaned = _normalize_destinations(session, destinations, tenant_id=domain.tenant_id)
    mailboxes.require_address_free(session, domain, local_part)
    domains.require_alias_slot(session, domain)
    address = f"{local_part}@{domain.name}"
    _require_no_loop(session, address, cleaned, tenant_id=domain.tenant_id)
    alias = Alias(domain=domain, local_part=local_part)
    alias.destinations = [AliasDestination(address=d) for d in cleaned]
    session.add(alias)
    session.flush()
    _record(session, actor, "alias.create", alias, destinations=cleaned)
    return alias


def _record(session: Session, actor: Actor, action: str, alias: Alias, **details: object) -> None:
    audit.record_change(
        session, actor, action, alias.address, tenant_id=alias.domain.tenant_id, domain_id=alias.domain_id,
        **details,
    )  # fmt: skip


def find_alias(session: Session, address: str) -> Alias | None:
    local_part, _, domain_name = address.rpartition("@")
    try:
        local_part = _normalize_alias_local_part(local_part)
        _, domain_name = split_address(f"x@{domain_name}")
    except ValidationError:
        return None
    return session.scalar(
        select(Alias)
        .join(Domain, Alias.domain_id == Domain.id)
        .where(Domain.name == domain_name, Alias.local_part == local_part)
    )


def get_alias_by_id(session: Session, actor: Actor, alias_id: int) -> Alias:
    alias = session.get(Alias, alias_id)
    if alias is None:
        raise NotFound("No such alias.")
    scope.require_domain(actor, alias.domain, missing="No such alias.")
    return alias


def get_alias(session: Session, actor: Actor, address: str) -> Alias:
    alias = find_alias(session, address)
    missing = f"No such alias: {address}."
    if alias is None:
        raise NotFound(missing)
    scope.require_domain(actor, alias.domain, missing=missing)
    return alias


def list_aliases(session: Session, actor: Actor, domain: Domain) -> list[Alias]:
    scope.require_domain(actor, domain)
    query = select(Alias).where(Alias.domain_id == domain.id).options(selectinload(Alias.destinations))
    return list(session.scalars(query.order_by(Alias.local_part)))


def set_alias_destinations(session: Session, actor: Actor, alias: Alias, destinations: list[str]) -> Alias:
    scope.require_domain(actor, alias.domain)
    cleaned = _normalize_destinations(session, destinations, tenant_id=alias.domain.tenant_id)
    _require_no_loop(session, alias.address, cleaned, tenant_id=alias.domain.tenant_id)
    # Keep the rows of destinations that stay: the flush inserts before it deletes, so a
    # new row for an address still present would break the (alias, address) uniqueness.
    kept = {destination.address: destination for destination in alias.destinations}
    alias.destinations = [kept.get(d) or AliasDestination(address=d) for d in cleaned]
    session.flush()
    _record(session, actor, "alias.destinations", alias, destinations=cleaned)
    return alias


def delete_alias(session: Session, actor: Actor, alias: Alias) -> None:
    """Aliases that forwarded to this one stop doing so (and go if that leaves them empty)."""
    scope.require_domain(actor, alias.domain)
    address = alias.address
    _record(session, actor, "alias.delete", alias)
    session.delete(alias)
    session.flush()
    mailboxes.remove_destination_from_aliases(session, actor, address, tenant_id=alias.domain.tenant_id)
