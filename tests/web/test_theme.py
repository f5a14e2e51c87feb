"""What pages wear on a brand host: the brand's name once in the webmail header, and a tab icon
(the brand's logo, or the default) that the webmail and the admin panel link."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from controlplane.models import Brand, Tenant
from controlplane.services import brands, scope
from tests import images

LOGO = images.png(64, 28)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BRAND_HOST = {"Host": "mail.a.test"}


@pytest.fixture
def brand(world, settings) -> str:
    with world.transaction() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == "One"))
        brands.create_brand(
            session, scope.OPERATOR, settings, tenant=tenant, hostname="mail.a.test", name="Acme Mail"
        )
    return "mail.a.test"


def _set_logo(world, data: bytes | None) -> None:
    with world.transaction() as session:
        brand = session.scalar(select(Brand).where(Brand.hostname == "mail.a.test"))
        brands.set_brand_image(session, scope.OPERATOR, brand, "logo", data)


def _icon_link(page: str) -> str:
    match = re.search(r'<link rel="icon" href="([^"]+)">', page)
    assert match is not None, "the page links no icon"
    return match.group(1)


def test_the_webmail_header_shows_the_brand_name_once(app, brand) -> None:
    page = app.test_client().get("/login", headers=BRAND_HOST).get_data(as_text=True)
    assert "<strong>Acme Mail</strong>" in page and "Acme Mail Mail" not in page
    platform = app.test_client().get("/login").get_data(as_text=True)
    assert "<strong>Letterhead</strong>" in platform


def test_without_a_logo_the_favicon_is_the_default_icon_on_every_host(app, brand) -> None:
    client = app.test_client()
    for headers in (BRAND_HOST, {}):
        response = client.get("/favicon.ico", headers=headers)
        assert response.status_code == 200 and response.mimetype == "image/png"
        assert response.data.startswith(PNG_SIGNATURE)
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_brand_with_a_logo_serves_it_as_its_favicon_and_its_pages_link_it(app, world, brand) -> None:
    client = app.test_client()
    default = client.get("/favicon.ico", headers=BRAND_HOST).data
    _set_logo(world, LOGO)
    response = client.get("/favicon.ico", headers=BRAND_HOST)
    assert (response.mimetype, response.data) == ("image/png", LOGO)
    assert client.get("/favicon.ico").data == default  # the platform's host keeps the default
    for path in ("/login", "/admin/login"):
        link = _icon_link(client.get(path, headers=BRAND_HOST).get_data(as_text=True))
        # The link changes with the logo, so browsers do not keep showing the old one.
        assert link.startswith("/favicon.ico?v=")
        assert client.get(link, headers=BRAND_HOST).data == LOGO
    _set_logo(world, None)
    assert client.get("/favicon.ico", headers=BRAND_HOST).data == default
    assert _icon_link(client.get("/admin/login").get_data(as_text=True)) == "/favicon.ico"
