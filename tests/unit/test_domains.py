from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controlplane.errors import AlreadyExists, NotFound, NotInScope, ValidationError
from controlplane.models import Alias, Domain, Mailbox
from controlplane.services import aliases, domains, mailboxes, scope, storage
from tests.factories import KB, make_alias, make_domain, make_mailbox, make_tenant


def _domain_count(db) -> int:
    return db.scalar(select(func.count(Domain.id)))


def _stored_limits(db, domain: Domain) -> tuple[int, int, int]:
    columns = (Domain.max_mailboxes, Domain.max_aliases, Domain.max_mailbox_bytes)
    return tuple(db.execute(select(*columns).where(Domain.id == domain.id)).one())


def _create(db, actor, tenant, name: str = "example.com", **limits) -> Domain:
    limits.setdefault("max_mailboxes", 5)
    limits.setdefault("max_aliases", 5)
    return domains.create_domain(db, actor, tenant=tenant, name=name, **limits)


def test_tenant_admin_creates_a_domain_stored_in_punycode(db) -> None:
    tenant = make_tenant(db)
    domain = _create(db, scope.tenant_admin(tenant.id), tenant, name="Bücher.Example")
    assert domain.name == "xn--bcher-kva.example"
    assert domain.display_name == "bücher.example"
    assert domain.tenant_id == tenant.id
    assert domains.find_domain(db, "xn--bcher-kva.example") is domain


def test_domain_largest_mailbox_defaults_to_the_plan(db) -> None:
    tenant = make_tenant(db, max_mailbox_bytes=50 * KB)
    assert _create(db, scope.OPERATOR, tenant).max_mailbox_bytes == 50 * KB


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("example.com", "example.com"),
        ("example.com", "EXAMPLE.com"),
        ("example.com", "Example.Com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("bücher.example", "XN--BCHER-KVA.Example"),
        ("bücher.example", "BÜCHER.example"),
        ("xn--bcher-kva.example", "bücher.example"),
    ],
)
def test_same_domain_in_any_spelling_already_exists(db, first: str, second: str) -> None:
    _create(db, scope.OPERATOR, make_tenant(db), name=first)
    before = _domain_count(db)
    with pytest.raises(AlreadyExists) as caught:
        _create(db, scope.OPERATOR, make_tenant(db), name=second)
    assert "already hosted" in caught.value.message
    assert _domain_count(db) == before


@pytest.mark.parametrize(
    "name", ["example.com.", "exa mple.com", 'ex"ample.com', "ex{ample.com", "localhost", "xn--zz.com", ""]
)
def test_bad_domain_names_are_refused_and_nothing_written(db, name: str) -> None:
    tenant = make_tenant(db)
    with pytest.raises(ValidationError) as caught:
        _create(db, scope.OPERATOR, tenant, name=name)
    assert caught.value.field == "name"
    assert _domain_count(db) == 0


@pytest.mark.parametrize(
    "limits",
    [
        {"max_mailboxes": -1},
        {"max_mailboxes": True},
        {"max_mailboxes": 1.5},
        {"max_aliases": -1},
        {"max_aliases": False},
        {"max_mailbox_bytes": 0},
        {"max_mailbox_bytes": -KB},
        {"max_mailbox_bytes": "5GB"},
    ],
)
def test_negative_bool_and_non_integer_domain_limits_are_refused(db, limits) -> None:
    tenant = make_tenant(db)
    with pytest.raises(ValidationError):
        _create(db, scope.OPERATOR, tenant, **limits)
    assert _domain_count(db) == 0


def test_bool_largest_mailbox_is_refused(db) -> None:
    with pytest.raises(ValidationError):
        _create(db, scope.OPERATOR, make_tenant(db), max_mailbox_bytes=True)


def test_zero_limits_are_allowed(db) -> None:
    domain = _create(db, scope.OPERATOR, make_tenant(db), max_mailboxes=0, max_aliases=0)
    assert (domain.max_mailboxes, domain.max_aliases) == (0, 0)


def test_domain_admin_cannot_create_domains(db) -> None:
    domain = make_domain(db)
    with pytest.raises(NotInScope):
        _create(db, scope.domain_admin(domain.tenant_id, domain.id), domain.tenant)
    assert _domain_count(db) == 1


