"""Brands: hostnames a tenant may claim, appearance, which domain uses which brand, scope."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from controlplane.errors import AlreadyExists, NotFound, NotInScope, ValidationError
from controlplane.models import AuditEntry, Brand
from controlplane.services import brand_dns, brands, domains, scope
from tests import images
from tests.factories import make_domain, make_tenant

PNG = images.png()


def _brand_count(db) -> int:
    return db.scalar(select(func.count(Brand.id)))


def _create(db, settings, tenant, hostname="mail.customer.example", actor=None, **kwargs) -> Brand:
    return brands.create_brand(
        db, actor or scope.tenant_admin(tenant.id), settings, tenant=tenant, hostname=hostname,
        name=kwargs.pop("name", "Customer Mail"), **kwargs,
    )  # fmt: skip


def test_a_full_admin_creates_a_brand_stored_as_an_a_label(db, settings) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant, hostname="Mail.Bücher.example", support_url="https://help.example/")
    assert brand.hostname == "mail.xn--bcher-kva.example"
    assert (brand.name, brand.support_url, brand.cert_status) == (
        "Customer Mail",
        "https://help.example/",
        "none",
    )
    entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "brand.create")).one()
    assert entry.target == "mail.xn--bcher-kva.example" and entry.tenant_id == tenant.id


@pytest.mark.parametrize(
    "hostname, message",
    [
        ("mail customer.example", "spaces"),
        ("mail_x.customer.example", "underscores"),
        ("*.customer.example", "wildcards"),
        ("192.168.1.10", "IP address"),
        ("a" * 64 + ".example", "63"),
        ("x." * 130 + "example", "253"),
        ("localhost", "full domain name"),
        ("mail.customer.example.", "trailing dot"),
        ("mail.customer.example\nbogus", "control"),
        ("autoconfig.customer.example", "client setup"),
        ("mail.letterhead.test", "platform"),
        ("", "required"),
    ],
)
def test_hostnames_that_are_not_server_names_are_refused_and_nothing_is_written(
    db, settings, hostname, message
) -> None:
    tenant = make_tenant(db)
    with pytest.raises(ValidationError, match=message) as refused:
        _create(db, settings, tenant, hostname=hostname)
    assert refused.value.field == "hostname"
    assert _brand_count(db) == 0


def test_another_tenants_brand_hostname_is_refused_without_saying_whose(db, settings) -> None:
    first, second = make_tenant(db, name="First"), make_tenant(db, name="Second")
    _create(db, settings, first)
    with pytest.raises(AlreadyExists) as refused:
        _create(db, settings, second, hostname="MAIL.customer.example")
    assert "First" not in str(refused.value)
    assert _brand_count(db) == 1


def test_a_name_inside_a_domain_hosted_by_another_tenant_cannot_be_squatted(db, settings) -> None:
    victim, attacker = make_tenant(db), make_tenant(db)
    make_domain(db, tenant=victim, name="victim.example")
    with pytest.raises(ValidationError, match="hosted by someone else"):
        _create(db, settings, attacker, hostname="mail.victim.example")
    with pytest.raises(ValidationError, match="hosted by someone else"):
        _create(db, settings, attacker, hostname="victim.example")
    assert _create(db, settings, victim, hostname="mail.victim.example").tenant_id == victim.id


def test_domain_admins_and_other_tenants_cannot_create_or_change_brands(db, settings) -> None:
    tenant, other = make_tenant(db), make_tenant(db)
    domain = make_domain(db, tenant=tenant)
    brand = _create(db, settings, tenant)
    with pytest.raises(NotInScope):
        _create(
            db, settings, tenant, hostname="mail.two.example", actor=scope.domain_admin(tenant.id, domain.id)
        )
    with pytest.raises(NotFound):
        _create(db, settings, tenant, hostname="mail.two.example", actor=scope.tenant_admin(other.id))
    with pytest.raises(NotFound):
        brands.update_brand(db, scope.tenant_admin(other.id), settings, brand, name="Hijacked")
    with pytest.raises(NotInScope):
        brands.set_domain_brand(db, scope.domain_admin(tenant.id, domain.id), domain, None)
    with pytest.raises(NotFound):
        brands.delete_brand(db, scope.tenant_admin(other.id), brand)
    assert brand.name == "Customer Mail" and _brand_count(db) == 1


def test_a_domain_can_only_use_a_brand_of_its_own_tenant(db, settings) -> None:
    tenant, other = make_tenant(db), make_tenant(db)
    foreign = _create(db, settings, other, hostname="mail.other.example")
    domain = make_domain(db, tenant=tenant)
    with pytest.raises(NotFound):
        brands.set_domain_brand(db, scope.tenant_admin(tenant.id), domain, foreign)
    assert domain.brand_id is None
    own = _create(db, settings, tenant)
    brands.set_domain_brand(db, scope.tenant_admin(tenant.id), domain, own)
    assert domain.brand is own and brands.server_hostname(settings, domain) == "mail.customer.example"


def test_deleting_a_brand_returns_its_domains_to_the_platform_host(db, settings) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant)
    domain = make_domain(db, tenant=tenant)
    brands.set_domain_brand(db, scope.OPERATOR, domain, brand)
    brands.delete_brand(db, scope.tenant_admin(tenant.id), brand)
    db.expire_all()
    assert domain.brand_id is None
    assert brands.server_hostname(settings, domain) == settings.hostname


def test_one_shared_brand_per_tenant(db, settings) -> None:
    tenant = make_tenant(db)
    first = _create(db, settings, tenant, shared=True)
    second = _create(db, settings, tenant, hostname="mail.reseller.example", shared=True)
    db.refresh(first)
    assert (first.shared, second.shared) == (False, True)
    brands.update_brand(db, scope.tenant_admin(tenant.id), settings, first, shared=True)
    db.refresh(second)
    assert (first.shared, second.shared) == (True, False)


def test_changing_the_hostname_starts_the_certificate_afresh(db, settings) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant)
    brand.cert_status, brand.cert_names = "issued", "mail.customer.example"
    brands.update_brand(
        db, scope.tenant_admin(tenant.id), settings, brand, hostname="webmail.customer.example"
    )
    assert (brand.hostname, brand.cert_status, brand.cert_names) == ("webmail.customer.example", "none", "")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"name": " "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Evil\x1b[31m"}, "name"),
        ({"support_url": "javascript:alert(1)"}, "support_url"),
        ({"support_url": 'https://help.example/"><script>'}, "support_url"),
        ({"hostname": "bad host"}, "hostname"),
    ],
)
def test_bad_updates_change_nothing(db, settings, changes, field) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant, support_url="https://help.example/")
    with pytest.raises(ValidationError) as refused:
        brands.update_brand(
            db, scope.tenant_admin(tenant.id), settings, brand, **{"name": "New name", **changes}
        )
    assert refused.value.field == field
    db.refresh(brand)
    assert (brand.name, brand.support_url, brand.hostname) == (
        "Customer Mail",
        "https://help.example/",
        "mail.customer.example",
    )


def test_the_support_link_can_be_removed(db, settings) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant, support_url="https://help.example/")
    brands.update_brand(db, scope.tenant_admin(tenant.id), settings, brand, support_url="")
    assert brand.support_url is None


@pytest.mark.parametrize(
    "data, message",
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'><rect", "not a well-formed SVG"),
        (
            b"<?xml version='1.0'?><!DOCTYPE svg [<!ENTITY x 'y'>]><svg xmlns='http://www.w3.org/2000/svg'/>",
            "DOCTYPE",
        ),
        (b"<svg><rect/></svg>", "not an SVG image"),
        (b"GIF8" + b"\0" * 10, "PNG, JPEG, WebP or SVG"),
        (images.png(8, 8), "8×8 pixels"),
        (images.webp_header(5000, 100), "5000×100 pixels"),
        (PNG + b"\0" * (256 * 1024), "256 KB"),
        (b"", "empty"),
    ],
)
def test_logos_must_be_small_images_of_a_known_kind(db, settings, data, message) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant)
    with pytest.raises(ValidationError, match=message):
        brands.set_brand_image(db, scope.tenant_admin(tenant.id), brand, "logo", data)
    assert brand.logo is None
    brands.set_brand_image(db, scope.tenant_admin(tenant.id), brand, "logo", PNG)
    assert (brand.logo, brand.logo_type) == (PNG, "image/png")
    # An empty logo never removes the one there; only None does.
    with pytest.raises(ValidationError, match="empty"):
        brands.set_brand_image(db, scope.tenant_admin(tenant.id), brand, "logo", b"")
    assert brand.logo == PNG
    brands.set_brand_image(db, scope.tenant_admin(tenant.id), brand, "logo", None)
    assert (brand.logo, brand.logo_type) == (None, None)


def test_domain_admins_see_only_the_brand_their_domain_uses(db, settings) -> None:
    tenant = make_tenant(db)
    used, unused = _create(db, settings, tenant), _create(db, settings, tenant, hostname="mail.two.example")
    domain = make_domain(db, tenant=tenant)
    brands.set_domain_brand(db, scope.OPERATOR, domain, used)
    actor = scope.domain_admin(tenant.id, domain.id)
    assert brands.list_brands(db, actor, tenant) == [used]
    assert brands.get_brand(db, actor, used.id) is used
    with pytest.raises(NotFound):
        brands.get_brand(db, actor, unused.id)
    with pytest.raises(NotFound):
        brands.get_brand(db, scope.tenant_admin(make_tenant(db).id), used.id)


def test_a_request_host_finds_its_brand_by_brand_host_or_setup_name(db, settings) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant, hostname="mail.reseller.example")
    domain = make_domain(db, tenant=tenant, name="customer.example")
    brands.set_domain_brand(db, scope.OPERATOR, domain, brand)
    assert brands.find_brand_for_host(db, "MAIL.reseller.example:8443") is brand
    assert brands.find_brand_for_host(db, "autoconfig.customer.example") is brand
    assert brands.find_brand_for_host(db, "mta-sts.customer.example") is brand
    for host in ("mail.letterhead.test", "autoconfig.other.example", "bad host", "[::1]:443", ""):
        assert brands.find_brand_for_host(db, host) is None


def test_the_mta_sts_policy_names_the_brand_host_and_its_id_follows_the_policy(db, settings) -> None:
    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="customer.example")
    before = brand_dns.mta_sts_id(settings, domain)
    assert "mx: mail.letterhead.test\n" in brand_dns.mta_sts_policy(settings, domain)
    brands.set_domain_brand(db, scope.OPERATOR, domain, _create(db, settings, tenant))
    policy = brand_dns.mta_sts_policy(settings, domain)
    assert policy.startswith("version: STSv1\nmode: testing\n") and "mx: mail.customer.example\n" in policy
    assert brand_dns.mta_sts_id(settings, domain) != before


def test_domains_refuse_nothing_new_when_brands_exist(db, settings) -> None:
    tenant = make_tenant(db)
    _create(db, settings, tenant, hostname="mail.newcustomer.example")
    domain = domains.create_domain(
        db,
        scope.tenant_admin(tenant.id),
        tenant=tenant,
        name="newcustomer.example",
        max_mailboxes=1,
        max_aliases=1,
    )
    assert domain.brand_id is None


@pytest.mark.integration  # a real dnsmasq on loopback
def test_dns_states_match_the_check_just_made_and_the_one_kept_on_the_brand(db, settings) -> None:
    import dataclasses

    from tests.dnsserver import dnsmasq

    tenant = make_tenant(db)
    brand = _create(db, settings, tenant, hostname="mail.customer.example")
    domain = make_domain(db, tenant=tenant, name="customer.example")
    other = make_domain(db, tenant=tenant, name="other.example")
    brands.set_domain_brand(db, scope.OPERATOR, domain, brand)
    before = brand_dns.dns_states(settings, domain)
    assert before.checked_at is None and {s.state for s in before.records} == {"unchecked"}
    records = [
        "--host-record=mail.customer.example,127.0.0.1",
        "--mx-host=customer.example,mail.letterhead.test,10",
    ]
    for _resolver, port in dnsmasq(records, zones=["customer.example"]):
        local = dataclasses.replace(settings, dns_resolver=f"127.0.0.1:{port}")
        report = brand_dns.check_domain_dns(db, scope.tenant_admin(tenant.id), local, domain)
        # A domain admin checks its own domain only; another domain's admin sees no such brand.
        mine = brand_dns.check_brand_dns(db, scope.domain_admin(tenant.id, domain.id), local, brand)
        assert [r.domain for r in mine] == [domain.name]
        with pytest.raises(NotFound):
            brand_dns.check_brand_dns(db, scope.domain_admin(tenant.id, other.id), local, brand)
        report = brand_dns.check_domain_dns(db, scope.tenant_admin(tenant.id), local, domain)
    fresh, kept = brand_dns.dns_states(settings, domain, report), brand_dns.dns_states(settings, domain)
    assert fresh == kept and kept.checked_at == report.checked_at
    states = {(s.record.name, s.record.type): (s.state, s.found) for s in kept.records}
    assert states[("mail.customer.example", "A")] == ("ok", ("127.0.0.1",))
    assert states[("customer.example", "MX")][0] == "wrong"
    assert states[("autoconfig.customer.example", "CNAME")][0] == "missing"


def test_a_domains_srv_records_name_the_ports_the_installation_listens_on(db, settings) -> None:
    import dataclasses

    tenant = make_tenant(db)
    domain = make_domain(db, tenant=tenant, name="customer.example")
    brands.set_domain_brand(db, scope.OPERATOR, domain, _create(db, settings, tenant))

    def srv(settings) -> dict[str, str]:
        return {r.name: r.value for r in brand_dns.dns_plan(settings, domain) if r.type == "SRV"}

    assert settings.profile == "development"
    assert srv(settings)["_submissions._tcp.customer.example"] == "0 1 2465 mail.customer.example"
    assert srv(settings)["_imaps._tcp.customer.example"] == "0 1 2993 mail.customer.example"
    assert srv(settings)["_imap._tcp.customer.example"] == "0 0 0 ."
    moved = dataclasses.replace(settings, ports={**settings.ports, "pop3s": 10995})
    assert srv(moved)["_pop3s._tcp.customer.example"] == "0 1 10995 mail.customer.example"


@pytest.mark.parametrize(
    ("hostname", "reason"),
    [
        ("mail.xn--zzinjd.test", "it holds symbols that are not allowed in names"),
        ("mail.p\u0430ypal.example", "mixes Latin and Cyrillic letters"),  # a Cyrillic а
    ],
)
def test_brand_hosts_refused_by_idna_2008_or_mixed_scripts_write_nothing(
    db, settings, hostname: str, reason: str
) -> None:
    tenant = make_tenant(db)
    with pytest.raises(ValidationError) as refused:
        _create(db, settings, tenant, hostname=hostname)
    assert reason in refused.value.message
    assert refused.value.field == "hostname"
    assert _brand_count(db) == 0
    assert db.scalars(select(AuditEntry).where(AuditEntry.action == "brand.create")).all() == []


def test_every_domain_asks_for_tls_reports_at_the_platform_host(db, settings) -> None:
    domain = make_domain(db, name="reports.test")

    tls_rpt = [r.value for r in brand_dns.dns_plan(settings, domain) if r.name == "_smtp._tls.reports.test"]

    # Letterhead reads that address itself (services/tls_reports.py), with or without an operator's.
    assert settings.postmaster_address == ""
    assert tls_rpt == [f"v=TLSRPTv1; rua=mailto:tls-reports@{settings.hostname}"]


def test_an_svg_logo_is_kept_only_as_rebuilt_without_script_or_outside_references(db, settings) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant)
    brands.set_brand_image(db, scope.tenant_admin(tenant.id), brand, "logo_dark", images.SVG_WITH_SCRIPT)
    assert brand.logo_dark_type == "image/svg+xml"
    kept = brand.logo_dark.decode()
    for bad in ("script", "onload", "alert", "tracker.test", "<image"):
        assert bad not in kept, bad
    assert '<rect width="20" height="20" fill="#3a6ee8"' in kept


def test_the_look_is_checked_whole_and_cleared_field_by_field(db, settings) -> None:
    tenant = make_tenant(db)
    brand = _create(db, settings, tenant)
    admin = scope.tenant_admin(tenant.id)
    brands.update_brand(db, admin, settings, brand, accent_colour="#ABC", page_title="Acme webmail",
                        footer_text="Acme Ltd, 1 Main Street")  # fmt: skip
    assert (brand.accent_colour, brand.page_title, brand.footer_text) == (
        "#aabbcc", "Acme webmail", "Acme Ltd, 1 Main Street",
    )  # fmt: skip
    for field, value, words in (
        ("accent_colour", "blue; } body { display:none", "written like #3a6ee8"),
        ("page_title", "two\nlines", "one line"),
        ("footer_text", "x" * 201, "at most 200"),
    ):
        with pytest.raises(ValidationError, match=words):
            brands.update_brand(db, admin, settings, brand, name="Renamed", **{field: value})
    assert (brand.name, brand.accent_colour) == ("Customer Mail", "#aabbcc")  # nothing changed
    brands.update_brand(db, admin, settings, brand, accent_colour=None, page_title="", footer_text=None)
    assert (brand.accent_colour, brand.page_title, brand.footer_text) == (None, None, None)
    with pytest.raises((NotFound, NotInScope)):
        brands.update_brand(
            db, scope.tenant_admin(make_tenant(db).id), settings, brand, accent_colour="#000000"
        )


def test_a_brand_certificate_is_served_only_for_the_domains_using_the_brand_now(db, settings) -> None:
    from controlplane.certs.acme import certificate_paths

    tenant = make_tenant(db)
    brand = _create(db, settings, tenant, hostname="mail.served.example")
    domain = make_domain(db, tenant=tenant, name="leaving.example")
    brands.set_domain_brand(db, scope.tenant_admin(tenant.id), domain, brand)
    brand.cert_names = "mail.served.example autoconfig.leaving.example"
    for path in certificate_paths(settings, brand.hostname):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("issued")
    db.flush()
    assert {i.hostname for i in brands.served_identities(db, settings)} == {
        "mail.served.example", "autoconfig.leaving.example"
    }  # fmt: skip

    brands.set_domain_brand(db, scope.tenant_admin(tenant.id), domain, None)
    db.flush()

    assert {i.hostname for i in brands.served_identities(db, settings)} == {"mail.served.example"}
