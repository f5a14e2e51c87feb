"""How the setup names of domains without a brand are grouped into certificates: one tenant's
only, at most 100 names each, each domain kept in its group while it fits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.models import PlatformCertificate
from controlplane.services import platform_certificates
from controlplane.services.brands import setup_names_for
from tests.factories import make_tenant


def groups(db: Session, tenant_id: int) -> dict[str, list[str]]:
    db.flush()
    rows = db.scalars(select(PlatformCertificate).where(PlatformCertificate.tenant_id == tenant_id))
    return {row.lineage: row.wanted_names.split() for row in rows}


def regroup(db: Session, tenant_id: int, domain_names: list[str]) -> dict[str, list[str]]:
    existing = list(
        db.scalars(
            select(PlatformCertificate)
            .where(PlatformCertificate.tenant_id == tenant_id)
            .order_by(PlatformCertificate.id)
        )
    )
    leading_here = {name: list(setup_names_for(name)) for name in sorted(domain_names)}
    platform_certificates._regroup(db, tenant_id, existing, leading_here)
    return groups(db, tenant_id)


def test_forty_domains_fill_one_certificate_to_the_limit_and_start_a_second(db: Session) -> None:
    tenant = make_tenant(db)
    names = [f"d{i:02}.example" for i in range(40)]

    found = regroup(db, tenant.id, names)

    first, second = f"setup-t{tenant.id}-1", f"setup-t{tenant.id}-2"
    assert sorted(found) == [first, second]
    assert len(found[first]) == 99  # 33 whole domains of 3 names: the 34th would pass 100
    assert len(found[second]) == 21
    assert sorted(found[first] + found[second]) == sorted(n for d in names for n in setup_names_for(d))


def test_a_new_domain_that_sorts_first_leaves_every_other_domain_where_it_was(db: Session) -> None:
    tenant = make_tenant(db)
    names = [f"d{i:02}.example" for i in range(40)]
    before = regroup(db, tenant.id, names)

    after = regroup(db, tenant.id, ["a-first.example", *names])

    first, second = f"setup-t{tenant.id}-1", f"setup-t{tenant.id}-2"
    assert after[first] == before[first]  # full: the newcomer goes where there is room
    assert sorted(after[second]) == sorted(before[second] + list(setup_names_for("a-first.example")))


def test_a_group_left_without_names_goes_and_tenants_never_share_one(db: Session) -> None:
    alpha, beta = make_tenant(db, name="Alpha"), make_tenant(db, name="Beta")
    regroup(db, alpha.id, [f"d{i:02}.example" for i in range(40)])
    regroup(db, beta.id, ["beta.example"])

    found = regroup(db, alpha.id, [f"d{i:02}.example" for i in range(33)])

    assert sorted(found) == [f"setup-t{alpha.id}-1"]
    assert groups(db, beta.id) == {f"setup-t{beta.id}-1": list(setup_names_for("beta.example"))}
