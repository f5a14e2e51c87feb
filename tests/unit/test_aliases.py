from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controlplane.errors import AlreadyExists, LimitReached, NotFound, ValidationError
from controlplane.models import Alias, AliasDestination
from controlplane.services import aliases, scope
from tests.factories import make_alias, make_domain, make_mailbox, make_tenant

EXTERNAL = "someone@elsewhere.example"


def _alias_count(db) -> int:
    return db.scalar(select(func.count(Alias.id)))


def _destination_count(db) -> int:
    return db.scalar(select(func.count(AliasDestination.id)))


def _stored_destinations(db, alias: Alias) -> list[str]:
    return list(
        db.scalars(
            select(AliasDestination.address)
            .where(AliasDestination.alias_id == alias.id)
            .order_by(AliasDestination.address)
        )
    )


def _create(db, domain, local_part: str, destinations, actor=scope.OPERATOR) -> Alias:
    return aliases.create_alias(db, actor, domain=domain, local_part=local_part, destinations=destinations)


def test_alias_destinations_are_normalized_deduplicated_and_sorted(db) -> None:
    domain = make_domain(db)
    make_mailbox(db, domain=domain, local_part="john")
    alias = _create(
        db,
        domain,
        "Info",
        [" Zed@Elsewhere.Example ", f"JOHN@{domain.name.upper()}", "zed@elsewhere.example"],
    )
    assert alias.address == f"info@{domain.name}"
    assert _stored_destinations(db, alias) == [f"john@{domain.name}", "zed@elsewhere.example"]


def test_alias_destinations_may_be_given_as_one_separated_string(db) -> None:
    alias = _create(db, make_domain(db), "list", "a@one.example, b@two.example; c@three.example,")
    assert _stored_destinations(db, alias) == ["a@one.example", "b@two.example", "c@three.example"]


def test_external_destinations_in_unicode_are_stored_as_punycode(db) -> None:
    alias = _create(db, make_domain(db), "fwd", ["Jane@Bücher.Example"])
    assert _stored_destinations(db, alias) == ["jane@xn--bcher-kva.example"]


def test_alias_may_forward_to_another_alias(db) -> None:
    domain = make_domain(db)
    make_alias(db, domain=domain, local_part="first", destinations=[EXTERNAL])
    alias = _create(db, domain, "second", [f"first@{domain.name}"])
    assert _stored_destinations(db, alias) == [f"first@{domain.name}"]


@pytest.mark.parametrize("destinations", [[], [""], ["  "], "", "not-an-address", ["a@b@c.example"]])
def test_alias_without_valid_destinations_is_refused(db, destinations) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError) as caught:
        _create(db, domain, "info", destinations)
    assert caught.value.field == "destinations"
    assert (_alias_count(db), _destination_count(db)) == (0, 0)


def test_alias_limit_allows_exactly_n(db) -> None:
    domain = make_domain(db, name="two.example", max_aliases=2)
    _create(db, domain, "a", [EXTERNAL])
    _create(db, domain, "b", [EXTERNAL])
    with pytest.raises(LimitReached) as caught:
        _create(db, domain, "c", [EXTERNAL])
    assert "at most 2 aliases" in caught.value.message
    assert (_alias_count(db), _destination_count(db)) == (2, 2)


def test_catch_all_counts_against_the_alias_limit(db) -> None:
    domain = make_domain(db, max_aliases=1)
    _create(db, domain, "@", [EXTERNAL])
    with pytest.raises(LimitReached):
        _create(db, domain, "info", [EXTERNAL])
    assert _alias_count(db) == 1


def test_destination_in_one_of_the_tenants_own_domains_must_exist(db) -> None:
    domain = make_domain(db, name="bücher.example")
    sibling = make_domain(db, tenant=domain.tenant)
    with pytest.raises(ValidationError) as caught:
        _create(db, sibling, "fwd", [EXTERNAL, "nobody@BÜCHER.example"])
    assert "neither a mailbox nor an alias" in caught.value.message
    assert "nobody@xn--bcher-kva.example" in caught.value.message
    assert (_alias_count(db), _destination_count(db)) == (0, 0)
    make_mailbox(db, domain=domain, local_part="nobody")
    assert _create(db, sibling, "fwd", ["nobody@bücher.example"]).id is not None


def test_another_tenants_addresses_are_outside_addresses_whether_they_exist_or_not(db) -> None:
    """Answering differently would let a tenant probe which mailboxes another tenant has."""
    theirs = make_domain(db)
    make_mailbox(db, domain=theirs, local_part="real")
    mine = make_domain(db)
    existing = _create(db, mine, "to-real", [f"real@{theirs.name}"])
    missing = _create(db, mine, "to-nobody", [f"nobody@{theirs.name}"])
    assert existing.id is not None and missing.id is not None


