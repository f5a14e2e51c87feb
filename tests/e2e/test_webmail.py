"""The webmail as deployed: the app under gunicorn (two workers) beside the real Dovecot and Postfix.

A real HTTP client with a cookie jar logs in, reads, and sends to a mailbox here and to an outside
address (captured by the stack's outbound smtp-sink); then Dovecot is stopped for real and the
webmail answers "mail is unavailable" until it is back.
"""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from controlplane.daemons import dovecot
from controlplane.daemons.process import wait_until
from controlplane.models import AuthEvent
from controlplane.runners.scratch import ScratchStack
from tests.e2e.mailclient import send, wait_for_subject
from tests.factories import PASSWORD, make_domain, make_mailbox, make_tenant

KB = 1024

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deployed() -> Iterator[ScratchStack]:
    stack = ScratchStack(min_mailbox_bytes=KB)
    try:
        stack.start(web=True)
        with stack.installation.transaction() as session:
            tenant = make_tenant(session, name="Deployed", pool=5000 * KB)
            domain = make_domain(session, tenant=tenant, name="deployed.test", max_mailbox_bytes=1000 * KB)
            for local_part in ("fay", "gus"):
                make_mailbox(session, domain=domain, local_part=local_part, quota=1000 * KB)
        yield stack
    finally:
        stack.stop()


@dataclass
class Answer:
    status: int
    url: str
    text: str


class Browser:
    """urllib with a cookie jar: follows redirects, keeps the session, reads CSRF tokens."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> Answer:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict[str, str], *, token_from: str) -> Answer:
        token = re.search(r'name="csrf_token" value="([^"]+)"', self.get(token_from).text).group(1)
        data = urllib.parse.urlencode({**fields, "csrf_token": token}).encode()
        return self._open(urllib.request.Request(self.base + path, data=data))

    def _open(self, request: urllib.request.Request) -> Answer:
        try:
            with self.opener.open(request, timeout=20) as response:
                return Answer(response.status, response.url, response.read().decode())
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.url, error.read().decode())


def base_url(stack: ScratchStack) -> str:
    return f"http://127.0.0.1:{stack.ports['web']}"


def test_a_user_reads_and_sends_through_the_deployed_webmail(deployed: ScratchStack) -> None:
    subject = send(deployed, "gus@deployed.test", ["fay@deployed.test"], subject="Minutes of the meeting",
                   port="submission", login=("gus@deployed.test", PASSWORD))  # fmt: skip
    assert wait_for_subject(deployed, "fay@deployed.test", PASSWORD, subject)

    browser = Browser(base_url(deployed))
    assert "/login" in browser.get("/").url
    inbox = browser.post(
        "/login", {"address": "fay@deployed.test", "password": PASSWORD}, token_from="/login"
    )
    assert inbox.status == 200 and "Minutes of the meeting" in inbox.text
    # Two gunicorn workers answer in turn: the sealed session works in each.
    assert all(browser.get("/").status == 200 for _ in range(8))

    uid = re.search(r'/message/(\d+)\?folder=INBOX">Minutes of the meeting', inbox.text).group(1)
    read = browser.get(f"/message/{uid}?folder=INBOX")
    assert "Hello from the Letterhead tests." in read.text

    for recipient, subject in (
        ("gus@deployed.test", "Thanks, Gus"),
        ("partner@elsewhere.test", "Outside hello"),
    ):
        sent = browser.post(
            "/compose", {"to": recipient, "cc": "", "subject": subject, "body": "Sent from the webmail."},
            token_from="/compose",
        )  # fmt: skip
        assert sent.status == 200 and "Message sent." in sent.text
    assert wait_for_subject(deployed, "gus@deployed.test", PASSWORD, "Thanks, Gus")
    assert wait_until(lambda: any("Outside hello" in m for m in deployed.sink.messages()), timeout=15)
    outside = next(m for m in deployed.sink.messages() if "Outside hello" in m)
    assert "From: fay@deployed.test" in outside

    with deployed.installation.sessions() as session:
        logins = session.scalars(
            select(AuthEvent).where(AuthEvent.service == "webmail", AuthEvent.account == "fay@deployed.test")
        ).all()
    assert [(event.success, event.client_ip) for event in logins] == [(True, "127.0.0.1")]


def test_the_webmail_says_mail_is_unavailable_while_dovecot_is_down(deployed: ScratchStack) -> None:
    browser = Browser(base_url(deployed))
    inbox = browser.post(
        "/login", {"address": "gus@deployed.test", "password": PASSWORD}, token_from="/login"
    )
    assert inbox.status == 200
    config = deployed.settings.live_config / "dovecot" / "dovecot.conf"
    run_dir = deployed.settings.run_dir / "dovecot"
    dovecot.stop(config)
    assert wait_until(lambda: dovecot.master_pid(run_dir) is None, timeout=10)
    try:
        down = browser.get("/")
        assert down.status == 503 and "Mail is unavailable" in down.text and "Traceback" not in down.text
        stranger = Browser(base_url(deployed))
        refused = stranger.post(
            "/login", {"address": "fay@deployed.test", "password": PASSWORD}, token_from="/login"
        )
        assert refused.status == 503 and "Mail is unavailable" in refused.text
    finally:
        dovecot.start(config)
        dovecot.wait_ready(config)
    deadline = time.monotonic() + 10
    while browser.get("/").status != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert browser.get("/").status == 200
