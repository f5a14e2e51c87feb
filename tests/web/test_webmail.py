"""The webmail through Flask's test client against the real Dovecot and Postfix (the `mail_stack`).

Mailboxes are made through the services; mail arrives over SMTP or IMAP APPEND like any client's;
the webmail logs in to IMAP and submission as the user. CSRF is on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import imaplib
import io
import re
import time
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from controlplane import create_app
from controlplane.errors import ValidationError
from controlplane.models import AuditEntry, AuthEvent
from controlplane.runners.scratch import ScratchStack, free_ports
from controlplane.services import brands, mailboxes, sender_lists, sieve
from controlplane.services import webmail as webmail_rules
from controlplane.services.scope import OPERATOR
from controlplane.services.storage import format_bytes
from controlplane.services.webmail import parse_recipients
from tests.e2e.mailclient import DEFAULT_TIMEOUT, send, wait_for_subject
from tests.factories import PASSWORD, make_admin, make_alias, make_domain, make_mailbox, make_tenant
from webmail import messages
from webmail.mailstore import decode_folder_name, encode_folder_name
from webmail.managesieve import SieveClient

KB = 1024
UNICODE_PASSWORD = "Grüße, 🔑 sicher"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(mail_stack: ScratchStack) -> ScratchStack:
    """Tenant One: ann@one.test and amy@one.test; tenant Two: bea@two.test; one full admin."""
    with mail_stack.installation.transaction() as session:
        one = make_tenant(session, name="Webmail One", pool=5000 * KB)
        two = make_tenant(session, name="Webmail Two", pool=5000 * KB)
        make_admin(session, tenant=one, login="webmail-boss")
        first = make_domain(session, tenant=one, name="one.test", max_mailbox_bytes=1000 * KB)
        second = make_domain(session, tenant=two, name="two.test", max_mailbox_bytes=1000 * KB)
        for domain, local_part in ((first, "ann"), (first, "amy"), (first, "cal"), (second, "bea")):
            make_mailbox(session, domain=domain, local_part=local_part, quota=1000 * KB)
        make_mailbox(session, domain=first, local_part="uma", quota=1000 * KB, password=UNICODE_PASSWORD)
    return mail_stack


@pytest.fixture(scope="module")
def app(stack: ScratchStack):
    app = create_app({"LETTERHEAD_SETTINGS": stack.settings, "TESTING": True})
    yield app
    app.extensions["letterhead"].dispose()


def client_from(app, ip: str = "127.0.0.1"):
    """A browser of its own; `ip` keeps each test's failed guesses out of the others' throttling."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def log_in(client, address: str, password: str = PASSWORD, **extra):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login", data={"address": address, "password": password, "csrf_token": token, **extra}
    )


def post(client, url: str, data: dict | None = None):
    token = csrf_from(client.get("/compose").get_data(as_text=True))
    return client.post(url, data={**(data or {}), "csrf_token": token})


def imap(stack: ScratchStack, user: str, password: str = PASSWORD) -> imaplib.IMAP4:
    connection = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=DEFAULT_TIMEOUT)
    connection.login(user, password)
    return connection


def append(stack: ScratchStack, user: str, message: EmailMessage, folder: str = "INBOX") -> int:
    """Put a message straight into a folder; return its UID."""
    connection = imap(stack, user)
    try:
        status, data = connection.append(
            folder, "", imaplib.Time2Internaldate(time.time()), message.as_bytes()
        )
        assert status == "OK", data
        return int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
    finally:
        connection.logout()


def flags_of(stack: ScratchStack, user: str, uid: int, folder: str = "INBOX") -> bytes:
    connection = imap(stack, user)
    try:
        connection.select(folder, readonly=True)
        _, data = connection.uid("FETCH", str(uid), "(FLAGS)")
        return data[0] or b""
    finally:
        connection.logout()


def subjects_in(stack: ScratchStack, user: str, folder: str) -> list[str]:
    connection = imap(stack, user)
    try:
        connection.select(folder, readonly=True)
        _, data = connection.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [
            item[1].decode().strip().removeprefix("Subject:").strip()
            for item in data
            if isinstance(item, tuple)
        ]
    finally:
        connection.logout()


def message(subject: str, body: str = "Plain words.", sender: str = "someone@elsewhere.test") -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = sender, "x@one.test", subject
    mail.set_content(body)
    return mail


def auth_events(stack: ScratchStack, **criteria) -> list[AuthEvent]:
    with stack.installation.sessions() as session:
        query = select(AuthEvent).filter_by(service="webmail", **criteria).order_by(AuthEvent.id)
        return list(session.scalars(query))


# --- logging in ---------------------------------------------------------------------------------


