from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controlplane.errors import AlreadyExists, NotFound, NotInScope, ValidationError
from controlplane.models import Admin
from controlplane.services import admins, passwords, scope
from tests.factories import make_domain, make_tenant


def _admin_count(db) -> int:
    return db.scalar(select(func.count(Admin.id)))


def test_operator_gives_a_tenant_a_full_admin_whose_password_verifies(db) -> None:
    tenant = make_tenant(db)
    admin = admins.create_admin(
        db, scope.OPERATOR, tenant=tenant, login="Reseller@Example.com", password="long secret"
    )
    assert admin.login == "reseller@example.com"
    assert passwords.verify_password("long secret", admin.password_hash)
    assert not passwords.verify_password("other secret", admin.password_hash)


def test_admin_logins_are_unique_across_tenants(db) -> None:
    admins.create_admin(db, scope.OPERATOR, tenant=make_tenant(db), login="boss", password="long secret")
    before = _admin_count(db)
    with pytest.raises(AlreadyExists):
        admins.create_admin(db, scope.OPERATOR, tenant=make_tenant(db), login="BOSS", password="long secret")
    assert _admin_count(db) == before


@pytest.mark.parametrize("login", ["", "has space", "quote'", "new\nline", "x" * 101])
def test_bad_admin_logins_are_refused(db, login: str) -> None:
    tenant = make_tenant(db)
    with pytest.raises(ValidationError):
        admins.create_admin(db, scope.OPERATOR, tenant=tenant, login=login, password="long secret")
    assert _admin_count(db) == 0


def test_a_domain_admin_cannot_create_full_admins(db) -> None:
    domain = make_domain(db)
    actor = scope.domain_admin(domain.tenant_id, domain.id)
    with pytest.raises(NotInScope):
        admins.create_admin(db, actor, tenant=domain.tenant, login="sneaky", password="long secret")
    assert _admin_count(db) == 0


def test_another_tenants_admin_cannot_see_or_remove_an_admin(db) -> None:
    tenant, other = make_tenant(db), make_tenant(db)
    admins.create_admin(db, scope.OPERATOR, tenant=tenant, login="owner", password="long secret")
    intruder = scope.tenant_admin(other.id)
    with pytest.raises(NotFound):
        admins.list_admins(db, intruder, tenant)
    with pytest.raises(NotFound):
        admins.delete_admin(db, intruder, "owner")
    assert _admin_count(db) == 1


def test_a_tenant_keeps_its_last_full_admin(db) -> None:
    tenant = make_tenant(db)
    admins.create_admin(db, scope.OPERATOR, tenant=tenant, login="only", password="long secret")
    actor = scope.tenant_admin(tenant.id, name="admin:only")
    with pytest.raises(ValidationError, match="last full admin"):
        admins.delete_admin(db, actor, "only")
    assert _admin_count(db) == 1
    admins.create_admin(db, actor, tenant=tenant, login="second", password="long secret")
    admins.delete_admin(db, actor, "only")
    assert [admin.login for admin in admins.list_admins(db, actor, tenant)] == ["second"]
