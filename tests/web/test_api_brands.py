"""Brands through the API: create, assign, DNS states, and what other tokens cannot do."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from controlplane.models import Brand, Domain
from tests import images
from tests.web import test_api
from tests.web.test_api import PROBLEM

# Fixtures shared with the other API tests.
api, secrets = test_api.api, test_api.secrets


def _brands(world) -> list[tuple[str, int]]:
    with world.sessions() as session:
        return sorted(session.execute(select(Brand.hostname, Brand.tenant_id)).tuples())


def test_a_tenant_token_creates_a_brand_and_gives_it_to_a_domain(api, world) -> None:
    made = api("one", "POST", "/brands", json={"hostname": "Mail.A.test", "name": "A Mail", "shared": True})
    assert made.status_code == 201
    body = made.get_json()
    assert body["hostname"] == "mail.a.test" and body["shared"] is True
    assert body["certificate"] == {
        "status": "none",
        "names": [],
        "not_after": None,
        "error": "",
        "next_attempt_at": None,
    }
    assert api("one", "PUT", "/domains/a.test/brand", json={"brand": "mail.a.test"}).status_code == 200
    assert api("one", "GET", "/brands/mail.a.test").get_json()["domains"] == ["a.test"]
    dns = api("one", "GET", "/domains/a.test/dns").get_json()
    assert dns["server_hostname"] == "mail.a.test" and dns["checked_at"] is None
    kinds = {(r["name"], r["type"]) for r in dns["records"]}
    assert {("a.test", "MX"), ("_submissions._tcp.a.test", "SRV"), ("_mta-sts.a.test", "TXT")} <= kinds
    assert {r["state"] for r in dns["records"]} == {"unchecked"}
    assert (
        api("one", "PATCH", "/brands/mail.a.test", json={"support_url": None, "name": "New"}).get_json()[
            "name"
        ]
        == "New"
    )
    assert api("one", "PUT", "/domains/a.test/brand", json={"brand": None}).status_code == 200
    assert api("one", "DELETE", "/brands/mail.a.test").status_code == 204
    assert _brands(world) == []


@pytest.mark.parametrize(
    "hostname",
    [
        "mail a.test",
        "mail_a.test",
        "*.a.test",
        "127.0.0.1",
        "a" * 64 + ".test",
        "x." * 130 + "test",
        "mail.c.test",
    ],
)
def test_hostnames_that_are_not_names_get_a_422_naming_the_field(api, world, hostname) -> None:
    response = api("one", "POST", "/brands", json={"hostname": hostname, "name": "X"})
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert "hostname" in response.get_json()["errors"]
    assert _brands(world) == []


def test_another_tenants_brand_is_a_409_that_names_nobody_and_invisible_otherwise(api, world) -> None:
    api("one", "POST", "/brands", json={"hostname": "mail.a.test", "name": "A"})
    # Inside a domain another tenant hosts: refused before anything else is said.
    squat = api("two", "POST", "/brands", json={"hostname": "mail.a.test", "name": "Mine"})
    assert squat.status_code == 422 and "hosted by someone else" in squat.get_json()["detail"]
    api("one", "POST", "/brands", json={"hostname": "mail.reseller.example", "name": "R"})
    taken = api("two", "POST", "/brands", json={"hostname": "MAIL.reseller.example", "name": "Mine"})
    assert taken.status_code == 409 and "One" not in taken.get_data(as_text=True)
    for method, path, body in [
        ("GET", "/brands/mail.a.test", None),
        ("PATCH", "/brands/mail.a.test", {"name": "Stolen"}),
        ("DELETE", "/brands/mail.a.test", None),
        ("PUT", "/domains/c.test/brand", {"brand": "mail.a.test"}),
        ("GET", "/domains/a.test/dns", None),
    ]:
        assert api("two", method, path, json=body).status_code == 404, (method, path)
    assert api("two", "GET", "/brands").get_json()["items"] == []
    with world.sessions() as session:
        assert session.scalar(select(Brand.name).where(Brand.hostname == "mail.a.test")) == "A"
        assert session.scalar(select(Domain.brand_id).where(Domain.name == "c.test")) is None


def test_domain_tokens_read_their_own_domains_brand_and_change_nothing(api, world) -> None:
    api("one", "POST", "/brands", json={"hostname": "mail.a.test", "name": "A"})
    api("one", "POST", "/brands", json={"hostname": "mail.b.test", "name": "B"})
    api("one", "PUT", "/domains/a.test/brand", json={"brand": "mail.a.test"})
    api("one", "PUT", "/domains/b.test/brand", json={"brand": "mail.b.test"})
    listed = api("a", "GET", "/brands").get_json()["items"]
    assert [b["hostname"] for b in listed] == ["mail.a.test"] and listed[0]["domains"] == ["a.test"]
    assert api("a", "GET", "/brands/mail.b.test").status_code == 404
    assert api("a", "GET", "/domains/b.test/dns").status_code == 404
    assert api("a", "GET", "/domains/a.test/dns").status_code == 200
    for method, path, body in [
        ("POST", "/brands", {"hostname": "mail.x.test", "name": "X"}),
        ("PATCH", "/brands/mail.a.test", {"name": "Mine"}),
        ("DELETE", "/brands/mail.a.test", None),
        ("PUT", "/domains/a.test/brand", {"brand": None}),
    ]:
        assert api("a", method, path, json=body).status_code == 404, (method, path)
    assert api("signup", "GET", "/brands").status_code == 404
    assert len(_brands(world)) == 2


PNG = images.png()
WEBP = images.webp_header(64, 32)


def _logo(world) -> tuple[bytes | None, str | None]:
    with world.sessions() as session:
        return session.execute(
            select(Brand.logo, Brand.logo_type).where(Brand.hostname == "mail.a.test")
        ).one()


def test_a_tenant_token_sets_and_removes_a_brands_logo_which_its_host_then_serves(app, api, world) -> None:
    api("one", "POST", "/brands", json={"hostname": "mail.a.test", "name": "A"})
    response = api("one", "PUT", "/brands/mail.a.test/logo", data=PNG, content_type="image/png")
    assert response.status_code == 200 and response.get_json()["has_logo"] is True
    assert _logo(world) == (PNG, "image/png")
    # The bytes decide the type, not the Content-Type sent with them.
    assert (
        api("one", "PUT", "/brands/mail.a.test/logo", data=WEBP, content_type="image/png").status_code == 200
    )
    assert _logo(world) == (WEBP, "image/webp")
    assert app.test_client().get("/branding/logo", headers={"Host": "mail.a.test"}).data == WEBP
    removed = api("one", "DELETE", "/brands/mail.a.test/logo")
    assert removed.status_code == 200 and removed.get_json()["has_logo"] is False
    assert _logo(world) == (None, None)


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00;", "image/gif", "PNG, JPEG, WebP or SVG"),
        (images.png(4001, 20), "image/png", "4001×20 pixels"),
        (images.png() + b"\0" * (256 * 1024), "image/png", "256 KB"),
        (b"", "image/png", "empty"),
    ],
)
def test_a_logo_the_panel_would_refuse_is_a_422_and_the_old_one_stays(
    api, world, body, content_type, words
) -> None:
    api("one", "POST", "/brands", json={"hostname": "mail.a.test", "name": "A"})
    api("one", "PUT", "/brands/mail.a.test/logo", data=PNG, content_type="image/png")
    response = api("one", "PUT", "/brands/mail.a.test/logo", data=body, content_type=content_type)
    body = test_api.problem_of(response, 422)
    assert words in body["detail"] and "logo" in body["errors"]
    assert _logo(world) == (PNG, "image/png")


def test_only_the_brands_tenant_token_may_change_its_logo(api, world) -> None:
    api("one", "POST", "/brands", json={"hostname": "mail.a.test", "name": "A"})
    api("one", "PUT", "/domains/a.test/brand", json={"brand": "mail.a.test"})
    for token in ("two", "a", "signup"):
        assert (
            api(token, "PUT", "/brands/mail.a.test/logo", data=PNG, content_type="image/png").status_code
            == 404
        )
        assert api(token, "DELETE", "/brands/mail.a.test/logo").status_code == 404
    assert _logo(world) == (None, None)


def test_the_openapi_document_describes_the_logo_body(app) -> None:
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    operations = spec["paths"]["/api/v1/brands/{hostname}/{image}"]
    assert set(operations) >= {"put", "delete"}
    content = set(operations["put"]["requestBody"]["content"])
    assert content == {"image/png", "image/jpeg", "image/webp", "image/svg+xml"}
    (image,) = [p for p in operations["put"]["parameters"] if p["name"] == "image"]
    assert image["schema"]["enum"] == ["logo", "logo-dark", "favicon"]
    assert "422" in operations["put"]["responses"]


def test_the_whole_look_is_set_through_the_api_and_worn_on_the_brands_host_only(app, api, world) -> None:
    api("one", "POST", "/brands", json={"hostname": "mail.a.test", "name": "A"})
    response = api("one", "PATCH", "/brands/mail.a.test", json={
        "accent_colour": "#c0ffee", "page_title": "A webmail", "footer_text": "A Ltd, 1 Main Street",
    })  # fmt: skip
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["accent_colour"], body["page_title"], body["footer_text"]) == (
        "#c0ffee", "A webmail", "A Ltd, 1 Main Street",
    )  # fmt: skip
    assert api("one", "PUT", "/brands/mail.a.test/logo-dark", data=images.SVG_WITH_SCRIPT,
               content_type="image/svg+xml").get_json()["has_logo_dark"] is True  # fmt: skip
    favicon = images.png(32, 32, (1, 2, 3))
    assert (
        api("one", "PUT", "/brands/mail.a.test/favicon", data=favicon, content_type="image/png").status_code
        == 200
    )
    client = app.test_client()
    page = client.get("/login", headers={"Host": "mail.a.test"}).get_data(as_text=True)
    assert "<title>Log in · A webmail</title>" in page and "A Ltd, 1 Main Street" in page
    assert 'media="(prefers-color-scheme: dark)"' in page
    css = re.search(r'href="(/webmail\.css\?[^"]+)"', page).group(1).replace("&amp;", "&")
    assert "--accent: #c0ffee" in client.get(css, headers={"Host": "mail.a.test"}).get_data(as_text=True)
    dark = client.get("/branding/logo-dark", headers={"Host": "mail.a.test"})
    assert dark.mimetype == "image/svg+xml" and b"script" not in dark.data
    assert "sandbox" in dark.headers["Content-Security-Policy"]
    assert client.get("/favicon.ico", headers={"Host": "mail.a.test"}).data == favicon
    # The platform's host wears none of it.
    platform = client.get("/login").get_data(as_text=True)
    assert "A webmail" not in platform and "A Ltd" not in platform and "#c0ffee" not in platform
    refused = api("one", "PATCH", "/brands/mail.a.test", json={"accent_colour": "red"})
    assert test_api.problem_of(refused, 422)["errors"] == {"accent_colour": [refused.get_json()["detail"]]}
    removed = api("one", "PATCH", "/brands/mail.a.test", json={"footer_text": None, "page_title": ""})
    assert (removed.get_json()["footer_text"], removed.get_json()["page_title"]) == (None, None)
    assert "A Ltd" not in client.get("/login", headers={"Host": "mail.a.test"}).get_data(as_text=True)
