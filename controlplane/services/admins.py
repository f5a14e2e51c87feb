"""A tenant's full admins: logins of their own, separate from any mailbox."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.errors import AlreadyExists, NotFound, ValidationError
from controlplane.models import Admin, Tenant
from controlplane.services import audit, passwords, scope
from controlplane.services.scope import Actor
from controlplane.validation import normalize_login


def create_admin(session: Session, actor: Actor, *, tenant: Tenant, login: str, password: str) -> Admin:
    """The operator and the tenant's full admins add full admins; logins are unique on the platform."""
    scope.require_full_admin(actor, tenant)
    login = normalize_login(login)
    if find_admin(session, login) is not None:
        raise AlreadyExists(f"The login {login!r} is taken.", field="login")
    admin = Admin(tenant=tenant, login=login, password_hash=passwords.hash_password(password))
    session.add(admin)
    session.flush()
    audit.record_change(session, actor, "admin.create", login, tenant_id=tenant.id)
    return admin


def find_admin(session: Session, login: str) -> Admin | None:
    return session.scalar(select(Admin).where(Admin.login == login.lower()))


def list_admins(session: Session, actor: Actor, tenant: Tenant) -> list[Admin]:
    scope.require_full_admin(actor, tenant)
    return list(session.scalars(select(Admin).where(Admin.tenant_id == tenant.id).order_by(Admin.login)))


def get_admin_by_id(session: Session, actor: Actor, admin_id: int) -> Admin:
    admin = session.get(Admin, admin_id)
    if admin is None or not (actor.is_operator or admin.tenant_id == actor.tenant_id):
        raise NotFound("No such admin.")
    scope.require_full_admin(actor, admin.tenant)
    return admin


def delete_admin(session: Session, actor: Actor, login: str) -> None:
    """A tenant keeps at least one full admin, so nobody locks the reseller out of its panel."""
    admin = find_admin(session, login)
    if admin is None or not (actor.is_operator or admin.tenant_id == actor.tenant_id):
        raise NotFound(f"No admin with the login {login!r}.")
    scope.require_full_admin(actor, admin.tenant)
    others = session.scalar(
        select(func.count(Admin.id)).where(Admin.tenant_id == admin.tenant_id, Admin.id != admin.id)
    )
    if not others and not actor.is_operator:
        raise ValidationError(
            f"{admin.login} is the last full admin of {admin.tenant.name}; add another one first.",
            field="login",
        )
    tenant_id = admin.tenant_id
    session.delete(admin)
    session.flush()
    audit.record_change(session, actor, "admin.delete", admin.login, tenant_id=tenant_id)
