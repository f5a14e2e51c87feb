"""API tokens: made and revoked by admins, shown once, kept only as a hash.

A tenant token acts as a full admin of its tenant, a domain token as a domain admin of its
domain, and a sign-up token may only create mailboxes in its domain, at most
`hourly_limit` an hour (a reseller's public sign-up form).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.errors import AuthenticationFailed, LimitReached, NotFound, ValidationError
from controlplane.models import ApiToken, AuditEntry, Domain, Tenant
from controlplane.models.base import utcnow
from controlplane.services import audit, scope
from controlplane.services.scope import Actor
from controlplane.validation import normalize_display_name

TOKEN_PREFIX = "lh_"
DEFAULT_SIGNUP_HOURLY_LIMIT = 20
MAX_SIGNUP_HOURLY_LIMIT = 10_000


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    session: Session,
    actor: Actor,
    *,
    tenant: Tenant,
    kind: str,
    name: str,
    domain: Domain | None = None,
    hourly_limit: int | None = None,
) -> tuple[ApiToken, str]:
    """Make a token and return it with its secret, which is never shown again.

    Full admins make any kind in their tenant; a domain admin only domain or sign-up tokens
    for its own domain.
    """
    if kind not in ("tenant", "domain", "signup"):
        raise ValidationError(
            "A token is for the tenant, one domain, or sign-ups in one domain.", field="kind"
        )
    if kind == "tenant":
        scope.require_full_admin(actor, tenant)
        if domain is not None:
            raise ValidationError(
                "A tenant token covers every domain of its tenant: name no domain for it.", field="domain"
            )
    else:
        if domain is None or domain.tenant_id != tenant.id:
            raise ValidationError("Name the domain this token is for.", field="domain")
        scope.require_domain(actor, domain)
    if actor.kind == "signup":
        raise NotFound("No such tenant.")
    label = normalize_display_name(name, field="name") or kind
    if kind == "signup":
        hourly_limit = DEFAULT_SIGNUP_HOURLY_LIMIT if hourly_limit is None else hourly_limit
        if (
            isinstance(hourly_limit, bool)
            or not isinstance(hourly_limit, int)
            or not 1 <= hourly_limit <= MAX_SIGNUP_HOURLY_LIMIT
        ):
            raise ValidationError(
                f"A sign-up token's hourly limit lies between 1 and {MAX_SIGNUP_HOURLY_LIMIT}.",
                field="hourly_limit",
            )
    elif hourly_limit is not None:
        raise ValidationError("Only sign-up tokens have an hourly limit.", field="hourly_limit")
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    token = ApiToken(
        tenant_id=tenant.id, domain_id=domain.id if domain else None, kind=kind, name=label[:100],
        prefix=prefix, secret_hash=_hash(secret), hourly_limit=hourly_limit, created_by=audit.actor_label(actor),
    )  # fmt: skip
    session.add(token)
    session.flush()
    audit.record_change(
        session, actor, "token.create", f"{kind} token {prefix} ({token.name})", tenant_id=tenant.id,
        domain_id=token.domain_id,
    )  # fmt: skip
    return token, f"{TOKEN_PREFIX}{prefix}_{secret}"


def list_tokens(session: Session, actor: Actor, tenant: Tenant) -> list[ApiToken]:
    """The tenant's tokens (a domain admin: its domain's), newest first; secrets are never listed."""
    scope.require_tenant(actor, tenant)
    query = select(ApiToken).where(ApiToken.tenant_id == tenant.id)
    if actor.domain_id is not None:
        query = query.where(ApiToken.domain_id == actor.domain_id)
    return list(session.scalars(query.order_by(ApiToken.id.desc())))


def get_token(session: Session, actor: Actor, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None or not (actor.is_operator or token.tenant_id == actor.tenant_id):
        raise NotFound("No such token.")
    if token.domain is not None:
        scope.require_domain(actor, token.domain, missing="No such token.")
    else:
        scope.require_full_admin(actor, token.tenant)
    return token


def get_token_by_prefix(session: Session, actor: Actor, prefix: str) -> ApiToken:
    """The token a listing shows by its prefix (`lh_` and anything after the prefix may be given too)."""
    bare = prefix.strip().removeprefix(TOKEN_PREFIX).partition("_")[0] if isinstance(prefix, str) else ""
    token = session.scalar(select(ApiToken).where(ApiToken.prefix == bare)) if bare else None
    missing = f"No token with the prefix {prefix!r}."
    if token is None or not (actor.is_operator or token.tenant_id == actor.tenant_id):
        raise NotFound(missing)
    if token.domain is not None:
        scope.require_domain(actor, token.domain, missing=missing)
    return get_token(session, actor, token.id)


def revoke_token(session: Session, actor: Actor, token: ApiToken) -> ApiToken:
    """A revoked token is refused from its next request on."""
    get_token(session, actor, token.id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
        audit.record_change(
            session, actor, "token.revoke", f"{token.kind} token {token.prefix} ({token.name})",
            tenant_id=token.tenant_id, domain_id=token.domain_id,
        )  # fmt: skip
    return token


def authenticate_token(
    session: Session, presented: str, *, now: dt.datetime | None = None
) -> tuple[Actor, ApiToken]:
    """The actor a bearer token stands for; records its use. Raises AuthenticationFailed."""
    refused = AuthenticationFailed("The token is missing, unknown or revoked.")
    if not isinstance(presented, str) or not presented.startswith(TOKEN_PREFIX):
        raise refused
    prefix, _, secret = presented[len(TOKEN_PREFIX) :].partition("_")
    token = session.scalar(select(ApiToken).where(ApiToken.prefix == prefix)) if prefix and secret else None
    if (
        token is None
        or not hmac.compare_digest(token.secret_hash, _hash(secret))
        or token.revoked_at is not None
    ):
        raise refused
    if not token.tenant.active or (token.domain is not None and not token.domain.in_service):
        raise refused
    token.last_used_at = now or utcnow()
    name = f"token:{token.prefix}"
    if token.kind == "tenant":
        actor = scope.tenant_admin(token.tenant_id, name=name)
    elif token.kind == "domain":
        actor = scope.domain_admin(token.tenant_id, token.domain_id, name=name)
    else:
        actor = scope.signup(token.tenant_id, token.domain_id, name=name)
    return actor, token


def get_token_of_actor(session: Session, actor: Actor) -> ApiToken:
    """The token an API actor acts through (its name is `token:PREFIX`). Raises NotFound."""
    prefix = actor.name.removeprefix("token:")
    token = session.scalar(
        select(ApiToken).where(ApiToken.prefix == prefix, ApiToken.tenant_id == actor.tenant_id)
    )
    if token is None or not actor.name.startswith("token:"):
        raise NotFound("No such token.")
    return token


def require_signup_allowance(session: Session, token: ApiToken, *, now: dt.datetime | None = None) -> None:
    """A sign-up token creates at most `hourly_limit` mailboxes in any hour (counted from the trail)."""
    if token.kind != "signup":
        return
    since = (now or utcnow()) - dt.timedelta(hours=1)
    made = session.scalar(
        select(func.count(AuditEntry.id)).where(
            AuditEntry.actor == f"token:{token.prefix}",
            AuditEntry.action == "mailbox.create",
            AuditEntry.time >= since,
        )
    )
    if (made or 0) >= (token.hourly_limit or 0):
        raise LimitReached(
            f"This sign-up form may create at most {token.hourly_limit} mailboxes an hour; try again later.",
            field="hourly_limit",
        )