def test_alias_cannot_be_created_forwarding_to_its_own_address(db) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError):
        _create(db, domain, "self", [f"self@{domain.name}"])
    assert _alias_count(db) == 0


def test_alias_cannot_be_changed_to_forward_to_itself(db) -> None:
    domain = make_domain(db)
    alias = _create(db, domain, "self", [EXTERNAL])
    with pytest.raises(ValidationError) as caught:
        aliases.set_alias_destinations(db, scope.OPERATOR, alias, [f"self@{domain.name}"])
    assert "alias loop" in caught.value.message
    assert _stored_destinations(db, alias) == [EXTERNAL]


def test_two_aliases_cannot_forward_to_each_other(db) -> None:
    domain = make_domain(db)
    a = _create(db, domain, "a", [EXTERNAL])
    _create(db, domain, "b", [f"a@{domain.name}"])
    with pytest.raises(ValidationError) as caught:
        aliases.set_alias_destinations(db, scope.OPERATOR, a, [EXTERNAL, f"b@{domain.name}"])
    assert "alias loop" in caught.value.message
    assert _stored_destinations(db, a) == [EXTERNAL]


def test_a_longer_loop_across_the_tenants_domains_is_refused(db) -> None:
    one = make_domain(db)
    two = make_domain(db, tenant=one.tenant)
    a = _create(db, one, "a", [EXTERNAL])
    _create(db, two, "b", [f"a@{one.name}"])
    _create(db, one, "c", [f"b@{two.name}"])
    with pytest.raises(ValidationError):
        aliases.set_alias_destinations(db, scope.OPERATOR, a, [f"c@{one.name}"])
    assert _stored_destinations(db, a) == [EXTERNAL]


def test_shared_destinations_without_a_loop_are_fine(db) -> None:
    domain = make_domain(db)
    make_mailbox(db, domain=domain, local_part="m")
    _create(db, domain, "b", [f"m@{domain.name}"])
    _create(db, domain, "c", [f"m@{domain.name}"])
    top = _create(db, domain, "top", [f"b@{domain.name}", f"c@{domain.name}", f"m@{domain.name}"])
    assert len(_stored_destinations(db, top)) == 3


@pytest.mark.parametrize("spelling", ["@", "*", ""])
def test_catch_all_is_created_and_found_by_at_domain(db, spelling: str) -> None:
    domain = make_domain(db, name="bücher.example")
    alias = _create(db, domain, spelling, [EXTERNAL])
    assert alias.local_part == ""
    assert alias.address == "@xn--bcher-kva.example"
    assert aliases.find_alias(db, "@xn--bcher-kva.example") is alias
    assert aliases.find_alias(db, "@Bücher.example") is alias
    assert aliases.get_alias(db, scope.tenant_admin(domain.tenant_id), "*@bücher.example") is alias


def test_a_domain_has_one_catch_all(db) -> None:
    domain = make_domain(db)
    _create(db, domain, "@", [EXTERNAL])
    with pytest.raises(AlreadyExists):
        _create(db, domain, "*", ["other@elsewhere.example"])
    assert _alias_count(db) == 1


def test_alias_on_a_mailbox_address_already_exists(db) -> None:
    domain = make_domain(db)
    make_mailbox(db, domain=domain, local_part="john")
    with pytest.raises(AlreadyExists) as caught:
        _create(db, domain, "John", [EXTERNAL])
    assert "mailbox" in caught.value.message
    assert (_alias_count(db), _destination_count(db)) == (0, 0)


def test_duplicate_alias_already_exists(db) -> None:
    domain = make_domain(db)
    _create(db, domain, "info", [EXTERNAL])
    with pytest.raises(AlreadyExists):
        _create(db, domain, "INFO", ["other@elsewhere.example"])
    assert (_alias_count(db), _destination_count(db)) == (1, 1)


@pytest.mark.parametrize("local_part", ["in fo", "in'fo", "info.", "ïnfo", "in%fo", "in/fo"])
def test_bad_alias_local_parts_are_refused(db, local_part: str) -> None:
    with pytest.raises(ValidationError):
        _create(db, make_domain(db), local_part, [EXTERNAL])
    assert _alias_count(db) == 0


def test_alias_may_have_exactly_1000_destinations_but_not_1001(db) -> None:
    domain = make_domain(db)
    many = [f"user{n}@elsewhere.example" for n in range(aliases.MAX_DESTINATIONS + 1)]
    with pytest.raises(ValidationError) as caught:
        _create(db, domain, "too-many", many)
    assert "at most 1000 destinations" in caught.value.message
    assert (_alias_count(db), _destination_count(db)) == (0, 0)
    alias = _create(db, domain, "many", many[:1000])
    assert len(_stored_destinations(db, alias)) == 1000


