"""How the setup names of domains without a brand are grouped into certificates: one tenant's
only, at most 100 names each, each domain kept in its group while it fits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.models import PlatformCertificate
from controlplane.services import platform_certificates
from controlplane.services.brands import setup_names_for
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_tenant


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


def _checks(*domain_names: str, tenant_id: int) -> platform_certificates.SetupChecks:
    return {tenant_id: {name: list(setup_names_for(name)) for name in domain_names}}


def test_plan_keeps_each_tenants_domains_in_its_own_groups(db: Session, settings) -> None:
    alpha, beta = make_tenant(db, name="Alpha"), make_tenant(db, name="Beta")
    checks = _checks("alpha.example", tenant_id=alpha.id) | _checks("beta.example", tenant_id=beta.id)

    platform_certificates.plan(db, settings, checks)

    assert groups(db, alpha.id) == {f"setup-t{alpha.id}-1": list(setup_names_for("alpha.example"))}
    assert groups(db, beta.id) == {f"setup-t{beta.id}-1": list(setup_names_for("beta.example"))}
    platform = db.scalar(select(PlatformCertificate).where(PlatformCertificate.kind == "platform"))
    assert (platform.lineage, platform.wanted_names) == (settings.hostname, settings.hostname)


def test_a_domain_dns_did_not_answer_for_keeps_its_place_and_the_others_go_on(db: Session, settings) -> None:
    tenant = make_tenant(db)
    platform_certificates.plan(db, settings, _checks("first.example", tenant_id=tenant.id))

    checks = _checks("second.example", tenant_id=tenant.id)
    checks[tenant.id]["first.example"] = None  # SERVFAIL for this one customer's names
    platform_certificates.plan(db, settings, checks)

    (names,) = groups(db, tenant.id).values()
    assert sorted(names) == sorted(setup_names_for("first.example") + setup_names_for("second.example"))


def test_a_certificate_made_for_one_tenant_is_never_served_to_a_domain_another_tenant_adds(
    db: Session, settings
) -> None:
    from controlplane.certs.acme import certificate_paths
    from controlplane.services import domains

    alpha, beta = make_tenant(db, name="Alpha"), make_tenant(db, name="Beta")
    make_domain(db, tenant=alpha, name="moving.example")
    make_domain(db, tenant=alpha, name="staying.example")
    group = PlatformCertificate(
        lineage=f"setup-t{alpha.id}-1", kind="setup", tenant_id=alpha.id,
        wanted_names="autoconfig.moving.example autoconfig.staying.example",
        cert_names="autoconfig.moving.example autoconfig.staying.example", cert_status="issued",
    )  # fmt: skip
    db.add(group)
    for path in certificate_paths(settings, group.lineage):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("issued")
    db.flush()
    served = {i.hostname for i in platform_certificates.setup_identities(db, settings)}
    assert served == {"autoconfig.moving.example", "autoconfig.staying.example"}

    domains.delete_domain(db, OPERATOR, domains.get_domain(db, OPERATOR, "moving.example"))
    make_domain(db, tenant=beta, name="moving.example")
    db.flush()

    served = {i.hostname for i in platform_certificates.setup_identities(db, settings)}
    assert served == {"autoconfig.staying.example"}  # before any renewal run
