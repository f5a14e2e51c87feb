"""The interactive API docs in a real browser, with every outside address refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from controlplane.services import tokens
from controlplane.services.scope import OPERATOR
from tests.factories import make_domain, make_tenant

pytestmark = pytest.mark.browser


def test_api_docs_work_offline_and_try_a_call_with_a_token(
    page: Page, installation, live_server, artifacts
) -> None:
    with installation.transaction() as session:
        tenant = make_tenant(session, name="Docs")
        make_domain(session, tenant=tenant, name="docs.test")
        _, secret = tokens.create_token(session, OPERATOR, tenant=tenant, kind="tenant", name="docs")
    outside = []

    def only_loopback(route) -> None:
        if route.request.url.startswith(live_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto("/api/docs")
    expect(page.get_by_text("/api/v1/domains/{name}/usage").first).to_be_visible()
    page.get_by_role("button", name="Authorize").first.click()
    page.locator("input[type=text]").last.fill(secret)
    page.get_by_role("button", name="Authorize", exact=True).last.click()
    page.get_by_role("button", name="Close", exact=True).click()
    page.locator('.opblock-summary-path[data-path="/api/v1/tenant"]').click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    live = page.locator(".live-responses-table").first
    expect(live).to_contain_text('"name": "Docs"')
    expect(live).to_contain_text("200")
    page.screenshot(path=str(artifacts / "api-docs.png"), full_page=True)
    assert outside == []
