"""A mailbox made in the admin panel receives mail, and its storage set there is what Dovecot enforces."""

from __future__ import annotations

import imaplib
import smtplib

import pytest

from controlplane import create_app
from controlplane.runners.scratch import ScratchStack
from controlplane.services import admins, domains, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import send, wait_for_subject
from tests.web.test_admin_panel import log_in, post

KB = 1024
PASSWORD = "panel made password"


@pytest.fixture(scope="module")
def panel(mail_stack: ScratchStack):
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Panel Reseller", storage_pool_bytes=1000 * KB)
        admins.create_admin(session, OPERATOR, tenant=tenant, login="panel-boss", password=PASSWORD)
        domains.create_domain(
            session, OPERATOR, tenant=tenant, name="panel.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
    app = create_app({"LETTERHEAD_SETTINGS": mail_stack.settings, "TESTING": True})
    client = app.test_client()
    assert log_in(client, "panel-boss", PASSWORD).status_code == 302
    yield mail_stack, client
    app.extensions["letterhead"].dispose()


def _quota_limit_kb(stack: ScratchStack, user: str) -> int:
    client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"])
    try:
        client.login(user, PASSWORD)
        _, data = client.getquotaroot("INBOX")
    finally:
        client.logout()
    quota_line = next(line for line in data[1] if line and b"STORAGE" in line)
    return int(quota_line.split(b"STORAGE")[1].split()[1].rstrip(b")"))


def test_a_mailbox_created_in_the_panel_receives_mail_and_its_storage_is_enforced(panel) -> None:
    stack, client = panel
    response = post(client, "/admin/domains/panel.test/mailboxes",
                    {"local_part": "pat", "quota": "200KB", "password": PASSWORD})  # fmt: skip
    assert response.status_code == 302
    subject = send(stack, "someone@elsewhere.test", ["pat@panel.test"], size=20 * KB)
    assert wait_for_subject(stack, "pat@panel.test", PASSWORD, subject)
    assert _quota_limit_kb(stack, "pat@panel.test") == 200

    from controlplane.services import mailboxes

    with stack.installation.sessions() as session:
        mailbox_id = mailboxes.find_mailbox(session, "pat@panel.test").id
    post(client, f"/admin/mailboxes/{mailbox_id}/quota", {"quota": "10KB"})
    # The next lookup sees the new size: IMAP reports it, and a new message is refused at RCPT.
    assert _quota_limit_kb(stack, "pat@panel.test") == 10
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=10) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("someone@elsewhere.test")
        code, message = smtp.rcpt("pat@panel.test")
    assert code == 552 and b"full" in message
