"""Who may touch what: decided here, from the actor each service receives."""

from __future__ import annotations

import dataclasses

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from controlplane.errors import NotFound, NotInScope, ValidationError
from controlplane.models import Domain, Tenant
from controlplane.validation import normalize_domain


@dataclasses.dataclass(frozen=True)
class Actor:
    """The person or program acting. The operator (CLI) has no tenant and sees everything."""

    # "operator", "tenant_admin", "domain_admin", "signup" (may only create mailboxes),
    # "mailbox" (a user managing their own mailbox's settings, and nothing else).
    kind: str
    tenant_id: int | None = None
    domain_id: int | None = None
    name: str = ""
    mailbox_id: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.kind == "operator"


OPERATOR = Actor(kind="operator", name="operator")


def tenant_admin(tenant_id: int, name: str = "") -> Actor:
    return Actor(kind="tenant_admin", tenant_id=tenant_id, name=name)


def domain_admin(tenant_id: int, domain_id: int, name: str = "") -> Actor:
    return Actor(kind="domain_admin", tenant_id=tenant_id, domain_id=domain_id, name=name)


def signup(tenant_id: int, domain_id: int, name: str = "") -> Actor:
    """A reseller's public sign-up form: it may create mailboxes in one domain and nothing else."""
    return Actor(kind="signup", tenant_id=tenant_id, domain_id=domain_id, name=name)


def mailbox_owner(mailbox_id: int, name: str = "") -> Actor:
    """A user logged in as their mailbox (the webmail): its own settings only. It carries no
    tenant or domain, so no check that compares them can ever let it reach theirs."""
    return Actor(kind="mailbox", mailbox_id=mailbox_id, name=name)


def require_operator(actor: Actor) -> None:
    if not actor.is_operator:
        raise NotInScope("Only the platform operator may do this.")


def require_tenant(actor: Actor, tenant: Tenant) -> None:
    """Objects outside the actor's tenant are reported as missing, so nothing leaks."""
    if actor.is_operator:
        return
    # A mailbox's own user reaches its own settings only, never its tenant's.
    if actor.tenant_id != tenant.id or actor.kind == "mailbox":
        raise NotFound("No such tenant.")


def require_full_admin(actor: Actor, tenant: Tenant) -> None:
    require_tenant(actor, tenant)
    if actor.kind in ("domain_admin", "signup", "mailbox"):
        raise NotInScope("Only the tenant's full admins may do this.")


def domain_in_scope(actor: Actor, domain: Domain, *, signup_allowed: bool = False) -> bool:
    """Whether the actor may manage this domain; a sign-up actor only where `signup_allowed`
    (creating a mailbox in its own domain)."""
    if actor.is_operator:
        return True
    if actor.kind == "mailbox":
        return False
    outside = actor.tenant_id != domain.tenant_id or (
        actor.domain_id is not None and actor.domain_id != domain.id
    )
    return not (outside or (actor.kind == "signup" and not signup_allowed))


def require_domain(
    actor: Actor, domain: Domain, *, signup_allowed: bool = False, missing: str = "No such domain."
) -> None:
    """The actor may manage this domain, and sees nothing anywhere else: outside its scope, the
    refusal is `missing`, the very words the caller gives for what does not exist, and never
    names what the actor may not see (a panel URL with another tenant's ID would list them)."""
    if not domain_in_scope(actor, domain, signup_allowed=signup_allowed):
        raise NotFound(missing)


@dataclasses.dataclass(frozen=True)
class ViewedRecords:
    """Whose records a log or audit viewer shows: every tenant's (the operator), one tenant's,
    or one domain's. Records are the mail and login logs and the audit trail."""

    tenant_id: int | None  # None: every tenant, with what belongs to none (the operator)
    domain_id: int | None  # None: all of the tenant's (or everything)

    def domain_ids(self, session: Session) -> list[int] | None:
        """The domains seen; None means every domain."""
        if self.domain_id is not None:
            return [self.domain_id]
        if self.tenant_id is None:
            return None
        return list(session.scalars(select(Domain.id).where(Domain.tenant_id == self.tenant_id)))

    def criteria(self, model) -> list[ColumnElement[bool]]:
        """Conditions on a model with `tenant_id` and `domain_id` columns (AuditEntry, AuthEvent):
        a tenant's view includes its records that belong to no domain (its admins' own)."""
        if self.domain_id is not None:
            return [model.domain_id == self.domain_id]
        if self.tenant_id is not None:
            return [model.tenant_id == self.tenant_id]
        return []


def viewed_records(actor: Actor, *, tenant: Tenant | None, domain: Domain | None) -> ViewedRecords:
    """What `actor` sees when it asks for `tenant`'s records, narrowed to `domain`: the operator
    alone may ask for everything (neither given); full admins their tenant, or one of its
    domains; domain admins their own domain only.

    Raises NotFound (another tenant's or domain's, as for anything missing), NotInScope.
    """
    if tenant is None and domain is None:
        require_operator(actor)
        return ViewedRecords(None, None)
    if domain is None:
        assert tenant is not None
        require_full_admin(actor, tenant)
        return ViewedRecords(tenant.id, None)
    if tenant is not None and domain.tenant_id != tenant.id:
        raise NotFound("No such domain.")
    require_domain(actor, domain)
    return ViewedRecords(domain.tenant_id, domain.id)


def viewer_target(session: Session, actor: Actor, domain_name: str = "") -> tuple[Tenant, Domain | None]:
    """The tenant, and the domain when narrowed, that a tenant's admin or a domain admin (or
    their API tokens) look at in a viewer: a domain admin its own domain; a full admin the
    domain named, if any.

    Raises NotFound for a domain outside the actor's scope, in the words used for a missing one.
    """
    tenant = session.get(Tenant, actor.tenant_id) if actor.tenant_id is not None else None
    if tenant is None:
        raise NotFound("No such tenant.")
    if not domain_name:
        return tenant, session.get(Domain, actor.domain_id) if actor.domain_id is not None else None
    missing = f"No such domain: {domain_name}."
    try:
        name = normalize_domain(domain_name, field="domain")
    except ValidationError:
        raise NotFound(missing) from None
    domain = session.scalar(select(Domain).where(Domain.name == name))
    if domain is None or not domain_in_scope(actor, domain):
        raise NotFound(missing)
    return tenant, domain


def brand_domains_seen(actor: Actor, domains: list[Domain]) -> list[Domain]:
    """Of a brand's domains, those the actor sees (a domain admin only its own), by name."""
    return sorted((d for d in domains if actor.domain_id in (None, d.id)), key=lambda d: d.name)