def test_tenant_admin_cannot_create_a_domain_in_another_tenant(db) -> None:
    mine, other = make_tenant(db), make_tenant(db)
    with pytest.raises(NotFound):
        _create(db, scope.tenant_admin(mine.id), other)
    assert _domain_count(db) == 0


def test_domain_admin_cannot_raise_domain_limits(db) -> None:
    domain = make_domain(db, max_mailboxes=2, max_aliases=2, max_mailbox_bytes=10 * KB)
    actor = scope.domain_admin(domain.tenant_id, domain.id)
    for limits in ({"max_mailboxes": 100}, {"max_aliases": 100}, {"max_mailbox_bytes": 100 * KB}):
        with pytest.raises(NotInScope):
            domains.update_domain(db, actor, domain, **limits)
    assert _stored_limits(db, domain) == (2, 2, 10 * KB)


def test_domain_admin_cannot_deactivate_or_delete_own_domain(db) -> None:
    domain = make_domain(db)
    actor = scope.domain_admin(domain.tenant_id, domain.id)
    with pytest.raises(NotInScope):
        domains.update_domain(db, actor, domain, active=False)
    with pytest.raises(NotInScope):
        domains.delete_domain(db, actor, domain)
    assert db.scalar(select(Domain.active).where(Domain.id == domain.id)) is True
    assert _domain_count(db) == 1


def test_domain_admin_of_another_domain_gets_not_found(db) -> None:
    mine = make_domain(db)
    other = make_domain(db, tenant=mine.tenant)
    actor = scope.domain_admin(mine.tenant_id, mine.id)
    with pytest.raises(NotFound):
        domains.update_domain(db, actor, other, max_mailboxes=100)
    with pytest.raises(NotFound):
        domains.delete_domain(db, actor, other)
    with pytest.raises(NotFound):
        domains.get_domain(db, actor, other.name)
    assert _domain_count(db) == 2


def test_other_tenants_admin_cannot_update_or_delete_a_domain(db) -> None:
    domain = make_domain(db, max_mailboxes=3)
    intruder = scope.tenant_admin(make_tenant(db).id)
    with pytest.raises(NotFound):
        domains.update_domain(db, intruder, domain, max_mailboxes=100)
    with pytest.raises(NotFound):
        domains.delete_domain(db, intruder, domain)
    assert _stored_limits(db, domain)[0] == 3
    assert _domain_count(db) == 1


def test_tenant_admin_updates_limits_of_own_domain(db) -> None:
    domain = make_domain(db, max_mailboxes=2, max_aliases=2, max_mailbox_bytes=10 * KB)
    domains.update_domain(
        db,
        scope.tenant_admin(domain.tenant_id),
        domain,
        max_mailboxes=7,
        max_aliases=8,
        max_mailbox_bytes=9 * KB,
    )
    assert _stored_limits(db, domain) == (7, 8, 9 * KB)


def test_mailbox_limit_drops_exactly_to_existing_count_but_not_below(db) -> None:
    domain = make_domain(db, max_mailboxes=5)
    make_mailbox(db, domain=domain)
    make_mailbox(db, domain=domain)
    with pytest.raises(ValidationError) as caught:
        domains.update_domain(db, scope.OPERATOR, domain, max_mailboxes=1)
    assert "already has 2 mailboxes" in caught.value.message
    assert _stored_limits(db, domain)[0] == 5
    domains.update_domain(db, scope.OPERATOR, domain, max_mailboxes=2)
    assert _stored_limits(db, domain)[0] == 2


def test_alias_limit_drops_exactly_to_existing_count_but_not_below(db) -> None:
    domain = make_domain(db, max_aliases=5)
    make_alias(db, domain=domain, local_part="a", destinations=["x@elsewhere.example"])
    make_alias(db, domain=domain, local_part="b", destinations=["x@elsewhere.example"])
    with pytest.raises(ValidationError) as caught:
        domains.update_domain(db, scope.OPERATOR, domain, max_aliases=1)
    assert "already has 2 aliases" in caught.value.message
    assert _stored_limits(db, domain)[1] == 5
    domains.update_domain(db, scope.OPERATOR, domain, max_aliases=2)
    assert _stored_limits(db, domain)[1] == 2


