"""The webmail in a real browser (Debian's Chromium) against the real Dovecot and Postfix.

The journey a user makes every day: log in, read a message, reply to it; the reply is delivered.
Every request to anywhere but the app is refused and recorded: a message's remote images and
scripts must never load. Screenshots land in tests/browser/artifacts/.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from playwright.sync_api import Page, expect
from werkzeug.serving import make_server

from controlplane import create_app
from controlplane.runners.scratch import ScratchStack
from tests.e2e.mailclient import DEFAULT_TIMEOUT, wait_for_subject
from tests.factories import PASSWORD, make_domain, make_mailbox, make_tenant

KB = 1024

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def stack(mail_stack: ScratchStack) -> ScratchStack:
    """Two mailboxes in one domain: dora writes to eli, eli reads and replies."""
    with mail_stack.installation.transaction() as session:
        tenant = make_tenant(session, name="Browser Webmail", pool=5000 * KB)
        domain = make_domain(session, tenant=tenant, name="journey.test", max_mailbox_bytes=1000 * KB)
        for local_part in ("dora", "eli"):
            make_mailbox(session, domain=domain, local_part=local_part, quota=1000 * KB)
    return mail_stack


@pytest.fixture
def live_server(stack: ScratchStack) -> Iterator[str]:
    """The real app on the mail stack's installation, served on a free loopback port."""
    app = create_app({"LETTERHEAD_SETTINGS": stack.settings, "TESTING": True})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="webmail-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        app.extensions["letterhead"].dispose()


def deliver(stack: ScratchStack, message: EmailMessage) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=DEFAULT_TIMEOUT) as client:
        client.send_message(message)


def test_a_user_logs_in_reads_a_message_and_replies(page: Page, live_server: str, stack, artifacts) -> None:
    outside: list[str] = []

    def only_the_app(route) -> None:
        if route.request.url.startswith(live_server):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_app)

    invitation = EmailMessage()
    invitation["From"], invitation["To"] = "dora@journey.test", "eli@journey.test"
    invitation["Subject"] = "Picnic on Sunday"
    invitation["Message-ID"] = "<picnic-1@journey.test>"
    invitation.set_content("Shall we meet at the lake at noon?\nDora")
    invitation.add_alternative(
        '<p>Shall we meet at the <b>lake</b> at noon?</p><img src="https://tracker.example/p.png">'
        "<script>document.title='owned'</script><p>Dora</p>",
        subtype="html",
    )
    deliver(stack, invitation)
    assert wait_for_subject(stack, "eli@journey.test", PASSWORD, "Picnic on Sunday")

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)$"))
    page.get_by_label("Email address").fill("eli@journey.test")
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email address or password.")
    page.get_by_label("Password").fill(PASSWORD)
    page.screenshot(path=artifacts / "webmail-login.png", full_page=True)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Picnic on Sunday")
    expect(row).to_contain_text("dora@journey.test")
    expect(row).to_contain_text("unread")
    page.screenshot(path=artifacts / "webmail-inbox.png", full_page=True)

    row.get_by_role("link", name="Picnic on Sunday").click()
    expect(page.get_by_role("heading", name="Picnic on Sunday", level=1)).to_be_visible()
    # The HTML part, sanitised in its sandboxed frame: its script never ran, its tracker never loaded.
    frame = page.frame_locator("iframe.body.html")
    expect(frame.locator("b")).to_have_text("lake")
    expect(frame.locator("body")).to_contain_text("Shall we meet at the lake at noon?")
    expect(page.locator(".remote-blocked")).to_contain_text("1 remote image not shown")
    assert page.title() != "owned"
    page.screenshot(path=artifacts / "webmail-message.png", full_page=True)

    page.get_by_role("link", name="Reply", exact=True).click()
    expect(page.get_by_label("To", exact=True)).to_have_value("dora@journey.test")
    expect(page.get_by_label("Subject")).to_have_value("Re: Picnic on Sunday")
    body = page.get_by_label("Message")
    expect(body).to_contain_text("> Shall we meet at the lake at noon?")
    body.press("Control+Home")
    body.type("Noon is perfect, see you there.")
    page.screenshot(path=artifacts / "webmail-reply.png", full_page=True)
    page.get_by_role("button", name="Send").click()

    expect(page.get_by_role("status")).to_have_text("Message sent.")
    # Read and back in the inbox: the message is no longer marked unread.
    expect(page.get_by_role("row").filter(has_text="Picnic on Sunday")).not_to_contain_text("unread")
    assert wait_for_subject(stack, "dora@journey.test", PASSWORD, "Re: Picnic on Sunday")

    page.get_by_role("link", name="Sent").click()
    expect(page.get_by_role("row").filter(has_text="Re: Picnic on Sunday")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to your mail")).to_be_visible()
    assert outside == []


def test_the_keyboard_alone_writes_opens_and_answers_mail(
    page: Page, live_server: str, stack, artifacts
) -> None:
    for number in (1, 2):
        note = EmailMessage()
        note["From"], note["To"], note["Subject"] = "dora@journey.test", "eli@journey.test", f"Note {number}"
        note.set_content(f"Note number {number}.")
        deliver(stack, note)
    assert wait_for_subject(stack, "eli@journey.test", PASSWORD, "Note 2")
    page.goto("/login")
    page.get_by_label("Email address").fill("eli@journey.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()

    page.keyboard.press("c")
    expect(page.get_by_role("heading", name="New message")).to_be_visible()
    page.keyboard.press("i")  # typed outside a field: back to the inbox
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    page.keyboard.press("j")
    expect(page.locator("table.messages tbody tr.focused")).to_contain_text("Note 2")
    page.keyboard.press("j")
    expect(page.locator("table.messages tbody tr.focused")).to_contain_text("Note 1")
    page.keyboard.press("x")
    expect(page.locator("table.messages tbody tr.focused input[type=checkbox]")).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Note 1", level=1)).to_be_visible()
    page.keyboard.press("a")
    expect(page.get_by_label("Subject")).to_have_value("Re: Note 1")
    # In a field, letters are text, not shortcuts.
    page.get_by_label("Message").press("Control+Home")
    page.keyboard.type("cij")
    expect(page.get_by_label("Message")).to_have_value(re.compile(r"^cij"))
    expect(page.get_by_label("Subject")).to_have_value("Re: Note 1")
    page.keyboard.press("Escape")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    expect(page.locator("#shortcuts dl")).to_be_visible()


def test_the_webmail_fits_a_phone_screen(browser, live_server: str, stack, artifacts) -> None:
    context = browser.new_context(
        base_url=live_server, viewport={"width": 375, "height": 740}, is_mobile=True
    )
    phone = context.new_page()
    try:
        phone.goto("/login")
        phone.get_by_label("Email address").fill("eli@journey.test")
        phone.get_by_label("Password").fill(PASSWORD)
        phone.get_by_role("button", name="Log in").click()
        expect(phone.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
        for path in ("/", "/compose", "/settings/account"):
            phone.goto(path)
            # Nothing wider than the screen: no sideways scrolling.
            assert phone.evaluate("document.documentElement.scrollWidth") <= 375, path
        phone.goto("/")
        phone.screenshot(path=artifacts / "webmail-phone-inbox.png", full_page=True)
        folders = phone.get_by_role("navigation", name="Folders").bounding_box()
        listing = phone.locator("main").bounding_box()
        assert folders is not None and listing is not None
        assert folders["y"] + folders["height"] <= listing["y"] + 1, "the folders are not above the mail"
    finally:
        context.close()
