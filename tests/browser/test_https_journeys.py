"""The web the way users reach it: Chromium, through the stack's own nginx over HTTPS, on a brand host
and on the platform's address with its port, to the app under gunicorn.

Every journey here was broken once while tests that spoke plain HTTP to the app passed: the webmail
login (its pages sent no Referer, which the CSRF check over HTTPS requires) and the panel login on
any port but 443 (nginx dropped the port from the Host the app compared the Referer with).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from controlplane.runners.scratch import ScratchStack
from controlplane.services import brands, scope
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
            domain = make_domain(session, tenant=tenant, name="journeys.test", max_mailbox_bytes=1000 * KB)
            make_mailbox(session, domain=domain, local_part="fay", quota=1000 * KB)
            brand = brands.create_brand(
                session,
                scope.OPERATOR,
                stack.settings,
                tenant=tenant,
                hostname=BRAND_HOST,
                name="Journeys Mail",
            )
            brands.set_domain_brand(session, scope.OPERATOR, domain, brand)
            brands.create_brand(
                session,
                scope.OPERATOR,
                stack.settings,
                tenant=rival,
                hostname=OTHER_BRAND_HOST,
                name="Rival Mail",
            )
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
