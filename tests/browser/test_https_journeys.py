"""The web the way users reach it: Chromium, through the stack's own nginx over HTTPS, on a brand host
and on the platform's address with its port, to the app under gunicorn.

Every journey here was broken once while tests that spoke plain HTTP to the app passed: the webmail
login (its pages sent no Referer, which the CSRF check over HTTPS requires) and the panel login on
any port but 443 (nginx dropped the port from the Host the app compared the Referer with).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from controlplane.certs.acme import CertificateInfo
from controlplane.models import Brand
from controlplane.runners.scratch import ScratchStack
from controlplane.services import brands, certificates, scope
from tests import images
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, STEP_TIMEOUT_MS
from tests.factories import PASSWORD, make_admin, make_domain, make_mailbox, make_tenant

KB = 1024
BRAND_HOST = "mail.journeys.test"
OTHER_BRAND_HOST = "mail.rival.test"

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def web_stack() -> Iterator[ScratchStack]:
    """The whole stack: Dovecot, Postfix, the app under gunicorn and nginx, with two brands."""
    stack = ScratchStack(min_mailbox_bytes=KB)
    try:
        stack.prepare()
        with stack.installation.transaction() as session:
            tenant = make_tenant(session, name="Journeys Reseller", pool=5000 * KB)
            rival = make_tenant(session, name="Rival Reseller", pool=5000 * KB)
            make_admin(session, tenant=tenant, login="journeys-admin")
            make_admin(session, tenant=rival, login="rival-admin")
            domain = make_domain(session, tenant=tenant, name="journeys.test", max_mailbox_bytes=1000 * KB)
            make_mailbox(session, domain=domain, local_part="fay", quota=1000 * KB)
            make_mailbox(session, domain=domain, local_part="gus", quota=1000 * KB)
            make_mailbox(session, domain=domain, local_part="hal", quota=1000 * KB, is_domain_admin=True)
            brand = brands.create_brand(
                session,
                scope.OPERATOR,
                stack.settings,
                tenant=tenant,
                hostname=BRAND_HOST,
                name="Journeys Mail",
            )
            brands.set_domain_brand(session, scope.OPERATOR, domain, brand)
            rival_brand = brands.create_brand(
                session,
                scope.OPERATOR,
                stack.settings,
                tenant=rival,
                hostname=OTHER_BRAND_HOST,
                name="Rival Mail",
            )
            brands.update_brand(session, scope.OPERATOR, stack.settings, rival_brand, accent_colour="#b5179e",
                                footer_text="Rival Reseller Ltd")  # fmt: skip
        stack.start(web=True)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def https_browser(browser: Browser, web_stack: ScratchStack) -> Iterator[Browser]:
    """Chromium resolving the brand hosts to loopback, as their DNS would to the server
    (launched through the session's Playwright: a second one cannot run beside it)."""
    rules = f"MAP {BRAND_HOST} 127.0.0.1, MAP {OTHER_BRAND_HOST} 127.0.0.1"
    branded = browser.browser_type.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"]
    )
    yield branded
    branded.close()


@pytest.fixture
def page(https_browser: Browser) -> Iterator[Page]:
    # The stack's default certificate is self-signed; the certificate journeys are in tests/e2e.
    context = https_browser.new_context(ignore_https_errors=True)
    context.set_default_timeout(STEP_TIMEOUT_MS * 3)
    # Nothing may leave the machine: only the stack's nginx is reachable.
    hosts = "|".join(re.escape(host) for host in ("127.0.0.1", BRAND_HOST, OTHER_BRAND_HOST))
    context.route(re.compile(rf"^(?!https://({hosts}):).*"), lambda route: route.abort())
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def https_url(stack: ScratchStack, host: str, path: str) -> str:
    return f"https://{host}:{stack.ports['https']}{path}"


