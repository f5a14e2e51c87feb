"""The mail and login log viewers in a real browser, every outside request refused.

A full admin walks from the 30-day chart to a day, filters it, opens a bounced message and
searches; a domain admin looks for another domain's mail and finds nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from controlplane.models import MailTransaction
from tests.browser.test_admin_panel import log_in
from tests.factories import make_admin, make_domain, make_mailbox, make_tenant
from tests.web.test_admin_logs import DIALOGUE_LOG, ingest_logs

pytestmark = pytest.mark.browser
KB = 1024


@pytest.fixture
def logged(installation, tmp_path: Path):
    """Tenant One (boss) with a.test (domain admin ann) and b.test; tenant Two with c.test; logs read."""
    with installation.transaction() as session:
        one = make_tenant(session, name="One", pool=1000 * KB)
        two = make_tenant(session, name="Two", pool=1000 * KB)
        make_admin(session, tenant=one, login="boss")
        a = make_domain(session, tenant=one, name="a.test")
        b = make_domain(session, tenant=one, name="b.test")
        c = make_domain(session, tenant=two, name="c.test")
        make_mailbox(session, domain=a, local_part="ann", is_domain_admin=True)
        make_mailbox(session, domain=b, local_part="bob")
        make_mailbox(session, domain=c, local_part="secret")
    ingest_logs(installation, tmp_path)
    (tmp_path / "talk").mkdir()
    ingest_logs(installation, tmp_path / "talk", postfix=DIALOGUE_LOG, dovecot="")
    return installation


@pytest.fixture
def offline(page: Page, live_server: str) -> list[str]:
    """Refuse every request that leaves the app; the list collects any that tried."""
    outside: list[str] = []

    def only_loopback(route) -> None:
        if route.request.url.startswith(live_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    return outside


def test_full_admin_goes_from_the_chart_to_a_bounced_message_and_searches(
    page: Page, logged, offline, artifacts
) -> None:
    log_in(page, "boss")
    page.get_by_role("link", name="Logs").click()
    expect(page.get_by_role("heading", name="Mail log", level=1)).to_be_visible()
    # A fixed window, so the test does not depend on today's date.
    page.goto("/admin/logs/mail?last=2026-11-30")
    chart = page.get_by_role("img", name=re.compile("Recipients per day"))
    expect(chart).to_be_visible()
    expect(chart.locator("g.day")).to_have_count(30)
    expect(chart.locator('g.day[data-day="2026-11-24"] rect')).to_have_count(3)
    page.screenshot(path=str(artifacts / "logs-days.png"), full_page=True)

    page.get_by_role("link", name="Tue 24 Nov 2026").click()
    expect(page.get_by_role("heading", name=re.compile("Mail on Tue 24 Nov 2026"))).to_be_visible()
    expect(page.locator("tr[data-transaction]")).to_have_count(4)
    page.get_by_label("Result").select_option("bounced")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("tr[data-transaction]")).to_have_count(1)
    page.get_by_role("link", name="Details").click()
    expect(page.get_by_role("heading", name=re.compile("Mail transaction"))).to_be_visible()
    recipient = page.locator('tr[data-recipient="ann@a.test"]')
    expect(recipient).to_contain_text("mailbox full")
    expect(recipient).to_contain_text("permanent failure; the mailbox is full")
    expect(page.get_by_text("big@sender.example")).to_be_visible()
    page.screenshot(path=str(artifacts / "logs-transaction.png"), full_page=True)

    page.get_by_role("link", name="Search mail").click()
    page.get_by_label("Address, IP, message-id or queue ID").fill("<talk@sender.example>")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name="Details").click()
    dialogue = page.locator("ol.dialogue")
    expect(dialogue.locator("li.client").first).to_contain_text("ehlo sender.example")
    expect(dialogue.locator("li.server").first).to_contain_text("220: server ready")
    expect(dialogue.locator("li.client", has_text="data")).to_contain_text("+1.000 s")
    page.screenshot(path=str(artifacts / "logs-dialogue.png"), full_page=True)

    page.get_by_role("link", name="Search mail").click()
    page.get_by_label("Address, IP, message-id or queue ID").fill("nobody@b.test")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("tr[data-transaction]")).to_have_count(1)
    expect(page.locator("tr[data-transaction]")).to_contain_text("recipient not found")

    page.get_by_role("link", name="Logins").click()
    page.get_by_label("Service").select_option("imap")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("tr[data-login]")).to_have_count(1)
    expect(page.locator("tr[data-login]")).to_contain_text("ann@a.test")
    page.screenshot(path=str(artifacts / "logs-logins.png"), full_page=True)
    assert offline == []


def test_a_domain_admin_finds_nothing_of_another_domain(page: Page, logged, offline, artifacts) -> None:
    with logged.sessions() as session:
        to_bob = session.scalar(
            select(MailTransaction.id).where(MailTransaction.message_id == "to-bob@sender.example")
        )
    log_in(page, "ann@a.test")
    page.goto("/admin/logs/mail/search")
    expect(page.get_by_label("Domain")).to_have_count(0)  # nothing to choose: their own domain only
    page.get_by_label("Address, IP, message-id or queue ID").fill("bob@b.test")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#found")).to_contain_text("0 transactions")
    response = page.goto(f"/admin/logs/mail/{to_bob}")
    assert response is not None and response.status == 404
    expect(page.get_by_text("bob@b.test")).to_have_count(0)
    page.goto("/admin/logs/logins")
    expect(page.locator("tr[data-login]")).to_have_count(2)  # ann's IMAP login and this panel login
    expect(page.locator("tbody")).not_to_contain_text("bob@b.test")
    page.screenshot(path=str(artifacts / "logs-domain-admin.png"), full_page=True)
    assert offline == []