def test_largest_mailbox_cannot_drop_below_an_existing_mailbox_quota(db) -> None:
    domain = make_domain(db, max_mailbox_bytes=100 * KB)
    make_mailbox(db, domain=domain, quota=5 * KB)
    make_mailbox(db, domain=domain, quota=20 * KB)
    with pytest.raises(ValidationError) as caught:
        domains.update_domain(db, scope.OPERATOR, domain, max_mailbox_bytes=20 * KB - 1)
    assert "20 KB" in caught.value.message
    assert _stored_limits(db, domain)[2] == 100 * KB
    domains.update_domain(db, scope.OPERATOR, domain, max_mailbox_bytes=20 * KB)
    assert _stored_limits(db, domain)[2] == 20 * KB


@pytest.mark.parametrize("limits", [{"max_mailboxes": -1}, {"max_aliases": True}, {"max_mailbox_bytes": 0}])
def test_update_domain_refuses_bad_limit_values(db, limits) -> None:
    domain = make_domain(db, max_mailboxes=2, max_aliases=2, max_mailbox_bytes=10 * KB)
    with pytest.raises(ValidationError):
        domains.update_domain(db, scope.OPERATOR, domain, **limits)
    assert _stored_limits(db, domain) == (2, 2, 10 * KB)


def test_refused_domain_update_changes_nothing(db) -> None:
    domain = make_domain(db, max_mailboxes=2, max_aliases=2, max_mailbox_bytes=100 * KB)
    make_mailbox(db, domain=domain, quota=20 * KB)
    with pytest.raises(ValidationError):
        domains.update_domain(db, scope.OPERATOR, domain, max_mailboxes=50, max_mailbox_bytes=10 * KB)
    assert _stored_limits(db, domain) == (2, 2, 100 * KB)


def test_deleting_a_domain_removes_its_mailboxes_and_aliases(db) -> None:
    domain = make_domain(db)
    make_mailbox(db, domain=domain, local_part="john")
    make_alias(db, domain=domain, local_part="info", destinations=[f"john@{domain.name}"])
    domains.delete_domain(db, scope.tenant_admin(domain.tenant_id), domain)
    assert _domain_count(db) == 0
    assert domains.domain_counts(db, domain).mailboxes == 0
    assert domains.domain_counts(db, domain).aliases == 0


def test_domain_counts_report_mailboxes_aliases_and_allocated_bytes(db) -> None:
    domain = make_domain(db)
    make_mailbox(db, domain=domain, quota=3 * KB, local_part="a")
    make_mailbox(db, domain=domain, quota=4 * KB, local_part="b")
    make_alias(db, domain=domain, local_part="c", destinations=[f"a@{domain.name}"])
    assert domains.domain_counts(db, domain) == domains.DomainCounts(
        mailboxes=2, aliases=1, allocated_bytes=7 * KB
    )


def _counted(db, domain: Domain) -> domains.DomainCounts:
    """The counts the slow way, row by row, to check the ones the database keeps."""
    mailboxes, allocated = db.execute(
        select(func.count(Mailbox.id), func.coalesce(func.sum(Mailbox.quota_bytes), 0)).where(
            Mailbox.domain_id == domain.id
        )
    ).one()
    aliases = db.scalar(select(func.count(Alias.id)).where(Alias.domain_id == domain.id))
    return domains.DomainCounts(mailboxes=mailboxes, aliases=aliases, allocated_bytes=allocated)


