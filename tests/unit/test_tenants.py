from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controlplane.errors import AlreadyExists, NotFound, NotInScope, ValidationError
from controlplane.models import Tenant
from controlplane.services import scope, tenants
from tests.factories import KB, make_domain, make_mailbox, make_tenant


def _tenant_count(db) -> int:
    return db.scalar(select(func.count(Tenant.id)))


def _stored_pool(db, tenant: Tenant) -> int:
    return db.scalar(select(Tenant.storage_pool_bytes).where(Tenant.id == tenant.id))


def test_operator_creates_a_tenant_with_a_stripped_name(db) -> None:
    tenant = tenants.create_tenant(db, scope.OPERATOR, name="  Acme Hosting ", storage_pool_bytes=5 * KB)
    assert tenant.id is not None
    assert tenant.name == "Acme Hosting"
    assert tenant.storage_pool_bytes == 5 * KB
    assert tenant.max_mailbox_bytes == tenants.PLAN_LARGEST_MAILBOX_BYTES
    assert tenants.find_tenant(db, "Acme Hosting") is tenant


def test_tenant_admins_and_domain_admins_cannot_create_tenants(db) -> None:
    domain = make_domain(db)
    before = _tenant_count(db)
    for actor in (scope.tenant_admin(domain.tenant_id), scope.domain_admin(domain.tenant_id, domain.id)):
        with pytest.raises(NotInScope):
            tenants.create_tenant(db, actor, name="Sneaky", storage_pool_bytes=KB)
    assert _tenant_count(db) == before


def test_duplicate_tenant_name_is_refused_and_nothing_written(db) -> None:
    make_tenant(db, name="Acme")
    before = _tenant_count(db)
    with pytest.raises(AlreadyExists) as caught:
        tenants.create_tenant(db, scope.OPERATOR, name=" Acme ", storage_pool_bytes=KB)
    assert "Acme" in caught.value.message
    assert _tenant_count(db) == before


def test_tenant_pool_may_be_zero(db) -> None:
    assert make_tenant(db, pool=0).storage_pool_bytes == 0


@pytest.mark.parametrize(
    "values",
    [
        {"storage_pool_bytes": -1},
        {"storage_pool_bytes": True},
        {"storage_pool_bytes": 1.5},
        {"storage_pool_bytes": "5GB"},
        {"storage_pool_bytes": KB, "max_mailbox_bytes": 0},
        {"storage_pool_bytes": KB, "max_mailbox_bytes": -KB},
        {"storage_pool_bytes": KB, "max_mailbox_bytes": True},
    ],
)
def test_negative_bool_and_non_integer_tenant_sizes_are_refused(db, values) -> None:
    with pytest.raises(ValidationError) as caught:
        tenants.create_tenant(db, scope.OPERATOR, name="Bad sizes", **values)
    assert "whole number" in caught.value.message
    assert _tenant_count(db) == 0


@pytest.mark.parametrize("name", ["", "   ", "t" * 101, "Acme\nHosting"])
def test_bad_tenant_names_are_refused_and_nothing_written(db, name: str) -> None:
    with pytest.raises(ValidationError):
        tenants.create_tenant(db, scope.OPERATOR, name=name, storage_pool_bytes=KB)
    assert _tenant_count(db) == 0


def test_pool_shrinks_exactly_to_allocated_but_not_below(db) -> None:
    tenant = make_tenant(db, pool=100 * KB)
    domain = make_domain(db, tenant=tenant)
    make_mailbox(db, domain=domain, quota=10 * KB)
    make_mailbox(db, domain=domain, quota=20 * KB)
    with pytest.raises(ValidationError) as caught:
        tenants.update_tenant(db, scope.OPERATOR, tenant, storage_pool_bytes=30 * KB - 1)
    assert "30 KB" in caught.value.message
    assert _stored_pool(db, tenant) == 100 * KB
    tenants.update_tenant(db, scope.OPERATOR, tenant, storage_pool_bytes=30 * KB)
    assert _stored_pool(db, tenant) == 30 * KB


def test_pool_of_a_tenant_without_mailboxes_may_shrink_to_zero(db) -> None:
    tenant = make_tenant(db, pool=100 * KB)
    tenants.update_tenant(db, scope.OPERATOR, tenant, storage_pool_bytes=0)
    assert _stored_pool(db, tenant) == 0


@pytest.mark.parametrize(
    "values", [{"storage_pool_bytes": -1}, {"storage_pool_bytes": False}, {"max_mailbox_bytes": 0}]
)
def test_update_tenant_refuses_negative_and_bool_sizes(db, values) -> None:
    tenant = make_tenant(db, pool=100 * KB)
    with pytest.raises(ValidationError):
        tenants.update_tenant(db, scope.OPERATOR, tenant, **values)
    assert _stored_pool(db, tenant) == 100 * KB
    assert db.scalar(select(Tenant.max_mailbox_bytes).where(Tenant.id == tenant.id)) == (
        tenants.PLAN_LARGEST_MAILBOX_BYTES
    )


def test_only_the_operator_updates_or_deletes_tenants(db) -> None:
    domain = make_domain(db)
    tenant = domain.tenant
    pool = tenant.storage_pool_bytes
    for actor in (scope.tenant_admin(tenant.id), scope.domain_admin(tenant.id, domain.id)):
        with pytest.raises(NotInScope):
            tenants.update_tenant(db, actor, tenant, storage_pool_bytes=pool * 2)
        with pytest.raises(NotInScope):
            tenants.delete_tenant(db, actor, tenant)
    assert _stored_pool(db, tenant) == pool
    assert _tenant_count(db) == 1


def test_operator_deletes_a_tenant(db) -> None:
    tenant = make_tenant(db)
    tenants.delete_tenant(db, scope.OPERATOR, tenant)
    assert _tenant_count(db) == 0


def test_tenant_admin_sees_only_own_tenant(db) -> None:
    mine, other = make_tenant(db, name="Mine"), make_tenant(db, name="Other")
    actor = scope.tenant_admin(mine.id)
    assert tenants.list_tenants(db, actor) == [mine]
    assert tenants.get_tenant(db, actor, "Mine") is mine
    with pytest.raises(NotFound):
        tenants.get_tenant(db, actor, "Other")
    assert [t.name for t in tenants.list_tenants(db, scope.OPERATOR)] == ["Mine", "Other"]
    assert tenants.get_tenant(db, scope.OPERATOR, other.name) is other


def test_get_tenant_of_unknown_name_is_not_found(db) -> None:
    with pytest.raises(NotFound):
        tenants.get_tenant(db, scope.OPERATOR, "Nobody")


def test_plan_largest_mailbox_cannot_drop_below_an_existing_mailbox(db) -> None:
    tenant = make_tenant(db, pool=100 * KB)
    make_mailbox(db, domain=make_domain(db, tenant=tenant), quota=20 * KB)
    with pytest.raises(ValidationError):
        tenants.update_tenant(db, scope.OPERATOR, tenant, max_mailbox_bytes=10 * KB)


def test_refused_tenant_update_changes_nothing(db) -> None:
    tenant = make_tenant(db, pool=100 * KB)
    with pytest.raises(ValidationError):
        tenants.update_tenant(db, scope.OPERATOR, tenant, storage_pool_bytes=200 * KB, max_mailbox_bytes=0)
    assert _stored_pool(db, tenant) == 100 * KB
