from __future__ import annotations

import pytest

from controlplane.errors import NotFound, NotInScope, ValidationError
from controlplane.services import scope, tokens
from tests.factories import make_domain, make_tenant


def test_a_token_is_found_by_its_prefix_as_listed_or_as_presented(db) -> None:
    tenant = make_tenant(db)
    token, secret = tokens.create_token(db, scope.OPERATOR, tenant=tenant, kind="tenant", name="billing")
    for given in (token.prefix, f"lh_{token.prefix}", f" lh_{token.prefix}_ ", secret):
        assert tokens.get_token_by_prefix(db, scope.OPERATOR, given) is token, given


@pytest.mark.parametrize("given", ["", "lh_", "lh__secret", "000000000000", None])
def test_an_unknown_prefix_is_not_found(db, given) -> None:
    tokens.create_token(db, scope.OPERATOR, tenant=make_tenant(db), kind="tenant", name="billing")
    with pytest.raises(NotFound):
        tokens.get_token_by_prefix(db, scope.OPERATOR, given)


def test_a_prefix_outside_the_actors_scope_is_refused_as_elsewhere(db) -> None:
    tenant = make_tenant(db)
    a, b = make_domain(db, tenant=tenant), make_domain(db, tenant=tenant)
    of_b, _ = tokens.create_token(db, scope.OPERATOR, tenant=tenant, kind="domain", domain=b, name="b")
    of_tenant, _ = tokens.create_token(db, scope.OPERATOR, tenant=tenant, kind="tenant", name="all")
    admin_of_a = scope.domain_admin(tenant.id, a.id)
    with pytest.raises(NotFound):
        tokens.get_token_by_prefix(db, admin_of_a, of_b.prefix)
    with pytest.raises(NotInScope):
        tokens.get_token_by_prefix(db, admin_of_a, of_tenant.prefix)
    with pytest.raises(NotFound):
        tokens.get_token_by_prefix(db, scope.tenant_admin(make_tenant(db).id), of_tenant.prefix)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (dict(kind="tenant", with_domain=True), "domain"),
        (dict(kind="domain", with_domain=True, hourly_limit=5), "hourly_limit"),
        (dict(kind="tenant", with_domain=False, hourly_limit=5), "hourly_limit"),
    ],
)
def test_an_option_the_kind_does_not_take_is_refused_not_dropped(db, options, field) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant)
    options = dict(options)
    with_domain = options.pop("with_domain")
    with pytest.raises(ValidationError) as refused:
        tokens.create_token(
            db, scope.OPERATOR, tenant=tenant, name="x", domain=domain if with_domain else None, **options
        )
    assert refused.value.field == field
    assert tokens.list_tokens(db, scope.OPERATOR, tenant) == []
