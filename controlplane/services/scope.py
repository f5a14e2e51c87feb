"""Who may touch what: decided here, from the actor each service receives."""

from __future__ import annotations

import dataclasses

from controlplane.models import Domain, Tenant
from controlplane.services.errors import NotFound, NotInScope


@dataclasses.dataclass(frozen=True)
class Actor:
    """The person or program acting. The operator (CLI) has no tenant and sees everything."""

    kind: str  # "operator", "tenant_admin", "domain_admin", "signup" (may only create mailboxes)
    tenant_id: int | None = None
    domain_id: int | None = None
    name: str = ""

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


def require_operator(actor: Actor) -> None:
    if not actor.is_operator:
        raise NotInScope("Only the platform operator may do this.")


def require_tenant(actor: Actor, tenant: Tenant) -> None:
    """Objects outside the actor's tenant are reported as missing, so nothing leaks."""
    if actor.is_operator:
        return
    if actor.tenant_id != tenant.id:
        raise NotFound("No such tenant.")


def require_full_admin(actor: Actor, tenant: Tenant) -> None:
    require_tenant(actor, tenant)
    if actor.kind in ("domain_admin", "signup"):
        raise NotInScope("Only the tenant's full admins may do this.")


def domain_in_scope(actor: Actor, domain: Domain, *, signup_allowed: bool = False) -> bool:
    """Whether the actor may manage this domain; a sign-up actor only where `signup_allowed`
    (creating a mailbox in its own domain)."""
    if actor.is_operator:
        return True
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
