"""Branding in a real browser: a full admin makes a brand in the panel, and Chromium, resolving
the brand's host to this machine, sees the webmail and the admin panel wear it at once."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests import images
from tests.browser import test_admin_panel
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, STEP_TIMEOUT_MS
from tests.browser.test_admin_panel import form_with_button, log_in

world = test_admin_panel.world  # the fixture: tenant One with other.test, full admin "boss"

pytestmark = pytest.mark.browser

LOGO = images.png(84, 28)


@pytest.fixture
def branded_browser(browser: Browser, live_server: str) -> Iterator[Browser]:
    """Chromium that resolves every *.test name to loopback, as DNS would send it to us
    (launched through the session's Playwright: a second one cannot run beside it)."""
    branded = browser.browser_type.launch(
        executable_path=str(CHROMIUM),
        args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP *.test 127.0.0.1, EXCLUDE localhost"],
    )
    yield branded
    branded.close()


def _page(browser: Browser, base_url: str) -> Page:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    # Nothing may leave the machine: only this server is reachable.
    context.route(re.compile(r"^(?!http://(127\.0\.0\.1|mail\.other\.test):).*"), lambda route: route.abort())
    return context.new_page()


def test_a_brand_made_in_the_panel_is_worn_on_its_own_host_at_once(
    branded_browser: Browser,
    live_server: str,
    world,
    artifacts,
    tmp_path,
) -> None:
    port = live_server.rsplit(":", 1)[1]
    brand_url = f"http://mail.other.test:{port}"
    admin = _page(branded_browser, live_server)
    log_in(admin, "boss")
    admin.get_by_role("link", name="Branding").click()
    form = form_with_button(admin, "Add brand")
    form.get_by_label("Server name").fill("mail.other.test")
    form.get_by_label("Brand name").fill("Other Mail Co")
    form.get_by_label("Support link").fill("https://help.other.test/")
    form.get_by_role("button", name="Add brand").click()
    expect(admin.get_by_role("heading", name="Edit branding: mail.other.test")).to_be_visible()

    logo = tmp_path / "logo.png"
    logo.write_bytes(LOGO)
    logo_form = form_with_button(admin, "Save images")
    logo_form.get_by_label("Logo", exact=True).set_input_files(str(logo))
    logo_form.get_by_role("button", name="Save images").click()
    expect(admin.get_by_role("status")).to_contain_text("Images saved")
    admin.locator("tr", has_text="other.test").get_by_role("button", name="Use this brand").click()
    expect(admin.get_by_role("heading", name="other.test", exact=True)).to_be_visible()
    expect(admin.locator("table.dns-records").first).to_contain_text("_submissions._tcp.other.test")
    admin.screenshot(path=str(artifacts / "branding-server-names.png"), full_page=True)

    visitor = _page(branded_browser, brand_url)
    visitor.goto("/")
    expect(visitor.locator("header")).to_contain_text("Other Mail Co")
    expect(visitor.locator("header a", has_text="Support")).to_have_attribute(
        "href", "https://help.other.test/"
    )
    image = visitor.locator("header img")
    expect(image).to_be_visible()
    assert visitor.evaluate("img => img.naturalWidth", image.element_handle()) == 84
    visitor.screenshot(path=str(artifacts / "branding-webmail-login.png"))
    visitor.goto("/admin/login")
    expect(visitor.locator("header")).to_contain_text("Other Mail Co")

    # A change in the panel shows on the brand's host on the next page load.
    name_form = form_with_button(admin, "Save")
    name_form.get_by_label("Brand name").fill("Renamed Mail")
    name_form.get_by_label("Support link").fill("")
    name_form.get_by_role("button", name="Save").click()
    visitor.goto("/")
    expect(visitor.locator("header")).to_contain_text("Renamed Mail")
    expect(visitor.locator("header a", has_text="Support")).to_have_count(0)

    # The platform's own host keeps the platform's look.
    platform = _page(branded_browser, live_server)
    platform.goto("/")
    expect(platform.locator("header")).not_to_contain_text("Renamed Mail")
    expect(platform.locator("header img")).to_have_count(0)


def test_the_preview_follows_the_look_as_it_is_typed_before_it_is_saved(
    branded_browser: Browser, live_server: str, world, installation
) -> None:
    admin = _page(branded_browser, live_server)
    log_in(admin, "boss")
    admin.get_by_role("link", name="Branding").click()
    form = form_with_button(admin, "Add brand")
    form.get_by_label("Server name").fill("mail.other.test")
    form.get_by_label("Brand name").fill("Other Mail Co")
    form.get_by_role("button", name="Add brand").click()
    preview = admin.frame_locator("#brand-preview")
    expect(preview.locator(".brand-welcome")).to_have_text("Other Mail Co")
    look = form_with_button(admin, "Save")
    look.get_by_label("Accent colour").fill("#b5179e")
    look.get_by_label("Brand name").fill("Typed Name")
    expect(preview.locator(".brand-welcome")).to_have_text("Typed Name")
    expect(preview.locator(".brand-welcome")).to_have_css("color", "rgb(181, 23, 158)")
    # Not saved until Save.
    with installation.sessions() as session:
        from controlplane.models import Brand

        assert session.query(Brand.name, Brand.accent_colour).one() == ("Other Mail Co", None)
