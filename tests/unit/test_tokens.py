from __future__ import annotations

import pytest

from controlplane.services import scope, tokens
from controlplane.services.errors import NotFound, NotInScope
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