def test_domain_counts_follow_every_change_to_mailboxes_and_aliases(db) -> None:
    domain, other = make_domain(db), make_domain(db)
    operator = scope.OPERATOR
    john = make_mailbox(db, domain=domain, quota=3 * KB, local_part="john")
    jane = make_mailbox(db, domain=domain, quota=4 * KB, local_part="jane")
    make_mailbox(db, domain=other, quota=5 * KB, local_part="solo")
    make_alias(db, domain=domain, local_part="team", destinations=[f"john@{domain.name}"])
    make_alias(db, domain=domain, local_part="all", destinations=[f"team@{domain.name}", "x@elsewhere.test"])
    assert domains.domain_counts(db, domain) == _counted(db, domain) == domains.DomainCounts(2, 2, 7 * KB)
    mailboxes.set_mailbox_quota(db, operator, jane, 6 * KB)
    assert domains.domain_counts(db, domain) == domains.DomainCounts(2, 2, 9 * KB)
    # John's alias "team" is left empty and goes; "all" keeps its external destination.
    mailboxes.delete_mailbox(db, operator, john)
    assert domains.domain_counts(db, domain) == _counted(db, domain) == domains.DomainCounts(1, 1, 6 * KB)
    aliases.delete_alias(db, operator, aliases.find_alias(db, f"all@{domain.name}"))
    assert domains.domain_counts(db, domain) == _counted(db, domain) == domains.DomainCounts(1, 0, 6 * KB)
    assert domains.domain_counts(db, other) == _counted(db, other) == domains.DomainCounts(1, 0, 5 * KB)
    assert storage.allocated_bytes(db, domain.tenant) == 6 * KB
    summaries = domains.list_domain_summaries(db, operator, domain.tenant)
    assert [summary.counts for summary in summaries] == [domains.DomainCounts(1, 0, 6 * KB)]


def test_list_domains_is_scoped_to_the_actor(db) -> None:
    tenant, other_tenant = make_tenant(db), make_tenant(db)
    a = make_domain(db, tenant=tenant, name="a.example")
    b = make_domain(db, tenant=tenant, name="b.example")
    c = make_domain(db, tenant=other_tenant, name="c.example")
    assert domains.list_domains(db, scope.OPERATOR) == [a, b, c]
    assert domains.list_domains(db, scope.OPERATOR, other_tenant) == [c]
    assert domains.list_domains(db, scope.tenant_admin(tenant.id)) == [a, b]
    assert domains.list_domains(db, scope.tenant_admin(tenant.id), tenant) == [a, b]
    assert domains.list_domains(db, scope.domain_admin(tenant.id, b.id)) == [b]
    with pytest.raises(NotFound):
        domains.list_domains(db, scope.tenant_admin(tenant.id), other_tenant)


def test_get_domain_finds_by_any_spelling_within_scope(db) -> None:
    domain = make_domain(db, name="bücher.example")
    actor = scope.tenant_admin(domain.tenant_id)
    assert domains.get_domain(db, actor, "BÜCHER.example") is domain
    assert domains.get_domain(db, actor, "xn--bcher-kva.example") is domain
    assert domains.get_domain(db, scope.domain_admin(domain.tenant_id, domain.id), domain.name) is domain


def test_get_domain_across_tenants_is_not_found(db) -> None:
    make_domain(db, name="theirs.example")
    with pytest.raises(NotFound) as caught:
        domains.get_domain(db, scope.tenant_admin(make_tenant(db).id), "theirs.example")
    assert "theirs.example" in caught.value.message


@pytest.mark.parametrize("name", ["missing.example", "not a domain", "example.com."])
def test_get_domain_of_unknown_or_malformed_name_is_not_found(db, name: str) -> None:
    make_domain(db, name="example.com")
    with pytest.raises(NotFound):
        domains.get_domain(db, scope.OPERATOR, name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("xn--zzinjd.test", "it holds symbols that are not allowed in names"),
        ("\U0001f600.test", "it holds symbols that are not allowed in names"),
        ("p\u0430ypal.com", "mixes Latin and Cyrillic letters"),  # a Cyrillic а among Latin letters
    ],
)
def test_domains_refused_by_idna_2008_or_mixed_scripts_write_nothing(db, name: str, reason: str) -> None:
    from controlplane.models import AuditEntry

    tenant = make_tenant(db)
    audit_before = db.scalar(select(func.count(AuditEntry.id)))
    with pytest.raises(ValidationError) as caught:
        _create(db, scope.tenant_admin(tenant.id), tenant, name=name)
    assert reason in caught.value.message
    assert caught.value.field == "name"
    assert _domain_count(db) == 0
    assert db.scalar(select(func.count(AuditEntry.id))) == audit_before