def test_set_alias_destinations_refuses_more_than_1000(db) -> None:
    alias = _create(db, make_domain(db), "list", [EXTERNAL])
    with pytest.raises(ValidationError):
        aliases.set_alias_destinations(
            db, scope.OPERATOR, alias, [f"user{n}@elsewhere.example" for n in range(1001)]
        )
    assert _stored_destinations(db, alias) == [EXTERNAL]


def test_set_alias_destinations_replaces_the_list(db) -> None:
    alias = _create(db, make_domain(db), "list", [EXTERNAL, "b@elsewhere.example"])
    aliases.set_alias_destinations(db, scope.OPERATOR, alias, ["c@elsewhere.example"])
    assert _stored_destinations(db, alias) == ["c@elsewhere.example"]
    assert _destination_count(db) == 1


def test_deleting_an_alias_removes_its_destinations(db) -> None:
    alias = _create(db, make_domain(db), "list", [EXTERNAL, "b@elsewhere.example"])
    aliases.delete_alias(db, scope.OPERATOR, alias)
    assert (_alias_count(db), _destination_count(db)) == (0, 0)


def test_domain_admin_manages_aliases_of_own_domain(db) -> None:
    domain = make_domain(db)
    actor = scope.domain_admin(domain.tenant_id, domain.id)
    alias = _create(db, domain, "info", [EXTERNAL], actor)
    assert aliases.get_alias(db, actor, alias.address) is alias
    assert aliases.list_aliases(db, actor, domain) == [alias]
    aliases.set_alias_destinations(db, actor, alias, ["new@elsewhere.example"])
    aliases.delete_alias(db, actor, alias)
    assert _alias_count(db) == 0


@pytest.mark.parametrize("intruder_kind", ["domain_admin_of_sibling_domain", "other_tenant_admin"])
def test_outsiders_cannot_touch_an_alias(db, intruder_kind: str) -> None:
    domain = make_domain(db)
    alias = _create(db, domain, "info", [EXTERNAL])
    if intruder_kind == "domain_admin_of_sibling_domain":
        intruder = scope.domain_admin(domain.tenant_id, make_domain(db, tenant=domain.tenant).id)
    else:
        intruder = scope.tenant_admin(make_tenant(db).id)
    with pytest.raises(NotFound):
        _create(db, domain, "planted", [EXTERNAL], intruder)
    with pytest.raises(NotFound):
        aliases.get_alias(db, intruder, alias.address)
    with pytest.raises(NotFound):
        aliases.list_aliases(db, intruder, domain)
    with pytest.raises(NotFound):
        aliases.set_alias_destinations(db, intruder, alias, ["attacker@evil.example"])
    with pytest.raises(NotFound):
        aliases.delete_alias(db, intruder, alias)
    assert _alias_count(db) == 1
    assert _stored_destinations(db, alias) == [EXTERNAL]


@pytest.mark.parametrize("address", ["nobody@d.example", "not an address", "info@bad domain", "info@"])
def test_find_alias_returns_none_for_unknown_or_malformed_addresses(db, address: str) -> None:
    _create(db, make_domain(db, name="d.example"), "info", [EXTERNAL])
    assert aliases.find_alias(db, address) is None


def test_get_alias_of_unknown_address_is_not_found(db) -> None:
    with pytest.raises(NotFound):
        aliases.get_alias(db, scope.OPERATOR, "nobody@nowhere.example")


def test_changing_destinations_keeps_an_address_that_stays(db) -> None:
    domain = make_domain(db)
    make_mailbox(db, domain=domain, local_part="bob")
    alias = make_alias(db, domain=domain, local_part="team", destinations=[f"bob@{domain.name}"])
    aliases.set_alias_destinations(db, scope.OPERATOR, alias, [f"bob@{domain.name}", "x@elsewhere.test"])
    db.expire(alias)
    assert sorted(alias.destination_addresses) == [f"bob@{domain.name}", "x@elsewhere.test"]


@pytest.mark.parametrize(
    ("destination", "reason"),
    [
        ("jane@xn--zzinjd.test", "it holds symbols that are not allowed in names"),
        ("jane@p\u0430ypal.com", "mixes Latin and Cyrillic letters"),  # a Cyrillic а
    ],
)
def test_alias_destinations_refused_by_idna_2008_or_mixed_scripts_write_nothing(
    db, destination: str, reason: str
) -> None:
    domain = make_domain(db)
    with pytest.raises(ValidationError) as caught:
        _create(db, domain, "info", [EXTERNAL, destination])
    assert reason in caught.value.message
    assert caught.value.field == "destinations"
    assert (_alias_count(db), _destination_count(db)) == (0, 0)

    alias = _create(db, domain, "team", [EXTERNAL])
    with pytest.raises(ValidationError):
        aliases.set_alias_destinations(db, scope.OPERATOR, alias, [destination])
    db.expire(alias)
    assert _stored_destinations(db, alias) == [EXTERNAL]