def test_every_mail_page_needs_a_webmail_login_and_a_panel_login_is_not_one(app) -> None:
    client = client_from(app)
    for url in ("/", "/folder?name=INBOX", "/message/1", "/compose"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    panel = client.post(
        "/admin/login", data={"login": "webmail-boss", "password": PASSWORD, "csrf_token": token}
    )
    assert panel.status_code == 302
    assert client.get("/").status_code == 302


def test_a_correct_login_opens_the_inbox_and_is_recorded(app, stack) -> None:
    client = client_from(app, "10.1.0.1")
    response = log_in(client, "Ann@One.test")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "ann@one.test" in page.get_data(as_text=True)
    event = auth_events(stack, client_ip="10.1.0.1")[-1]
    assert (event.success, event.account, event.reason) == (True, "ann@one.test", "")
    assert event.tenant_id is not None and event.domain_id is not None


def test_the_cookie_never_holds_the_password_in_clear(app) -> None:
    client = client_from(app, "10.1.0.2")
    log_in(client, "ann@one.test")
    cookie = client.get_cookie("lh_mail")
    assert cookie is not None
    import base64
    import zlib

    payload = cookie.value.lstrip(".").split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if cookie.value.startswith("."):
        decoded = zlib.decompress(decoded)
    assert b"ann@one.test" in decoded  # we did read the cookie's content...
    assert PASSWORD.encode() not in decoded  # ...and the password is not in it


def test_a_wrong_password_is_refused_and_recorded_as_a_failed_webmail_login(app, stack) -> None:
    client = client_from(app, "10.1.0.3")
    response = log_in(client, "ann@one.test", "not the password")
    assert response.status_code == 401
    assert "Wrong email address or password." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302
    unknown = log_in(client, "nobody@one.test", "whatever")
    assert unknown.status_code == 401
    events = auth_events(stack, client_ip="10.1.0.3")
    assert [(e.account, e.success, e.reason) for e in events] == [
        ("ann@one.test", False, "wrong password"),
        ("nobody@one.test", False, "unknown user"),
    ]
    assert all(e.password_fingerprint for e in events)


def test_repeated_wrong_guesses_throttle_even_the_right_password(app, stack) -> None:
    client = client_from(app, "10.1.0.4")
    for guess in range(5):
        assert log_in(client, "cal@one.test", f"guess {guess}").status_code == 401
    response = log_in(client, "cal@one.test")
    assert response.status_code == 429
    assert "Too many failed logins" in response.get_data(as_text=True)
    assert auth_events(stack, client_ip="10.1.0.4")[-1].reason == "throttled"
    # The panel counts the same guesses: it guards the same password.
    token = csrf_from(client.get("/admin/login").get_data(as_text=True))
    panel = client.post(
        "/admin/login", data={"login": "cal@one.test", "password": PASSWORD, "csrf_token": token}
    )
    assert panel.status_code == 429


def test_a_login_form_without_its_csrf_token_is_refused(app, stack) -> None:
    client = client_from(app, "10.1.0.5")
    response = client.post("/login", data={"address": "ann@one.test", "password": PASSWORD})
    assert response.status_code == 400
    assert auth_events(stack, client_ip="10.1.0.5") == []


def test_login_only_returns_to_a_page_of_this_site(app) -> None:
    client = client_from(app, "10.1.0.6")
    response = log_in(client, "ann@one.test", next="//evil.test/phish")
    assert response.headers["Location"] == "/"
    client = client_from(app, "10.1.0.6")
    response = log_in(client, "ann@one.test", next="/compose")
    assert response.headers["Location"] == "/compose"


def test_logout_ends_the_webmail_session(app) -> None:
    client = client_from(app, "10.1.0.7")
    log_in(client, "ann@one.test")
    assert client.get("/").status_code == 200
    response = post(client, "/logout")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


# --- reading --------------------------------------------------------------------------------------


def test_a_message_sent_over_smtp_is_listed_unread_and_reading_it_marks_it_read(app, stack) -> None:
    subject = send(stack, "someone@elsewhere.test", ["amy@one.test"], subject="Lunch on Friday?")
    assert wait_for_subject(stack, "amy@one.test", PASSWORD, subject)
    client = client_from(app, "10.2.0.1")
    log_in(client, "amy@one.test")
    listing = client.get("/").get_data(as_text=True)
    row = re.search(r'<tr class="unread"[^>]*>.*?</tr>', listing, re.S)
    assert row and "Lunch on Friday?" in row.group(0) and "someone@elsewhere.test" in row.group(0)
    uid = int(re.search(r'/message/(\d+)\?folder=INBOX">Lunch on Friday\?', listing).group(1))
    assert b"\\Seen" not in flags_of(stack, "amy@one.test", uid)

    page = client.get(f"/message/{uid}?folder=INBOX")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Hello from the Letterhead tests." in text and "someone@elsewhere.test" in text
    assert b"\\Seen" in flags_of(stack, "amy@one.test", uid)

    response = post(client, f"/message/{uid}/read", {"folder": "INBOX", "read": "0"})
    assert response.status_code == 302
    assert b"\\Seen" not in flags_of(stack, "amy@one.test", uid)


def test_the_folder_list_shows_every_folder_with_unread_counts(app, stack) -> None:
    append(stack, "amy@one.test", message("Filed away"), folder="Junk")
    client = client_from(app, "10.2.0.2")
    log_in(client, "amy@one.test")
    page = client.get("/").get_data(as_text=True)
    for name in ("Inbox", "Drafts", "Junk", "Sent", "Trash"):
        assert f">{name}</a>" in page
    junk = client.get("/folder?name=Junk").get_data(as_text=True)
    assert "Filed away" in junk


def test_messages_are_listed_newest_first_a_page_at_a_time(app, stack) -> None:
    for number in range(30):
        append(stack, "bea@two.test", message(f"Numbered {number:02d}"), folder="Drafts")
    client = client_from(app, "10.2.0.3")
    log_in(client, "bea@two.test")
    first = client.get("/folder?name=Drafts").get_data(as_text=True)
    shown = re.findall(r">Numbered (\d\d)</a>", first)
    assert shown == [f"{n:02d}" for n in range(29, 4, -1)]
    assert "page 1 of 2" in first and "30 messages" in first
    second = re.findall(
        r">Numbered (\d\d)</a>", client.get("/folder?name=Drafts&page=2").get_data(as_text=True)
    )
    assert second == ["04", "03", "02", "01", "00"]
    assert client.get("/folder?name=Drafts&page=x").status_code == 400


PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def test_an_html_body_is_shown_sanitised_in_a_sandboxed_frame_without_remote_images(app, stack) -> None:
    mail = message("Rich mail")
    mail.set_content("Dear Amy, the plain part.")
    mail.add_alternative(
        "<html><head><style>p{color:red}</style><script>alert('owned')</script></head>"
        '<body onload="alert(2)"><p>Dear <b>Amy</b>,</p><img src="https://tracker.test/pixel.png">'
        '<img src="cid:logo@one.test" alt="logo"><a href="javascript:alert(3)">click</a>'
        '<form action="https://evil.test/"><input name="password"></form>'
        "<p>Fish &amp; chips &lt;today&gt;</p></body></html>",
        subtype="html",
    )
    mail.get_payload()[1].add_related(PIXEL, "image", "png", cid="<logo@one.test>")
    uid = append(stack, "amy@one.test", mail)
    client = client_from(app, "10.2.0.4")
    log_in(client, "amy@one.test")

    page = client.get(f"/message/{uid}")
    text = page.get_data(as_text=True)
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    frame = re.search(r'<iframe class="body html"[^>]*sandbox="([^"]*)"[^>]*src="([^"]+)"', text)
    assert frame, text
    assert "allow-scripts" not in frame.group(1)
    assert "1 remote image not shown" in text and "tracker.test" not in text

    shown = client.get(frame.group(2).replace("&amp;", "&"))
    body = shown.get_data(as_text=True)
    policy = shown.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "img-src 'self';" in policy and "script" not in policy
    assert shown.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "<b>Amy</b>" in body and "Fish &amp; chips &lt;today&gt;" in body
    for bad in ("<script", "alert(", "onload", "tracker.test", "<form", "javascript:", "<style>p"):
        assert bad not in body, bad
    inline = re.search(r'<img src="(/message/\d+/inline/[^"]+)"', body)
    assert inline, body
    image = client.get(inline.group(1).replace("&amp;", "&"))
    assert (image.status_code, image.mimetype, image.data) == (200, "image/png", PIXEL)

    # Asked for, remote images load, and only then.
    allowed = client.get(f"/message/{uid}?remote=1").get_data(as_text=True)
    frame_url = (
        re.search(r'<iframe class="body html"[^>]*src="([^"]+)"', allowed).group(1).replace("&amp;", "&")
    )
    remote = client.get(frame_url)
    assert "https://tracker.test/pixel.png" in remote.get_data(as_text=True)
    assert "img-src 'self' https: http:" in remote.headers["Content-Security-Policy"]
    # Another user's session reaches only their own mailbox with the same URL.
    other = client_from(app, "10.2.0.5")
    log_in(other, "ann@one.test")
    assert "Amy" not in other.get(frame.group(2).replace("&amp;", "&")).get_data(as_text=True)


def test_plain_text_links_image_previews_and_the_original_source(app, stack) -> None:
    mail = message(
        "Links and a photo",
        body='See https://example.org/a?b=1&c=2. Not <script>alert(1)</script> or "javascript:x".',
    )
    mail.add_attachment(PIXEL, maintype="image", subtype="png", filename="photo.png")
    mail.add_attachment(b"<svg onload='alert(1)'/>", maintype="image", subtype="svg+xml", filename="x.svg")
    uid = append(stack, "amy@one.test", mail)
    client = client_from(app, "10.2.0.6")
    log_in(client, "amy@one.test")
    page = client.get(f"/message/{uid}").get_data(as_text=True)
    assert (
        '<a href="https://example.org/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">'
        "https://example.org/a?b=1&amp;c=2</a>." in page
    )
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
    previews = re.findall(r'<img class="preview" alt="([^"]+)" src="([^"]+)"', page)
    assert [name for name, _ in previews] == ["photo.png"]  # an SVG is never shown inline
    preview = client.get(previews[0][1].replace("&amp;", "&"))
    assert (preview.mimetype, preview.data) == ("image/png", PIXEL)
    svg_index = int(re.search(r'/attachments/(\d+)\?folder=INBOX" download>x.svg', page).group(1))
    assert client.get(f"/message/{uid}/attachments/{svg_index}/preview").status_code == 404

    source_url = re.search(r'href="([^"]+/source[^"]*)"', page).group(1).replace("&amp;", "&")
    source = client.get(source_url)
    assert source.mimetype == "text/plain" and "sandbox" in source.headers["Content-Security-Policy"]
    assert "Subject: Links and a photo" in source.get_data(as_text=True)


def test_attachments_are_listed_and_downloaded_as_files(app, stack) -> None:
    mail = message("With files", body="See the attached.")
    mail.add_attachment(
        b"%PDF-1.4 binary \x00\x01", maintype="application", subtype="pdf", filename="offer.pdf"
    )
    mail.add_attachment("<script>alert(1)</script>", subtype="html", filename="../../evil.html")
    uid = append(stack, "amy@one.test", mail)
    client = client_from(app, "10.2.0.5")
    log_in(client, "amy@one.test")
    page = client.get(f"/message/{uid}").get_data(as_text=True)
    assert "See the attached." in page
    links = re.findall(rf'href="(/message/{uid}/attachments/\d+\?folder=INBOX)"[^>]*>([^<]+)<', page)
    assert [name for _, name in links] == ["offer.pdf", "evil.html"]
    pdf = client.get(links[0][0])
    assert pdf.status_code == 200 and pdf.data == b"%PDF-1.4 binary \x00\x01"
    assert pdf.headers["Content-Disposition"] == "attachment; filename=offer.pdf"
    html = client.get(links[1][0])
    assert html.headers["Content-Type"] == "application/octet-stream"
    assert html.headers["Content-Disposition"] == "attachment; filename=evil.html"
    assert client.get(f"/message/{uid}/attachments/99").status_code == 404


def test_delete_moves_a_message_to_trash(app, stack) -> None:
    uid = append(stack, "amy@one.test", message("Throw me away"))
    client = client_from(app, "10.2.0.6")
    log_in(client, "amy@one.test")
    response = post(client, f"/message/{uid}/delete", {"folder": "INBOX"})
    assert response.status_code == 302
    assert "Throw me away" not in subjects_in(stack, "amy@one.test", "INBOX")
    assert "Throw me away" in subjects_in(stack, "amy@one.test", "Trash")
    assert client.get(f"/message/{uid}").status_code == 404
    trash = client.get("/folder?name=Trash").get_data(as_text=True)
    trash_uid = re.search(r'/message/(\d+)\?folder=Trash">Throw me away', trash).group(1)
    response = post(client, f"/message/{trash_uid}/delete", {"folder": "Trash"})
    assert response.status_code == 302
    assert "Throw me away" not in subjects_in(stack, "amy@one.test", "Trash")


def test_a_password_outside_ascii_logs_in_and_sends(app, stack) -> None:
    client = client_from(app, "10.2.0.7")
    assert log_in(client, "uma@one.test", UNICODE_PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
    response = post(client, "/compose", {"to": "ann@one.test", "cc": "", "subject": "From Uma", "body": "Hi"})
    assert response.status_code == 302
    assert wait_for_subject(stack, "ann@one.test", PASSWORD, "From Uma")


# --- writing --------------------------------------------------------------------------------------


def test_a_composed_message_is_delivered_to_another_mailbox_and_kept_in_sent(app, stack) -> None:
    client = client_from(app, "10.3.0.1")
    log_in(client, "ann@one.test")
    response = post(client, "/compose", {"to": "Bea <bea@two.test>", "cc": "", "subject": "Quarterly numbers",
                                         "body": "Here they are.\nAnn"})  # fmt: skip
    assert response.status_code == 302
    assert wait_for_subject(stack, "bea@two.test", PASSWORD, "Quarterly numbers")
    assert "Quarterly numbers" in subjects_in(stack, "ann@one.test", "Sent")
    connection = imap(stack, "bea@two.test")
    try:
        connection.select("INBOX", readonly=True)
        _, found = connection.uid("SEARCH", "SUBJECT", '"Quarterly numbers"')
        _, data = connection.uid("FETCH", found[0].split()[-1], "(BODY.PEEK[])")
    finally:
        connection.logout()
    raw = data[0][1].decode()
    assert "From: ann@one.test" in raw and "Here they are." in raw


def test_a_reply_quotes_the_original_and_threads_with_it(app, stack) -> None:
    original = message("Can we meet?", body="Tuesday at ten?", sender="bea@two.test")
    original["Message-ID"] = "<meet-123@two.test>"
    uid = append(stack, "ann@one.test", original)
    client = client_from(app, "10.3.0.2")
    log_in(client, "ann@one.test")
    draft = client.get(f"/compose?reply={uid}&folder=INBOX").get_data(as_text=True)
    assert 'value="Re: Can we meet?"' in draft and 'value="bea@two.test"' in draft
    assert "&gt; Tuesday at ten?" in draft
    token = csrf_from(draft)
    response = client.post("/compose", data={
        "csrf_token": token, "to": "bea@two.test", "cc": "", "subject": "Re: Can we meet?",
        "body": "Yes.\n\n> Tuesday at ten?", "in_reply_to": "<meet-123@two.test>", "references": "<meet-123@two.test>",
    })  # fmt: skip
    assert response.status_code == 302
    assert wait_for_subject(stack, "bea@two.test", PASSWORD, "Re: Can we meet?")
    connection = imap(stack, "bea@two.test")
    try:
        connection.select("INBOX", readonly=True)
        _, found = connection.uid("SEARCH", "HEADER", "In-Reply-To", "<meet-123@two.test>")
    finally:
        connection.logout()
    assert found[0].split(), "the reply does not carry In-Reply-To"


def test_bad_recipients_are_refused_with_a_message_and_nothing_is_sent(app, stack) -> None:
    client = client_from(app, "10.3.0.3")
    log_in(client, "ann@one.test")
    sent_before = subjects_in(stack, "ann@one.test", "Sent")
    for fields in (
        {"to": "not an address", "subject": "Bad one"},
        {"to": "", "subject": "Bad one"},
        {"to": "bea@two.test", "subject": "Bad\r\nBcc: victim@two.test"},
        {"to": "bea@two.test, x@-bad-.test", "subject": "Bad one"},
    ):
        response = post(client, "/compose", {"cc": "", "body": "text", **fields})
        assert response.status_code == 400, fields
        assert 'role="alert"' in response.get_data(as_text=True)
    assert subjects_in(stack, "ann@one.test", "Sent") == sent_before


def test_a_compose_form_without_its_csrf_token_sends_nothing(app, stack) -> None:
    client = client_from(app, "10.3.0.4")
    log_in(client, "ann@one.test")
    response = client.post("/compose", data={"to": "bea@two.test", "subject": "Forged", "body": "x"})
    assert response.status_code == 400
    assert "Forged" not in subjects_in(stack, "ann@one.test", "Sent")


# --- isolation ------------------------------------------------------------------------------------


def test_a_user_can_never_reach_another_users_messages(app, stack) -> None:
    secret_uid = append(stack, "bea@two.test", message("Bea's secret", body="Only for Bea."))
    client = client_from(app, "10.4.0.1")
    log_in(client, "ann@one.test")
    for uid in range(1, secret_uid + 5):
        page = client.get(f"/message/{uid}")
        assert "Bea's secret" not in page.get_data(as_text=True) and "Only for Bea" not in page.get_data(
            as_text=True
        )
    for name in (
        "../bea@two.test/INBOX",
        "bea@two.test",
        "~bea/INBOX",
        "#shared/bea",
        'IN"BOX',
        "INBOX\r\nX",
    ):
        response = client.get("/folder", query_string={"name": name})
        assert response.status_code == 404, name
        assert "Bea's secret" not in response.get_data(as_text=True)
    # Marking and deleting through another user's UID touches nothing of Bea's.
    for action in ("read", "delete"):
        own = subjects_in(stack, "ann@one.test", "INBOX")
        response = post(client, f"/message/{secret_uid + 1000}/{action}", {"folder": "INBOX", "read": "1"})
        assert response.status_code == 404, action
        assert subjects_in(stack, "ann@one.test", "INBOX") == own
        post(client, f"/message/{secret_uid}/{action}", {"folder": "INBOX", "read": "1"})
    assert b"\\Seen" not in flags_of(stack, "bea@two.test", secret_uid)
    assert "Bea's secret" in subjects_in(stack, "bea@two.test", "INBOX")


def test_a_changed_password_ends_the_webmail_session(app, stack) -> None:
    client = client_from(app, "10.4.0.2")
    log_in(client, "amy@one.test")
    assert client.get("/").status_code == 200
    with stack.installation.transaction() as session:
        mailbox = mailboxes.find_mailbox(session, "amy@one.test")
        mailboxes.set_mailbox_password(session, OPERATOR, mailbox, password="a brand new password")
    try:
        response = client.get("/")
        assert response.status_code == 302 and response.headers["Location"] == "/login"
        assert client.get("/").status_code == 302
    finally:
        with stack.installation.transaction() as session:
            mailbox = mailboxes.find_mailbox(session, "amy@one.test")
            mailboxes.set_mailbox_password(session, OPERATOR, mailbox, password=PASSWORD)


# --- failures of the mail servers -----------------------------------------------------------------


def test_mail_unavailable_is_a_503_page_not_a_stack_trace(app, stack, tmp_path) -> None:
    closed_port = free_ports(1)[0]
    # The same database, but no Dovecot behind its sockets and ports.
    broken_settings = dataclasses.replace(
        stack.settings, home=tmp_path, database_url=stack.settings.sqlalchemy_url, secret_key=app.secret_key,
        ports={**stack.settings.ports, "imaps": closed_port, "submissions": closed_port},
    )  # fmt: skip
    broken = create_app({"LETTERHEAD_SETTINGS": broken_settings, "TESTING": True})
    try:
        client = client_from(broken, "10.5.0.1")
        response = log_in(client, "ann@one.test")
        assert response.status_code == 503
        assert "Mail is unavailable" in response.get_data(as_text=True)
        assert "Traceback" not in response.get_data(as_text=True)
        assert auth_events(stack, client_ip="10.5.0.1")[-1].reason == "mail unavailable"

        # A session that began while IMAP was up meets the same page, and a draft being sent comes back.
        working = client_from(app, "10.5.0.1")
        log_in(working, "ann@one.test")
        token = csrf_from(working.get("/compose").get_data(as_text=True))
        client.set_cookie("lh_mail", working.get_cookie("lh_mail").value)
        page = client.get("/")
        assert page.status_code == 503 and "Mail is unavailable" in page.get_data(as_text=True)
        sent = client.post("/compose", data={"csrf_token": token, "to": "bea@two.test", "subject": "Kept draft",
                                             "body": "Do not lose me"})  # fmt: skip
        assert sent.status_code == 503 and "Do not lose me" in sent.get_data(as_text=True)
    finally:
        broken.extensions["letterhead"].dispose()


# --- names and addresses --------------------------------------------------------------------------


def test_folder_names_outside_ascii_are_listed_and_opened(app, stack) -> None:
    connection = imap(stack, "amy@one.test")
    try:
        # "Reisen & Über" in IMAP's modified UTF-7, spelled out so the test does not trust our encoder.
        assert connection.create('"Reisen &- &ANw-ber"')[0] == "OK"
    finally:
        connection.logout()
    append(stack, "amy@one.test", message("Booking confirmed"), folder='"Reisen &- &ANw-ber"')
    client = client_from(app, "10.6.0.1")
    log_in(client, "amy@one.test")
    assert ">Reisen &amp; Über</a>" in client.get("/").get_data(as_text=True)
    folder = client.get("/folder", query_string={"name": "Reisen & Über"})
    assert folder.status_code == 200 and "Booking confirmed" in folder.get_data(as_text=True)


def test_modified_utf7_folder_names_round_trip() -> None:
    for name in ("INBOX", "Reisen & Über", "日本語/メール", "a&b", "~peter/mail/台北/日本語", "€"):
        assert decode_folder_name(encode_folder_name(name)) == name
    assert encode_folder_name("Reisen & Über") == "Reisen &- &ANw-ber"
    assert encode_folder_name("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"


def test_recipients_are_parsed_checked_and_deduplicated() -> None:
    assert parse_recipients("Ann <ann@one.test>, bob@Bücher.test, ann@one.test", field="to") == [
        "ann@one.test",
        "bob@xn--bcher-kva.test",
    ]
    assert parse_recipients("  ", field="cc") == []
    for bad in (
        "no-at-sign",
        "a@b@c.test",
        "two..dots@one.test",
        "x@",
        "sp ace@one.test",
        "x@one.test\nBcc: y@z",
    ):
        with pytest.raises(ValidationError):
            parse_recipients(bad, field="to")


def test_a_user_blocks_a_sender_in_the_settings_and_its_next_message_goes_to_junk(app, stack) -> None:
    client = client_from(app, "10.2.0.40")
    log_in(client, "cal@one.test")
    assert post(client, "/settings/senders", {"sender": "@Pushy.test", "list": "block"}).status_code == 302
    post(client, "/settings/senders", {"sender": "friend@pushy.test", "list": "allow"})
    refused = post(client, "/settings/senders", {"sender": "nobody at all", "list": "block"})
    page = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "is neither an address nor @ and a domain" in page
    blocked = re.search(r'data-list="block">(.*?)</ul>', page, re.S).group(1)
    allowed = re.search(r'data-list="allow">(.*?)</ul>', page, re.S).group(1)
    assert "@pushy.test" in blocked and "friend@pushy.test" in allowed

    # An allowed sender must prove it is who it says: SPF lets 127.0.0.1 send for pushy.test.
    stack.dns.txt["pushy.test"] = "v=spf1 ip4:127.0.0.1 -all"
    pushed = send(stack, "sales@pushy.test", ["cal@one.test"], subject="Buy now")
    welcome = send(stack, "friend@pushy.test", ["cal@one.test"], subject="Dinner")
    assert wait_for_subject(stack, "cal@one.test", PASSWORD, welcome)
    deadline = time.monotonic() + 15
    while pushed not in subjects_in(stack, "cal@one.test", "Junk") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pushed in subjects_in(stack, "cal@one.test", "Junk")
    assert pushed not in subjects_in(stack, "cal@one.test", "INBOX")

    post(client, "/settings/senders", {"remove": "@pushy.test"})
    after = client.get("/settings/senders").get_data(as_text=True)
    assert "@pushy.test" not in re.search(r'data-list="block">(.*?)</ul>', after, re.S).group(1)


def test_the_senders_page_changes_only_the_users_own_mailbox(app, stack) -> None:
    """The form names no mailbox: whatever a user posts, only their own lists change."""
    client = client_from(app, "10.2.0.41")
    log_in(client, "bea@two.test")
    post(client, "/settings/senders", {"sender": "x@evil.test", "list": "allow", "mailbox": "ann@one.test"})
    with stack.installation.sessions() as session:
        ann = mailboxes.find_mailbox(session, "ann@one.test")
        bea = mailboxes.find_mailbox(session, "bea@two.test")
        assert sender_lists.lists_of(session, OPERATOR, ann).allowed == []
        assert sender_lists.lists_of(session, OPERATOR, bea).allowed == ["x@evil.test"]
    assert client_from(app, "10.2.0.42").get("/settings/senders").status_code == 302  # no login: to the form


def test_images_from_a_sender_the_user_chose_load_at_once_until_they_change_their_mind(app, stack) -> None:
    def newsletter(subject: str) -> int:
        mail = message(subject, sender="News Desk <news@letters.test>")
        mail.add_alternative('<p>Issue</p><img src="https://img.letters.test/banner.png">', subtype="html")
        return append(stack, "cal@one.test", mail)

    def frame_of(client, uid: int) -> tuple[str, str]:
        page = client.get(f"/message/{uid}").get_data(as_text=True)
        src = re.search(r'<iframe class="body html"[^>]*src="([^"]+)"', page).group(1).replace("&amp;", "&")
        return page, client.get(src).get_data(as_text=True)

    first = newsletter("Issue 1")
    client = client_from(app, "10.2.0.43")
    log_in(client, "cal@one.test")
    page, frame = frame_of(client, first)
    assert "img.letters.test" not in frame and "Always show images from news@letters.test" in page
    assert post(client, f"/message/{first}/always-show-images", {"folder": "INBOX"}).status_code == 302

    second = newsletter("Issue 2")
    page, frame = frame_of(client, second)
    assert "https://img.letters.test/banner.png" in frame and "remote image" not in page
    settings = client.get("/settings/senders").get_data(as_text=True)
    assert "news@letters.test" in re.search(r'data-list="images">(.*?)</ul>', settings, re.S).group(1)
    # Another user of the same domain is not affected by cal's choice.
    other = client_from(app, "10.2.0.44")
    log_in(other, "amy@one.test")
    mail = message("Issue 2 for Amy", sender="news@letters.test")
    mail.add_alternative('<img src="https://img.letters.test/banner.png">', subtype="html")
    _, amy_frame = frame_of(other, append(stack, "amy@one.test", mail))
    assert "img.letters.test" not in amy_frame

    post(client, "/settings/senders", {"stop_images": "news@letters.test"})
    _, frame = frame_of(client, second)
    assert "img.letters.test" not in frame


def test_search_is_done_by_the_server_in_the_field_asked_for_with_any_script(app, stack) -> None:
    append(stack, "amy@one.test", message("Quarterly numbers", body="The zeppelin budget is attached."))
    append(
        stack, "amy@one.test", message("Zeppelin tour", body="Tickets for Friday.", sender="tours@air.test")
    )
    append(stack, "amy@one.test", message("Grüße aus Köln", body="Schöne Grüße vom Dom."))
    client = client_from(app, "10.2.0.45")
    log_in(client, "amy@one.test")

    def found(query: str, where: str = "all") -> list[str]:
        response = client.get("/folder", query_string={"name": "INBOX", "q": query, "in": where})
        assert response.status_code == 200, response.get_data(as_text=True)
        return re.findall(
            r'<a href="/message/\d+\?folder=INBOX">([^<]+)</a>', response.get_data(as_text=True)
        )

    assert sorted(found("zeppelin")) == ["Quarterly numbers", "Zeppelin tour"]
    assert found("zeppelin", "body") == ["Quarterly numbers"]
    assert found("zeppelin", "subject") == ["Zeppelin tour"]
    assert found("tours@air.test", "from") == ["Zeppelin tour"]
    assert found("Grüße", "body") == ["Grüße aus Köln"]
    assert found("no-such-word-anywhere") == []
    assert "Nothing found." in client.get("/folder?name=INBOX&q=no-such-word-anywhere").get_data(as_text=True)
    assert client.get("/folder?name=INBOX&q=x&in=password").status_code == 400


def test_folders_are_created_renamed_and_deleted_with_their_mail_kept_in_trash(app, stack) -> None:
    client = client_from(app, "10.2.0.46")
    log_in(client, "cal@one.test")

    def folder_names() -> list[str]:
        page = client.get("/settings/folders").get_data(as_text=True)
        return re.findall(r'<tr data-folder="([^"]+)">', page)

    def flashed(response) -> str:
        return client.get(response.headers["Location"]).get_data(as_text=True)

    assert "created" in flashed(
        post(client, "/settings/folders", {"action": "create", "name": "Projekte 2026"})
    )
    assert "Projekte 2026" in folder_names()
    assert "already" in flashed(
        post(client, "/settings/folders", {"action": "create", "name": "projekte 2026"})
    )
    assert "cannot be a folder name" in flashed(
        post(client, "/settings/folders", {"action": "create", "name": "a/b"})
    )
    post(
        client,
        "/settings/folders",
        {"action": "rename", "name": "Projekte 2026", "new_name": "Größere Projekte"},
    )
    assert "Größere Projekte" in folder_names() and "Projekte 2026" not in folder_names()
    append(
        stack,
        "cal@one.test",
        message("Kept through the delete"),
        folder='"' + encode_folder_name("Größere Projekte") + '"',
    )
    deleted = flashed(post(client, "/settings/folders", {"action": "delete", "name": "Größere Projekte"}))
    assert "1 message(s) are in Trash" in deleted
    assert "Größere Projekte" not in folder_names()
    assert "Kept through the delete" in subjects_in(stack, "cal@one.test", "Trash")
    # The mailbox's own folders stay.
    for name in ("INBOX", "Trash"):
        assert "stays" in flashed(post(client, "/settings/folders", {"action": "delete", "name": name}))
    assert "no such folder" in flashed(
        post(client, "/settings/folders", {"action": "rename", "name": "Nope", "new_name": "X"})
    )


def test_selected_messages_are_marked_flagged_moved_and_deleted_together(app, stack) -> None:
    uids = [append(stack, "cal@one.test", message(f"Bulk {number}")) for number in range(3)]
    other_user_uid = append(stack, "amy@one.test", message("Amy's own"))
    client = client_from(app, "10.2.0.47")
    log_in(client, "cal@one.test")

    def act(action: str, chosen: list[int], **extra: str) -> str:
        response = post(
            client, "/folder/selected", {"folder": "INBOX", "action": action, "uid": chosen, **extra}
        )
        assert response.status_code == 302
        return client.get(response.headers["Location"]).get_data(as_text=True)

    assert "(2 messages)" in act("flag", uids[:2])
    assert flags_of(stack, "cal@one.test", uids[0]).count(b"\\Flagged") == 1
    page = client.get("/").get_data(as_text=True)
    assert re.search(rf'<tr class="unread flagged" data-uid="{uids[0]}">', page)
    act("read", uids)
    assert all(b"\\Seen" in flags_of(stack, "cal@one.test", uid) for uid in uids)
    post(client, "/settings/folders", {"action": "create", "name": "Archive"})
    assert "Moved." in act("move", uids[:2], target="Archive")
    assert {"Bulk 0", "Bulk 1"} <= set(subjects_in(stack, "cal@one.test", "Archive"))
    assert "Deleted." in act("delete", [uids[2]])
    assert "Bulk 2" in subjects_in(stack, "cal@one.test", "Trash")
    assert "no such folder" in act("move", [uids[0]], target="Nowhere")
    assert "at least one" in act("read", [])
    # A UID that is no message of this user's names nothing: amy's message keeps its flags.
    missing = post(
        client, "/folder/selected", {"folder": "INBOX", "action": "flag", "uid": [other_user_uid + 10_000]}
    )
    assert missing.status_code == 404
    assert b"\\Flagged" not in flags_of(stack, "amy@one.test", other_user_uid)


def test_a_folder_is_sorted_by_the_server_and_the_order_survives_paging_and_search(app, stack) -> None:
    connection = imap(stack, "bea@two.test")
    connection.create("Archive-Sort")
    connection.logout()
    for subject, sender, size in (
        ("beta", "zed@z.test", 10),
        ("Alpha", "amy@a.test", 5000),
        ("gamma", "max@m.test", 100),
    ):
        append(stack, "bea@two.test", message(subject, body="x" * size, sender=sender), folder="Archive-Sort")
    client = client_from(app, "10.2.0.48")
    log_in(client, "bea@two.test")

    def subjects(**query: str) -> list[str]:
        response = client.get("/folder", query_string={"name": "Archive-Sort", **query})
        assert response.status_code == 200, response.get_data(as_text=True)
        return re.findall(r'folder=Archive-Sort">([^<]+)</a>', response.get_data(as_text=True))

    assert subjects() == ["gamma", "Alpha", "beta"]  # newest arrival first
    assert subjects(sort="subject", order="asc") == ["Alpha", "beta", "gamma"]
    assert subjects(sort="size", order="desc") == ["Alpha", "gamma", "beta"]
    assert subjects(sort="from", order="asc") == ["Alpha", "gamma", "beta"]
    assert subjects(sort="subject", order="desc", q="a", **{"in": "subject"}) == ["gamma", "beta", "Alpha"]
    page = client.get("/folder?name=Archive-Sort&sort=subject&order=asc").get_data(as_text=True)
    assert 'aria-sort="ascending"' in page and "sort=subject&amp;order=desc" in page
    assert client.get("/folder?name=Archive-Sort&sort=password").status_code == 400


def test_a_message_lists_the_rest_of_its_conversation_threaded_by_references(app, stack) -> None:
    first = message("Trip plans")
    first["Message-ID"] = "<trip-1@one.test>"
    reply = message("Re: Trip plans", sender="friend@elsewhere.test")
    reply["Message-ID"], reply["In-Reply-To"], reply["References"] = (
        "<trip-2@x.test>",
        "<trip-1@one.test>",
        "<trip-1@one.test>",
    )
    later = message("Re: Re: Trip plans")
    later["Message-ID"], later["References"] = "<trip-3@one.test>", "<trip-1@one.test> <trip-2@x.test>"
    unrelated = message("Trip plans")  # the same subject, but no reference: another thread
    unrelated["Message-ID"] = "<other@one.test>"
    uids = [append(stack, "bea@two.test", mail) for mail in (first, reply, later, unrelated)]
    client = client_from(app, "10.2.0.49")
    log_in(client, "bea@two.test")
    page = client.get(f"/message/{uids[1]}").get_data(as_text=True)
    listed = re.findall(
        r'<li><a href="/message/(\d+)\?folder=INBOX">', page.split("In this conversation", 1)[1]
    )
    assert [int(uid) for uid in listed] == [uids[0], uids[2]]
    alone = client.get(f"/message/{uids[3]}").get_data(as_text=True)
    assert "In this conversation" not in alone


def test_the_account_page_shows_storage_and_only_the_users_own_logins(app, stack) -> None:
    guesser = client_from(app, "10.2.0.50")
    log_in(guesser, "amy@one.test", "not the password")
    log_in(client_from(app, "10.2.0.52"), "bea@two.test")
    client = client_from(app, "10.2.0.51")
    log_in(client, "amy@one.test")
    page = client.get("/settings/account").get_data(as_text=True)
    storage_section = page.split('id="storage"', 1)[1].split("</section>", 1)[0]
    assert format_bytes(1000 * KB) in storage_section
    rows = re.findall(
        r'<tr class="(ok|failed)">\s*<td>[^<]+</td>\s*<td>(\w+)</td>\s*<td class="mono">([^<]+)</td>', page
    )
    assert ("ok", "webmail", "10.2.0.51") in rows
    assert ("failed", "webmail", "10.2.0.50") in rows
    assert all(ip != "10.2.0.52" for _, _, ip in rows)  # bea's login is not amy's business
    profile = re.search(r'href="(/apple/mail\.mobileconfig\?emailaddress=[^"]+)"', page).group(1)
    downloaded = client.get(profile.replace("&amp;", "&"))
    assert downloaded.status_code == 200 and b"amy@one.test" in downloaded.data


def test_a_user_changes_their_own_password_and_the_mail_server_takes_the_new_one_at_once(app, stack) -> None:
    with stack.installation.transaction() as session:
        domain = mailboxes.find_mailbox(session, "amy@one.test").domain
        make_mailbox(session, domain=domain, local_part="pat", quota=100 * KB)
    client = client_from(app, "10.2.0.53")
    log_in(client, "pat@one.test")

    def change(current: str, new: str, repeat: str | None = None) -> str:
        form = {
            "current_password": current,
            "new_password": new,
            "repeat_password": new if repeat is None else repeat,
        }
        return client.get(post(client, "/settings/password", form).headers["Location"]).get_data(as_text=True)

    assert "not right" in change("wrong guess", "a brand new secret")
    assert "differ" in change(PASSWORD, "a brand new secret", "a brand new secreT")
    assert "at least 8" in change(PASSWORD, "short")
    assert "do not use now" in change(PASSWORD, PASSWORD)
    assert "Password changed." in change(PASSWORD, "a brand new secret")
    # The session goes on with the new password, and IMAP takes it while refusing the old one.
    assert client.get("/").status_code == 200
    imap(stack, "pat@one.test", "a brand new secret").logout()
    with pytest.raises(imaplib.IMAP4.error):
        imap(stack, "pat@one.test", PASSWORD)
    with stack.installation.sessions() as session:
        stored = mailboxes.find_mailbox(session, "pat@one.test").password_hash
    assert stored.startswith("{") and "a brand new secret" not in stored


# --- writing: reply all, forward, attachments, drafts, identities --------------------------------


def fetch_raw(stack: ScratchStack, user: str, subject: str) -> EmailMessage:
    assert wait_for_subject(stack, user, PASSWORD, subject), f"{subject!r} never reached {user}"
    connection = imap(stack, user)
    try:
        connection.select("INBOX", readonly=True)
        _, found = connection.uid("SEARCH", "SUBJECT", f'"{subject}"')
        _, data = connection.uid("FETCH", found[0].split()[-1], "(BODY.PEEK[])")
    finally:
        connection.logout()
    return messages.parse(data[0][1])


def attachment_names(mail: EmailMessage) -> list[tuple[str, str]]:
    return [(part.get_filename(), part.get_content_type()) for part in mail.iter_attachments()]


def test_reply_all_leaves_out_the_user_and_forwarding_carries_the_attachments(app, stack) -> None:
    original = message("Offsite plans", body="The plan is attached.", sender="Bea <bea@two.test>")
    original.replace_header("To", "ann@one.test, Amy <amy@one.test>")
    original["Cc"] = "cal@one.test"
    original.add_attachment(b"%PDF-1.4 plan", maintype="application", subtype="pdf", filename="plan.pdf")
    uid = append(stack, "ann@one.test", original)
    client = client_from(app, "10.3.1.1")
    log_in(client, "ann@one.test")

    everyone = client.get(f"/compose?reply={uid}&folder=INBOX&all=1").get_data(as_text=True)
    assert 'id="to" name="to" value="bea@two.test"' in everyone
    assert 'id="cc" name="cc" value="amy@one.test, cal@one.test"' in everyone

    forward = client.get(f"/compose?forward={uid}&folder=INBOX").get_data(as_text=True)
    assert 'value="Fwd: Offsite plans"' in forward and "---------- Forwarded message ----------" in forward
    (kept,) = re.findall(r'name="keep_attachment" value="(\d+)" checked> plan\.pdf', forward)
    response = client.post("/compose", data={
        "csrf_token": csrf_from(forward), "action": "send", "to": "cal@one.test", "cc": "",
        "subject": "Fwd: Offsite plans", "body": "For you.", "source_kind": "forward",
        "source_folder": "INBOX", "source_uid": str(uid), "keep_attachment": kept,
        "attachments": (io.BytesIO(b"my own notes"), "notes.txt", "text/plain"),
    })  # fmt: skip
    assert response.status_code == 302
    received = fetch_raw(stack, "cal@one.test", "Fwd: Offsite plans")
    assert attachment_names(received) == [("plan.pdf", "application/pdf"), ("notes.txt", "text/plain")]
    assert [part.get_content() for part in received.iter_attachments()][0] == b"%PDF-1.4 plan"

    whole = client.get(f"/compose?forward={uid}&folder=INBOX&whole=1").get_data(as_text=True)
    assert "The original message goes with it as an attachment." in whole
    response = client.post("/compose", data={
        "csrf_token": csrf_from(whole), "action": "send", "to": "amy@one.test", "cc": "",
        "subject": "Whole offsite plans", "body": "Attached whole.", "source_kind": "forward-whole",
        "source_folder": "INBOX", "source_uid": str(uid),
    })  # fmt: skip
    assert response.status_code == 302
    received = fetch_raw(stack, "amy@one.test", "Whole offsite plans")
    assert attachment_names(received) == [("Offsite plans.eml", "message/rfc822")]
    (attached,) = received.iter_attachments()
    assert attached.get_content()["Subject"] == "Offsite plans"
    # Another user's message cannot be forwarded by naming its UID: the source is read in the
    # sender's own mailbox.
    bea_uid = append(stack, "bea@two.test", message("Bea only", body="private"))
    client.post("/compose", data={
        "csrf_token": csrf_from(whole), "action": "send", "to": "amy@one.test", "cc": "",
        "subject": "Stolen", "body": "x", "source_kind": "forward-whole", "source_folder": "INBOX",
        "source_uid": str(bea_uid + 1000),
    })  # fmt: skip
    assert "Stolen" not in subjects_in(stack, "ann@one.test", "Sent")


def test_a_draft_is_saved_with_its_attachment_resumed_and_gone_once_sent(app, stack) -> None:
    client = client_from(app, "10.3.1.2")
    log_in(client, "amy@one.test")
    saved = post(client, "/compose", {
        "action": "save", "to": "cal@one.te", "cc": "", "subject": "Half written",
        "body": "First thoughts.", "attachments": (io.BytesIO(b"draft data"), "data.csv", "text/csv"),
    })  # fmt: skip
    assert saved.status_code == 302 and "draft=" in saved.headers["Location"]
    assert "Half written" in subjects_in(stack, "amy@one.test", "Drafts")
    drafts_list = client.get("/folder?name=Drafts").get_data(as_text=True)
    assert "/compose?draft=" in drafts_list

    # Logged out and back in, the draft comes back as it was left.
    client.post("/logout", data={"csrf_token": csrf_from(drafts_list)})
    log_in(client, "amy@one.test")
    resumed = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert 'value="cal@one.te"' in resumed and "First thoughts." in resumed
    (kept,) = re.findall(r'name="keep_attachment" value="(\d+)" checked> data\.csv', resumed)
    source_uid = re.search(r'name="source_uid" value="(\d+)"', resumed).group(1)
    response = client.post("/compose", data={
        "csrf_token": csrf_from(resumed), "action": "send", "to": "cal@one.test", "cc": "",
        "subject": "Half written", "body": "First thoughts, finished.", "source_kind": "draft",
        "source_folder": "Drafts", "source_uid": source_uid, "keep_attachment": kept,
    })  # fmt: skip
    assert response.status_code == 302
    received = fetch_raw(stack, "cal@one.test", "Half written")
    assert attachment_names(received) == [("data.csv", "text/csv")]
    assert "Half written" not in subjects_in(stack, "amy@one.test", "Drafts")
    assert "Half written" in subjects_in(stack, "amy@one.test", "Sent")


def test_a_message_too_large_for_the_mail_server_is_refused_saying_how_large(app, stack, monkeypatch) -> None:
    monkeypatch.setattr(webmail_rules, "MAX_MESSAGE_BYTES", 40 * KB)
    client = client_from(app, "10.3.1.3")
    log_in(client, "amy@one.test")
    response = post(client, "/compose", {
        "action": "send", "to": "cal@one.test", "cc": "", "subject": "Too big", "body": "x",
        "attachments": (io.BytesIO(b"y" * 40 * KB), "big.bin", "application/octet-stream"),
    })  # fmt: skip
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "the mail server takes messages up to 40 KB" in page and "Attach your files again." in page
    assert "Too big" not in subjects_in(stack, "amy@one.test", "Sent")


def test_a_user_sends_as_an_alias_of_theirs_and_never_as_anyone_else(app, stack) -> None:
    with stack.installation.transaction() as session:
        domain = mailboxes.find_mailbox(session, "cal@one.test").domain
        make_alias(session, domain=domain, local_part="sales", destinations=["cal@one.test"])
    client = client_from(app, "10.3.1.4")
    log_in(client, "cal@one.test")
    page = client.get("/compose").get_data(as_text=True)
    assert '<option value="sales@one.test"' in page and '<option value="cal@one.test"' in page
    response = post(client, "/compose", {"action": "send", "sender": "sales@one.test", "to": "amy@one.test",
                                         "cc": "", "subject": "From sales", "body": "Offer."})  # fmt: skip
    assert response.status_code == 302
    assert fetch_raw(stack, "amy@one.test", "From sales")["From"] == "sales@one.test"
    refused = post(client, "/compose", {"action": "send", "sender": "bea@two.test", "to": "amy@one.test",
                                        "cc": "", "subject": "As Bea", "body": "x"})  # fmt: skip
    assert refused.status_code == 400 and "You may not send as that address." in refused.get_data(
        as_text=True
    )
    # The addresses the user wrote to are offered when writing again.
    assert '<option value="amy@one.test">' in client.get("/compose").get_data(as_text=True)


# --- vacation, forwarding and filters: the user's own Sieve script ----------------------------


def sink_with(stack: ScratchStack, text: str, timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [message for message in stack.sink.messages() if text in message]
        if found:
            return found
        time.sleep(0.2)
    return []


def in_folder(stack: ScratchStack, user: str, folder: str, subject: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(imaplib.IMAP4.error):
            if subject in subjects_in(stack, user, folder):
                return True
        time.sleep(0.2)
    return False


def own_sieve_scripts(stack: ScratchStack, user: str) -> dict[str, bool]:
    with SieveClient.open(stack.settings, user, PASSWORD) as client:
        return client.scripts()


def test_a_vacation_reply_with_dates_goes_once_per_sender_and_only_within_them(app, stack) -> None:
    with stack.installation.transaction() as session:
        make_mailbox(session, domain=mailboxes.find_mailbox(session, "ann@one.test").domain, local_part="val",
                     quota=100 * KB)  # fmt: skip
    client = client_from(app, "10.3.2.1")
    log_in(client, "val@one.test")
    today = dt.date.today()
    response = post(client, "/settings/vacation", {
        "enabled": "1", "start": str(today - dt.timedelta(days=1)), "end": str(today + dt.timedelta(days=3)),
        "subject": "Val is away", "text": "Back on Monday.",
    })  # fmt: skip
    assert "Vacation reply on." in client.get(response.headers["Location"]).get_data(as_text=True)
    assert own_sieve_scripts(stack, "val@one.test") == {"letterhead": True}
    send(stack, "writer@elsewhere.test", ["val@one.test"], subject="First question")
    send(stack, "writer@elsewhere.test", ["val@one.test"], subject="Second question")
    assert in_folder(stack, "val@one.test", "INBOX", "Second question")
    replies = sink_with(stack, "Subject: Val is away")
    assert len(replies) == 1 and "Back on Monday." in replies[0] and "writer@elsewhere.test" in replies[0]

    # A period that has not begun sends nothing yet.
    post(client, "/settings/vacation", {
        "enabled": "1", "start": str(today + dt.timedelta(days=10)), "end": str(today + dt.timedelta(days=12)),
        "subject": "Val will be away", "text": "Later.",
    })  # fmt: skip
    send(stack, "another@elsewhere.test", ["val@one.test"], subject="Third question")
    assert in_folder(stack, "val@one.test", "INBOX", "Third question")
    time.sleep(2)
    assert not [m for m in stack.sink.messages() if "Val will be away" in m]
    page = client.get("/settings/away").get_data(as_text=True)
    assert str(today + dt.timedelta(days=10)) in page
    refused = post(client, "/settings/vacation", {"enabled": "1", "start": "2026-05-02", "end": "2026-05-01",
                                                  "text": "x"})  # fmt: skip
    assert "The last day comes before the first." in client.get(refused.headers["Location"]).get_data(
        as_text=True
    )


def test_forwarding_keeps_a_copy_or_not_and_the_admins_see_it_in_the_audit_trail(app, stack) -> None:
    with stack.installation.transaction() as session:
        make_mailbox(session, domain=mailboxes.find_mailbox(session, "ann@one.test").domain, local_part="fwd",
                     quota=100 * KB)  # fmt: skip
    client = client_from(app, "10.3.2.2")
    log_in(client, "fwd@one.test")
    post(client, "/settings/forwarding", {"address": "me@home.example", "keep_copy": "1"})
    kept = send(stack, "someone@elsewhere.test", ["fwd@one.test"], subject="Kept and forwarded")
    assert in_folder(stack, "fwd@one.test", "INBOX", kept)
    assert sink_with(stack, kept)
    post(client, "/settings/forwarding", {"address": "me@home.example"})
    gone = send(stack, "someone@elsewhere.test", ["fwd@one.test"], subject="Only forwarded")
    assert sink_with(stack, gone)
    time.sleep(1)
    assert gone not in subjects_in(stack, "fwd@one.test", "INBOX")
    refused = post(client, "/settings/forwarding", {"address": "fwd@one.test"})
    assert "cannot be forwarded to the mailbox it is for" in client.get(refused.headers["Location"]).get_data(
        as_text=True
    )
    with stack.installation.sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "mailbox.rules.forwarding", AuditEntry.target == "fwd@one.test"
            )
        ).all()
    assert [entry.details["address"] for entry in entries] == ["me@home.example", "me@home.example"]


def test_a_filter_made_in_the_settings_files_mail_beside_the_admins_filter(app, stack) -> None:
    with stack.installation.transaction() as session:
        domain = mailboxes.find_mailbox(session, "ann@one.test").domain
        mailbox = make_mailbox(session, domain=domain, local_part="fil", quota=100 * KB)
        sieve.set_filter_for_mailbox(
            session, OPERATOR, stack.settings, mailbox, name="policy",
            script='require ["fileinto", "mailbox"];\nif header :contains "subject" "Policy" { fileinto :create "Policies"; }\n',
        )  # fmt: skip
    client = client_from(app, "10.3.2.3")
    log_in(client, "fil@one.test")
    added = post(client, "/settings/filters", {"field": "subject", "match": "contains", "value": "Invoice",
                                               "action": "fileinto", "argument": "Invoices"})  # fmt: skip
    page = client.get(added.headers["Location"]).get_data(as_text=True)
    assert "Filter added." in page and "If Subject contains Invoice: file into Invoices" in page
    refused = post(client, "/settings/filters", {"field": "size", "match": "contains", "value": "2M",
                                                 "action": "discard"})  # fmt: skip
    assert "A size is over or under" in client.get(refused.headers["Location"]).get_data(as_text=True)

    invoice = send(stack, "billing@elsewhere.test", ["fil@one.test"], subject="Invoice 42")
    policy = send(stack, "hr@elsewhere.test", ["fil@one.test"], subject="Policy update")
    assert in_folder(stack, "fil@one.test", "Invoices", invoice)
    assert in_folder(stack, "fil@one.test", "Policies", policy)
    # The user's own Sieve program sees the same script, and the admin's filter is not theirs.
    with SieveClient.open(stack.settings, "fil@one.test", PASSWORD) as sieve_client:
        assert sieve_client.scripts() == {"letterhead": True}
        assert 'fileinto :create "Invoices";' in sieve_client.read("letterhead")
        # A script of their own, made active by their program, is named in the settings.
        sieve_client.store("mine", "keep;\n")
        sieve_client.activate("mine")
    assert "Your own Sieve script “mine” runs now" in client.get("/settings/filters").get_data(as_text=True)

    post(client, "/settings/filters", {"remove": "0"})
    assert own_sieve_scripts(stack, "fil@one.test") == {"letterhead": True, "mine": False}
    later = send(stack, "billing@elsewhere.test", ["fil@one.test"], subject="Invoice 43")
    assert in_folder(stack, "fil@one.test", "INBOX", later)


def test_a_mailbox_of_another_tenant_cannot_log_in_on_a_brand_host(app, stack) -> None:
    with stack.installation.transaction() as session:
        bea = mailboxes.find_mailbox(session, "bea@two.test")
        brand = brands.create_brand(session, OPERATOR, stack.settings, tenant=bea.domain.tenant,
                                    hostname="mail.two.test", name="Two Mail")  # fmt: skip
        brands.set_domain_brand(session, OPERATOR, bea.domain, brand)
    host = {"Host": "mail.two.test"}
    outsider = client_from(app, "10.3.3.1")
    token = csrf_from(outsider.get("/login", headers=host).get_data(as_text=True))
    refused = outsider.post("/login", headers=host, data={"address": "ann@one.test", "password": PASSWORD,
                                                          "csrf_token": token})  # fmt: skip
    assert refused.status_code == 401 and "Wrong email address or password." in refused.get_data(as_text=True)
    assert outsider.get("/", headers=host).status_code == 302  # still logged out
    # Ann logs in on the platform's host as ever, and Bea on her own brand's.
    assert log_in(client_from(app, "10.3.3.2"), "ann@one.test").status_code == 302
    member = client_from(app, "10.3.3.3")
    token = csrf_from(member.get("/login", headers=host).get_data(as_text=True))
    assert member.post("/login", headers=host, data={"address": "bea@two.test", "password": PASSWORD,
                                                     "csrf_token": token}).status_code == 302  # fmt: skip
    [event] = auth_events(stack, account="ann@one.test", reason="not this brand's")
    assert event.client_ip == "10.3.3.1"
