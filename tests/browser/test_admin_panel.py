"""Journeys through the admin panel in a real browser: Debian's Chromium, the real app, CSRF on.

Screenshots of the main pages land in tests/browser/artifacts/ for a person to look at.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect
from sqlalchemy import select

from controlplane.models import Domain, Mailbox
from tests.factories import PASSWORD, make_admin, make_domain, make_mailbox, make_tenant

KB = 1024

pytestmark = pytest.mark.browser


@pytest.fixture
def world(installation):
    """Tenant One (full admin "boss") with other.test; tenant Two with theirs.test."""
    with installation.transaction() as session:
        one = make_tenant(session, name="One", pool=1000 * KB)
        two = make_tenant(session, name="Two", pool=1000 * KB)
        make_admin(session, tenant=one, login="boss")
        make_domain(session, tenant=one, name="other.test")
        make_domain(session, tenant=two, name="theirs.test")
    return installation


@pytest.fixture
def shop(world):
    """shop.test in tenant One: at most 2 mailboxes, one taken by its domain admin ann."""
    with world.transaction() as session:
        one = session.scalar(select(Domain).where(Domain.name == "other.test")).tenant
        shop = make_domain(session, tenant=one, name="shop.test", max_mailboxes=2, max_aliases=2)
        make_mailbox(session, domain=shop, local_part="ann", is_domain_admin=True)
    return world


def log_in(page: Page, login: str, password: str = PASSWORD) -> None:
    page.goto("/admin/login")
    page.get_by_label("Login or mailbox address").fill(login)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def form_with_button(page: Page, button: str) -> Locator:
    return page.locator("form").filter(has=page.get_by_role("button", name=button, exact=True))


def add_mailbox(page: Page, local_part: str, quota: str = "10KB") -> None:
    form = form_with_button(page, "Add mailbox")
    form.get_by_label("Address").fill(local_part)
    form.get_by_label("Storage").fill(quota)
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name="Add mailbox").click()


def local_parts(installation, domain_name: str) -> list[str]:
    with installation.sessions() as session:
        return sorted(
            session.scalars(select(Mailbox.local_part).join(Mailbox.domain).where(Domain.name == domain_name))
        )


def test_full_admin_creates_a_limited_domain_and_makes_a_mailbox_its_admin(
    page: Page, world, artifacts
) -> None:
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.screenshot(path=artifacts / "login.png", full_page=True)

    log_in(page, "boss")
    expect(page.get_by_role("heading", name="One", level=1)).to_be_visible()
    form = form_with_button(page, "Add domain")
    form.get_by_label("Name", exact=True).fill("shop.test")
    form.get_by_label("Max mailboxes").fill("3")
    form.get_by_label("Max aliases").fill("5")
    form.get_by_label("Largest mailbox").fill("100KB")
    form.get_by_role("button", name="Add domain").click()
    expect(page.get_by_role("status")).to_have_text("Domain created.")
    expect(page.get_by_role("row", name=re.compile(r"shop\.test"))).to_contain_text("0 of 3")
    page.screenshot(path=artifacts / "dashboard.png", full_page=True)

    page.get_by_role("link", name="shop.test").click()
    expect(page).to_have_url(re.compile(r"/admin/domains/shop\.test$"))
    for local_part in ("ann", "bob"):
        add_mailbox(page, local_part)
        expect(page.get_by_role("status")).to_have_text("Mailbox created.")
    ann = page.locator('tr[data-address="ann@shop.test"]')
    ann.get_by_role("button", name="Make domain admin").click()
    expect(page.get_by_role("status")).to_have_text("Domain-admin role granted.")
    expect(ann).to_contain_text("domain admin")
    expect(ann.get_by_role("button", name="Revoke admin")).to_be_visible()
    expect(page.get_by_text("2 of 3 mailboxes")).to_be_visible()
    page.screenshot(path=artifacts / "domain.png", full_page=True)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login"))

    with world.sessions() as session:
        domain = session.scalar(select(Domain).where(Domain.name == "shop.test"))
        assert (domain.max_mailboxes, domain.max_aliases, domain.max_mailbox_bytes) == (3, 5, 100 * KB)
        admins = {mailbox.local_part: mailbox.is_domain_admin for mailbox in domain.mailboxes}
        assert admins == {"ann": True, "bob": False}


def test_domain_admin_fills_the_domain_to_its_limit_and_cannot_reach_another_domain(
    page: Page, shop, artifacts
) -> None:
    log_in(page, "ann@shop.test")
    expect(page).to_have_url(re.compile(r"/admin/domains/shop\.test$"))
    expect(page.get_by_text("1 of 2 mailboxes")).to_be_visible()
    for button in ("Save limits", "Delete domain", "Make domain admin"):
        expect(page.get_by_role("button", name=button)).to_have_count(0)
    expect(page.get_by_label("Max mailboxes")).to_have_count(0)

    add_mailbox(page, "carl")
    expect(page.get_by_role("status")).to_have_text("Mailbox created.")
    add_mailbox(page, "dora")
    expect(page.get_by_role("alert")).to_have_text("The domain shop.test may have at most 2 mailboxes.")
    expect(page.get_by_text("2 of 2 mailboxes")).to_be_visible()
    page.screenshot(path=artifacts / "refused-at-limit.png", full_page=True)
    assert local_parts(shop, "shop.test") == ["ann", "carl"]

    for foreign in ("other.test", "theirs.test"):
        response = page.goto(f"/admin/domains/{foreign}")
        assert response is not None and response.status in (403, 404), (foreign, response)
        expect(page.get_by_role("heading", name="Not available")).to_be_visible()
        expect(page.get_by_role("button", name="Add mailbox")).to_have_count(0)
        page.screenshot(path=artifacts / f"refused-{foreign}.png", full_page=True)

    # The same form, pointed at another domain: the server refuses even a well-formed, CSRF-valid post.
    page.goto("/admin/domains/shop.test")
    form = form_with_button(page, "Add mailbox")
    form.evaluate("form => { form.action = '/admin/domains/other.test/mailboxes'; }")
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        add_mailbox(page, "evil")
    assert posted.value.status in (403, 404)
    assert local_parts(shop, "other.test") == []
    assert local_parts(shop, "shop.test") == ["ann", "carl"]


def test_login_form_is_filled_and_submitted_with_the_keyboard_alone(page: Page, world) -> None:
    page.goto("/admin/login")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Login or mailbox address")).to_be_focused()
    page.keyboard.type("boss")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password", exact=True)).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Log in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("heading", name="One", level=1)).to_be_visible()