def test_webmail_login_through_nginx_on_a_brand_host(web_stack: ScratchStack, page: Page, artifacts) -> None:
    page.goto(https_url(web_stack, BRAND_HOST, "/"))
    expect(page).to_have_title("Log in · Journeys Mail")
    page.get_by_label("Email address").fill("fay@journeys.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    page.screenshot(path=str(artifacts / "https-webmail-inbox.png"))

    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    webmail_cookie = cookies["__Host-lh_mail"]
    assert webmail_cookie["secure"] and webmail_cookie["httpOnly"]
    assert webmail_cookie["domain"] == BRAND_HOST
    assert "__Secure-lh_admin" not in cookies

    # Logging out is a form POST too, under the same CSRF check.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You are logged out.")).to_be_visible()


def test_webmail_login_with_a_line_break_in_next_lands_in_the_inbox(
    web_stack: ScratchStack, page: Page
) -> None:
    page.goto(https_url(web_stack, BRAND_HOST, "/login?next=/folder%0d%0aSet-Cookie:%20x=1"))
    page.get_by_label("Email address").fill("fay@journeys.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    assert "x" not in {cookie["name"] for cookie in page.context.cookies()}


@pytest.mark.parametrize("host", ["127.0.0.1", BRAND_HOST])
def test_admin_login_through_nginx_on_its_https_port(web_stack: ScratchStack, page: Page, host: str) -> None:
    page.goto(https_url(web_stack, host, "/admin/login"))
    page.get_by_label("Login or mailbox address").fill("journeys-admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("journeys.test").first).to_be_visible()
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    panel_cookie = cookies["__Secure-lh_admin"]
    assert panel_cookie["secure"] and panel_cookie["path"] == "/admin"


def test_a_panel_cookie_carried_to_another_brand_host_is_refused(web_stack: ScratchStack, page: Page) -> None:
    page.goto(https_url(web_stack, BRAND_HOST, "/admin/login"))
    page.get_by_label("Login or mailbox address").fill("journeys-admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("journeys.test").first).to_be_visible()
    stolen = next(cookie for cookie in page.context.cookies() if cookie["name"] == "__Secure-lh_admin")
    page.context.add_cookies([{**stolen, "domain": OTHER_BRAND_HOST}])
    page.goto(https_url(web_stack, OTHER_BRAND_HOST, "/admin/"))
    expect(page).to_have_url(re.compile(rf"^https://{re.escape(OTHER_BRAND_HOST)}:\d+/admin/login\?next="))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_nginx_sends_hsts_and_the_app_its_headers(web_stack: ScratchStack, page: Page) -> None:
    response = page.goto(https_url(web_stack, BRAND_HOST, "/no-such-page"))
    assert response is not None and response.status == 404
    headers = response.headers
    assert headers["strict-transport-security"].startswith("max-age=")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    expect(page.get_by_text("There is no page at this address.")).to_be_visible()
    expect(page.get_by_text("Journeys Mail").first).to_be_visible()


def test_a_huge_login_through_nginx_is_refused_without_holding_the_workers(
    web_stack: ScratchStack, page: Page
) -> None:
    import time
    import urllib.request

    big = urllib.request.Request(
        f"https://127.0.0.1:{web_stack.ports['https']}/admin/login",
        data=b"login=x&password=" + b"x" * (10 * 1024 * 1024),
        method="POST",
    )
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    try:
        urllib.request.urlopen(big, context=context, timeout=30)
        status = 200
    except urllib.error.HTTPError as error:
        status = error.code
    except (ConnectionError, urllib.error.URLError):
        status = 413  # nginx may close the connection after its 413 while the body is still being sent
    assert status == 413
    assert time.monotonic() - started < 10
    # The app is still answering everyone.
    response = page.goto(https_url(web_stack, BRAND_HOST, "/login"))
    assert response is not None and response.status == 200


# --- a user's whole day on two brand hosts -------------------------------------------------------


def log_in_webmail(page: Page, stack: ScratchStack, address: str) -> None:
    page.goto(https_url(stack, BRAND_HOST, "/login"))
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You are logged out.")).to_be_visible()


def open_message(page: Page, subject: str, folder: str = "Inbox") -> None:
    page.get_by_role("navigation", name="Folders").get_by_role("link", name=folder, exact=True).click()
    page.get_by_role("row").filter(has_text=subject).first.get_by_role("link").click()
    expect(page.get_by_role("heading", name=subject, level=1)).to_be_visible()


def in_folder(stack: ScratchStack, user: str, folder: str, subject: str, timeout: float = 20) -> int:
    """How many messages of `folder` have this subject, once there is one (0 after `timeout`)."""
    import imaplib
    import time

    deadline = time.monotonic() + timeout
    while True:
        client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=10)
        try:
            client.login(user, PASSWORD)
            status, _ = client.select(f'"{folder}"', readonly=True)
            found = client.search(None, "SUBJECT", f'"{subject}"')[1][0].split() if status == "OK" else []
        finally:
            client.logout()
        if found or time.monotonic() > deadline:
            return len(found)
        time.sleep(0.3)


def test_each_brand_hosts_login_wears_its_own_look(web_stack: ScratchStack, page: Page, artifacts) -> None:
    page.goto(https_url(web_stack, BRAND_HOST, "/login"))
    expect(page.locator(".brand-welcome")).to_have_text("Journeys Mail")
    page.screenshot(path=str(artifacts / "https-login-journeys.png"))
    page.goto(https_url(web_stack, OTHER_BRAND_HOST, "/login"))
    expect(page).to_have_title("Log in · Rival Mail")
    expect(page.locator(".brand-welcome")).to_have_text("Rival Mail")
    expect(page.locator("footer.brand-footer")).to_have_text("Rival Reseller Ltd")
    colour = page.locator("button.primary, .brand-welcome").first.evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(181, 23, 158)"
    page.screenshot(path=str(artifacts / "https-login-rival.png"))
    # A user of one tenant's domain cannot log in on another tenant's brand host.
    page.get_by_label("Email address").fill("fay@journeys.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_have_count(0)


def test_a_users_day_attachments_reply_forward_drafts_vacation_filter_and_search(
    web_stack: ScratchStack, page: Page, artifacts, tmp_path
) -> None:
    # gus goes on holiday and files invoices.
    log_in_webmail(page, web_stack, "gus@journeys.test")
    page.get_by_role("link", name="Vacation and forwarding").click()
    page.get_by_label("Send a vacation reply").check()
    page.get_by_label("Subject").fill("Gus is away")
    page.get_by_label("Reply", exact=True).fill("Back next week.")
    page.get_by_role("button", name="Save vacation reply").click()
    expect(page.get_by_role("status")).to_have_text("Vacation reply on.")
    page.get_by_role("link", name="Filters").click()
    page.locator("#filter-field").select_option("subject")
    page.get_by_label("How it matches").select_option("contains")
    page.get_by_label("Text or size").fill("Invoice")
    page.locator("#filter-action").select_option("fileinto")
    page.get_by_label("Folder, address or words").fill("Invoices")
    page.get_by_role("button", name="Add filter").click()
    expect(page.get_by_role("status")).to_have_text("Filter added.")
    page.screenshot(path=str(artifacts / "https-webmail-filters.png"), full_page=True)
    log_out(page)

    # fay writes to gus with an attachment, twice, and an invoice.
    log_in_webmail(page, web_stack, "fay@journeys.test")
    plan = tmp_path / "plan.txt"
    plan.write_text("The plan, with the word marmalade in it.")
    for subject in ("Our plan", "Our plan, again"):
        page.get_by_role("link", name="Write").click()
        page.get_by_label("To", exact=True).fill("gus@journeys.test")
        page.get_by_label("Subject").fill(subject)
        page.get_by_label("Message").fill("See the attached plan. Zanzibar.")
        page.get_by_label("Attach files").set_input_files(str(plan))
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("status")).to_have_text("Message sent.")
    page.get_by_role("link", name="Write").click()
    page.get_by_label("To", exact=True).fill("gus@journeys.test")
    page.get_by_label("Subject").fill("Invoice 7")
    page.get_by_label("Message").fill("Please pay.")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    # A draft survives a logout.
    page.get_by_role("link", name="Write").click()
    page.get_by_label("Subject").fill("Unfinished thoughts")
    page.get_by_label("Message").fill("To be continued.")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_have_text("Draft saved.")
    log_out(page)

    assert in_folder(web_stack, "gus@journeys.test", "INBOX", "Our plan, again") == 1
    assert in_folder(web_stack, "gus@journeys.test", "Invoices", "Invoice 7") == 1
    # One vacation reply for both messages (and for the invoice: once per sender).
    assert in_folder(web_stack, "fay@journeys.test", "INBOX", "Gus is away") == 1

    log_in_webmail(page, web_stack, "gus@journeys.test")
    open_message(page, "Our plan, again")
    expect(page.get_by_role("link", name="plan.txt")).to_be_visible()
    page.get_by_role("link", name="Reply", exact=True).click()
    page.get_by_label("Message").press("Control+Home")
    page.keyboard.type("Looks good. ")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    open_message(page, "Our plan")
    page.get_by_role("link", name="Forward", exact=True).click()
    page.get_by_label("To", exact=True).fill("fay@journeys.test")
    expect(page.get_by_label("plan.txt (text/plain)")).to_be_checked()
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Message sent.")
    log_out(page)

    assert in_folder(web_stack, "fay@journeys.test", "INBOX", "Re: Our plan, again") == 1
    assert in_folder(web_stack, "fay@journeys.test", "INBOX", "Fwd: Our plan") == 1
    log_in_webmail(page, web_stack, "fay@journeys.test")
    open_message(page, "Fwd: Our plan")
    expect(page.get_by_role("link", name="plan.txt")).to_be_visible()
    # The draft is there after the logout, and resumes as it was left.
    page.get_by_role("navigation", name="Folders").get_by_role("link", name="Drafts").click()
    page.get_by_role("row").filter(has_text="Unfinished thoughts").get_by_role("link").click()
    expect(page.get_by_label("Message")).to_have_value(re.compile("To be continued."))
    # A word of a message's text is found by the server's search.
    page.get_by_role("navigation", name="Folders").get_by_role("link", name="Sent", exact=True).click()
    page.get_by_label("Search").fill("Zanzibar")
    page.locator("select[name=in]").select_option("body")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("2 found for “Zanzibar”")).to_be_visible()
    page.screenshot(path=str(artifacts / "https-webmail-search.png"), full_page=True)


def test_a_changed_look_shows_on_the_next_page_load_of_its_own_host_only(
    web_stack: ScratchStack, page: Page, artifacts
) -> None:
    def accent_on(host: str) -> str:
        page.goto(https_url(web_stack, host, "/login"))
        return page.locator(".brand-welcome").evaluate("e => getComputedStyle(e).color")

    before_other = accent_on(OTHER_BRAND_HOST)
    with web_stack.installation.transaction() as session:
        brand = brands.find_brand_for_host(session, BRAND_HOST)
        brands.update_brand(session, scope.OPERATOR, web_stack.settings, brand, accent_colour="#0a7d33",
                            support_url="https://help.journeys.test/")  # fmt: skip
        brands.set_brand_image(session, scope.OPERATOR, brand, "logo", images.png(84, 28, (10, 125, 51)))
    assert accent_on(BRAND_HOST) == "rgb(10, 125, 51)"
    expect(page.locator("header picture.logo img")).to_be_visible()
    expect(page.get_by_role("link", name="Support")).to_have_attribute("href", "https://help.journeys.test/")
    page.screenshot(path=str(artifacts / "https-login-journeys-green.png"))
    assert accent_on(OTHER_BRAND_HOST) == before_other
    expect(page.locator("header picture.logo")).to_have_count(0)

    with web_stack.installation.transaction() as session:
        brand = brands.find_brand_for_host(session, BRAND_HOST)
        brands.update_brand(session, scope.OPERATOR, web_stack.settings, brand, support_url=None)
    for path in ("/login", "/admin/login"):
        page.goto(https_url(web_stack, BRAND_HOST, path))
        expect(page.get_by_role("link", name="Support")).to_have_count(0)


def _log_in_panel(page: Page, stack: ScratchStack, host: str, login: str) -> None:
    page.goto(https_url(stack, host, "/admin/login"))
    page.get_by_label("Login or mailbox address").fill(login)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_full_admins_see_their_own_tenants_warnings_and_no_one_elses(
    web_stack: ScratchStack, page: Page
) -> None:
    now = dt.datetime.now(dt.UTC)
    with web_stack.installation.transaction() as session:
        own = session.query(Brand).filter_by(hostname=BRAND_HOST).one()
        # As the certificate runs record them: one renewal overdue, one order refused.
        certificates.record_certificate(
            own, CertificateInfo((BRAND_HOST,), now - dt.timedelta(days=85), now + dt.timedelta(days=5), "CA")
        )
        own.dns_report = json.dumps({"journeys.test": {"checked_at": now.isoformat(), "checks": [
            {"name": "journeys.test", "type": "MX", "expected": f"10 {BRAND_HOST}.", "state": "wrong",
             "found": ["10 mx.elsewhere.test."], "note": ""}]}})  # fmt: skip
        rival = session.query(Brand).filter_by(hostname=OTHER_BRAND_HOST).one()
        certificates.record_failure(rival, "the rival's secret reason", now)
    try:
        _log_in_panel(page, web_stack, BRAND_HOST, "journeys-admin")
        attention = page.get_by_role("region", name="Needs attention")
        expect(attention).to_contain_text(f"The certificate of {BRAND_HOST} expires on")
        expect(attention).to_contain_text(
            "DNS of journeys.test is missing or wrong at the last check: MX journeys.test"
        )
        assert OTHER_BRAND_HOST not in page.content() and "secret reason" not in page.content()

        page.context.clear_cookies()
        _log_in_panel(page, web_stack, OTHER_BRAND_HOST, "rival-admin")
        expect(page.get_by_role("region", name="Needs attention")).to_contain_text(
            "the rival's secret reason"
        )
        assert BRAND_HOST not in page.content() and "journeys.test" not in page.content()
    finally:
        with web_stack.installation.transaction() as session:
            for brand in session.query(Brand):
                brand.cert_status, brand.cert_not_after, brand.cert_error, brand.dns_report = (
                    "none",
                    None,
                    "",
                    "",
                )


def test_a_domain_admin_starts_a_mail_migration_in_the_panel(web_stack: ScratchStack, page: Page) -> None:
    """Through nginx on the brand host: the CSV pasted, the job listed with its mailbox queued, the
    old password nowhere on the page."""
    old_password = "gus's old secret"
    page.goto(https_url(web_stack, BRAND_HOST, "/admin/login"))
    page.get_by_label("Login or mailbox address").fill("hal@journeys.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Mail migrations").click()
    expect(page.get_by_role("heading", name="Mail migrations for journeys.test")).to_be_visible()
    page.get_by_label("One mailbox per line").fill(
        f"gus@journeys.test,imap.old-provider.test,gus,{old_password}"
    )
    page.get_by_role("button", name="Start the migration").click()
    expect(
        page.get_by_text(re.compile(r"Migration job \d+ started: 1 mailbox\(es\) queued."))
    ).to_be_visible()
    row = page.locator("tr[data-address='gus@journeys.test']")
    expect(row).to_contain_text("gus at imap.old-provider.test:993")
    expect(row).to_have_attribute("data-state", "queued")
    assert old_password not in page.content()
    # A line that is not a mailbox of the domain: told, and nothing queued.
    page.get_by_label("One mailbox per line").fill("fay@rival.test,imap.old-provider.test,fay,pw")
    page.get_by_role("button", name="Start the migration").click()
    expect(page.get_by_text("fay@rival.test is not a mailbox of journeys.test")).to_be_visible()
    expect(page.locator("section.migration-job")).to_have_count(1)
    page.get_by_role("button", name="Close the job").click()
    expect(page.get_by_text("Job closed: its old passwords are deleted.")).to_be_visible()
