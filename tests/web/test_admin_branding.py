"""Edit branding in the panel: brands, their look on their own host, Server names with live DNS."""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
from sqlalchemy import select

from controlplane import create_app
from controlplane.models import AuthEvent, Brand, Domain
from tests import images
from tests.dnsserver import dnsmasq
from tests.factories import PASSWORD
from tests.web.test_admin_panel import log_in, post

PNG = images.png()


def _brand(installation, hostname: str) -> Brand | None:
    with installation.sessions() as session:
        return session.scalar(select(Brand).where(Brand.hostname == hostname))


def _create(client, hostname="mail.a.test", name="A Mail", **extra):
    return post(client, "/admin/branding", {"hostname": hostname, "name": name, **extra})


def test_a_full_admin_adds_a_brand_and_a_domain_uses_it(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    response = _create(client, support_url="https://help.a.test/")
    brand = _brand(world, "mail.a.test")
    assert response.status_code == 302 and response.headers["Location"].endswith(
        f"/admin/branding/{brand.id}"
    )
    with world.sessions() as session:
        a = session.scalar(select(Domain).where(Domain.name == "a.test"))
    post(client, "/admin/domains/a.test/brand", {"brand_id": str(brand.id)})
    page = client.get(f"/admin/branding/{brand.id}").get_data(as_text=True)
    assert "Server names" in page and "<h3>a.test</h3>" in page
    assert "_submissions._tcp.a.test" in page and "Not checked" in page
    with world.sessions() as session:
        assert session.get(Domain, a.id).brand_id == brand.id


def test_bad_hostnames_are_refused_with_the_reason_and_nothing_is_made(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    for hostname, reason in [
        ("mail a.test", "may not contain spaces"),
        ("*.a.test", "no wildcards"),
        ("10.0.0.1", "looks like an IP address"),
        ("mail.c.test", "hosted by someone else"),
    ]:
        page = _create(client, hostname=hostname)
        assert page.status_code == 302
        assert reason in client.get("/admin/branding").get_data(as_text=True)
    with world.sessions() as session:
        assert session.scalars(select(Brand)).all() == []


def test_the_brand_is_worn_at_once_on_its_own_host_only(app, world) -> None:
    client = app.test_client()
    log_in(client, "boss")
    _create(client, support_url="https://help.a.test/")
    brand = _brand(world, "mail.a.test")
    on_brand = app.test_client()
    login_page = on_brand.get("/admin/login", headers={"Host": "mail.a.test"}).get_data(as_text=True)
    assert "A Mail" in login_page and 'href="https://help.a.test/"' in login_page
    assert "A Mail" not in app.test_client().get("/admin/login").get_data(as_text=True)

    post(client, f"/admin/branding/{brand.id}", {"name": "Renamed Mail", "support_url": ""})
    login_page = on_brand.get("/admin/login", headers={"Host": "mail.a.test"}).get_data(as_text=True)
    assert "Renamed Mail" in login_page and "help.a.test" not in login_page

    token_page = client.get(f"/admin/branding/{brand.id}").get_data(as_text=True)
    import re

    token = re.search(r'name="csrf_token" value="([^"]+)"', token_page).group(1)
    client.post(
        f"/admin/branding/{brand.id}/images",
        data={"csrf_token": token, "logo": (__import__("io").BytesIO(PNG), "logo.png")},
        content_type="multipart/form-data",
    )
    login_page = on_brand.get("/admin/login", headers={"Host": "mail.a.test"}).get_data(as_text=True)
    logo_url = re.search(r'<img src="([^"]+)"', login_page).group(1)
    logo = on_brand.get(logo_url, headers={"Host": "mail.a.test"})
    assert logo.status_code == 200 and logo.data == PNG and logo.mimetype == "image/png"
    assert app.test_client().get("/branding/logo").status_code == 404


def test_domain_admins_see_their_domains_brand_read_only_and_nothing_else(app, world) -> None:
    boss = app.test_client()
    log_in(boss, "boss")
    _create(boss)
    _create(boss, hostname="mail.b.test", name="B Mail")
    brand_a, brand_b = _brand(world, "mail.a.test"), _brand(world, "mail.b.test")
    post(boss, "/admin/domains/a.test/brand", {"brand_id": str(brand_a.id)})
    post(boss, "/admin/domains/b.test/brand", {"brand_id": str(brand_b.id)})

    ann = app.test_client()
    log_in(ann, "ann@a.test")
    listing = ann.get("/admin/branding").get_data(as_text=True)
    assert "mail.a.test" in listing and "mail.b.test" not in listing and "Add a brand" not in listing
    page = ann.get(f"/admin/branding/{brand_a.id}").get_data(as_text=True)
    assert "<h3>a.test</h3>" in page and "<h3>b.test</h3>" not in page and "Delete brand" not in page
    assert ann.get(f"/admin/branding/{brand_b.id}").status_code == 404
    for url, data in [
        (f"/admin/branding/{brand_a.id}", {"name": "Hijacked"}),
        (f"/admin/branding/{brand_a.id}/delete", {"confirm": "mail.a.test"}),
        ("/admin/branding", {"hostname": "mail.evil.test", "name": "Evil"}),
        ("/admin/domains/a.test/brand", {"brand_id": ""}),
    ]:
        assert post(ann, url, data).status_code == 403
    rival = app.test_client()
    log_in(rival, "rival")
    assert rival.get(f"/admin/branding/{brand_a.id}").status_code == 404
    assert post(rival, f"/admin/branding/{brand_a.id}/dns-check").status_code == 404
    assert post(rival, "/admin/domains/c.test/brand", {"brand_id": str(brand_a.id)}).status_code == 404
    with world.sessions() as session:
        assert session.get(Brand, brand_a.id).name == "A Mail"
        assert session.scalar(select(Domain.brand_id).where(Domain.name == "c.test")) is None


@pytest.fixture
def dns_server():
    records = [
        "--host-record=mail.a.test,127.0.0.1",
        "--mx-host=a.test,mail.a.test,10",
        "--txt-record=a.test,v=spf1 a:mail.b.test -all",
        "--cname=autoconfig.a.test,mail.a.test",
    ]
    yield from dnsmasq(records, zones=["a.test"])


@pytest.mark.integration  # a real dnsmasq on loopback
def test_server_names_show_each_records_live_state_from_a_real_dns_server(
    settings, installation, world, dns_server
) -> None:
    _, port = dns_server
    app = create_app(
        {
            "LETTERHEAD_SETTINGS": dataclasses.replace(settings, dns_resolver=f"127.0.0.1:{port}"),
            "TESTING": True,
        }
    )
    client = app.test_client()
    log_in(client, "boss")
    _create(client)
    brand = _brand(world, "mail.a.test")
    post(client, "/admin/domains/a.test/brand", {"brand_id": str(brand.id)})
    post(client, f"/admin/branding/{brand.id}/dns-check")
    page = client.get(f"/admin/branding/{brand.id}").get_data(as_text=True)
    import re

    rows = {
        (m.group(2), m.group(3)): m.group(1)
        for m in re.finditer(
            r'<tr data-state="(\w+)">\s*<td><code>([^<]+)</code></td>\s*<td>(\w+)</td>', page
        )
    }
    assert rows[("mail.a.test", "A")] == "ok"
    assert rows[("a.test", "MX")] == "ok"
    assert rows[("a.test", "TXT")] == "wrong" and "v=spf1 a:mail.b.test -all" in page
    assert rows[("autoconfig.a.test", "CNAME")] == "ok"
    assert rows[("autodiscover.a.test", "CNAME")] == "missing"
    assert rows[("_submissions._tcp.a.test", "SRV")] == "missing"
    assert "Last check" in page
    app.extensions["letterhead"].dispose()


def test_the_whole_look_is_edited_in_the_panel_previewed_unsaved_and_worn_on_its_host_only(
    app, world
) -> None:
    client = app.test_client()
    log_in(client, "boss")
    _create(client)
    _create(client, hostname="mail.b.test", name="B Mail")
    brand = _brand(world, "mail.a.test")
    page = client.get(f"/admin/branding/{brand.id}").get_data(as_text=True)
    assert 'id="brand-preview"' in page and "/admin/admin.js" in page

    # The preview wears what is typed, unsaved; a colour that would be refused is not worn.
    preview = client.get(
        f"/admin/branding/{brand.id}/preview?accent_colour=%23c0ffee&page_title=Try&footer_text=Soon"
    )
    text = preview.get_data(as_text=True)
    assert "accent=c0ffee" in text and "<title>Log in · Try</title>" in text and "Soon" in text
    assert "frame-ancestors 'self'" in preview.headers["Content-Security-Policy"]
    bad = client.get(f"/admin/branding/{brand.id}/preview?accent_colour=red;}}body{{display:none").get_data(
        as_text=True
    )
    assert "display:none" not in bad and "accent=3a6ee8" in bad
    assert _brand(world, "mail.a.test").accent_colour is None

    post(client, f"/admin/branding/{brand.id}", {
        "name": "A Mail", "support_url": "", "accent_colour": "#c0ffee", "page_title": "A webmail",
        "footer_text": "A Ltd, 1 Main Street",
    })  # fmt: skip
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/").get_data(as_text=True))
    client.post(
        f"/admin/branding/{brand.id}/images",
        data={
            "csrf_token": token.group(1),
            "logo_dark": (io.BytesIO(images.SVG_WITH_SCRIPT), "dark.svg"),
            "favicon": (io.BytesIO(images.png(32, 32)), "icon.png"),
        },  # fmt: skip
        content_type="multipart/form-data",
    )
    saved = _brand(world, "mail.a.test")
    assert (saved.accent_colour, saved.page_title, saved.footer_text) == (
        "#c0ffee",
        "A webmail",
        "A Ltd, 1 Main Street",
    )
    assert saved.logo_dark_type == "image/svg+xml" and b"script" not in saved.logo_dark
    assert saved.favicon_type == "image/png"
    for path in ("/admin/login", "/login"):
        worn = app.test_client().get(path, headers={"Host": "mail.a.test"}).get_data(as_text=True)
        assert "A webmail" in worn and "A Ltd, 1 Main Street" in worn and "c0ffee" in worn
        other = app.test_client().get(path, headers={"Host": "mail.b.test"}).get_data(as_text=True)
        assert "A webmail" not in other and "A Ltd" not in other and "c0ffee" not in other
    # An image the checks refuse changes nothing, and says why.
    client.post(
        f"/admin/branding/{brand.id}/images",
        data={"csrf_token": token.group(1), "favicon": (io.BytesIO(images.png(600, 20)), "wide.png")},
        content_type="multipart/form-data",
    )
    assert "600×20 pixels" in client.get(f"/admin/branding/{brand.id}").get_data(as_text=True)
    assert _brand(world, "mail.a.test").favicon == saved.favicon


def test_a_domain_admin_may_not_change_the_look_nor_preview_it(app, world) -> None:
    boss = app.test_client()
    log_in(boss, "boss")
    _create(boss)
    brand = _brand(world, "mail.a.test")
    post(boss, "/admin/domains/a.test/brand", {"brand_id": str(brand.id)})
    ann = app.test_client()
    log_in(ann, "ann@a.test")
    assert post(ann, f"/admin/branding/{brand.id}/images", {"remove_logo": "on"}).status_code == 403
    assert ann.get(f"/admin/branding/{brand.id}/preview").status_code == 403


def test_nobody_logs_in_on_another_tenants_brand_host(app, world) -> None:
    """One tenant's brand host is its own: another tenant's admins and mailboxes are refused
    there as a wrong password is, and the attempt is on record."""
    boss = app.test_client()
    log_in(boss, "boss")
    _create(boss)  # mail.a.test, tenant One's
    rival = app.test_client()
    page = rival.get("/admin/login", headers={"Host": "mail.a.test"}).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    refused = rival.post(
        "/admin/login", headers={"Host": "mail.a.test"},
        data={"login": "rival", "password": PASSWORD, "csrf_token": token},
    )  # fmt: skip
    assert refused.status_code == 401
    allowed = app.test_client()
    page = allowed.get("/admin/login", headers={"Host": "mail.a.test"}).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert allowed.post(
        "/admin/login", headers={"Host": "mail.a.test"},
        data={"login": "boss", "password": PASSWORD, "csrf_token": token},
    ).status_code == 302  # fmt: skip
    with world.sessions() as session:
        reasons = session.scalars(select(AuthEvent.reason).where(AuthEvent.login == "rival")).all()
    assert "not this brand's" in reasons
