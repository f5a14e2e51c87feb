"""A mailbox made through the API receives mail, and a Sieve filter set through the API files
it at delivery, as Dovecot's LMTP runs it."""

from __future__ import annotations

import contextlib
import imaplib
import time

import pytest

from controlplane import create_app
from controlplane.render import ADMIN_SIEVE_SCRIPT
from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mailboxes, tenants, tokens
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import send, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "api made password"
INVOICES = 'require ["fileinto","mailbox"];\nif header :contains "subject" "invoice" { fileinto :create "Invoices"; }\n'


@pytest.fixture(scope="module")
def api(mail_stack: ScratchStack):
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="API Reseller", storage_pool_bytes=1000 * KB)
        domains.create_domain(
            session, OPERATOR, tenant=tenant, name="api.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        _, secret = tokens.create_token(session, OPERATOR, tenant=tenant, kind="tenant", name="e2e")
    app = create_app({"LETTERHEAD_SETTINGS": mail_stack.settings, "TESTING": True})
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    yield mail_stack, client
    app.extensions["letterhead"].dispose()


def folder_subjects(stack: ScratchStack, user: str, folder: str) -> list[str]:
    client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=10)
    try:
        client.login(user, PASSWORD)
        status, _ = client.select(f'"{folder}"', readonly=True)
        if status != "OK":
            return []
        _, data = client.search(None, "ALL")
        subjects = []
        for number in data[0].split():
            _, fetched = client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            subjects.append(fetched[0][1].decode().strip().removeprefix("Subject:").strip())
        return subjects
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def wait_in_folder(stack: ScratchStack, user: str, folder: str, subject: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subject in folder_subjects(stack, user, folder):
            return True
        time.sleep(0.1)
    return False


def test_a_mailbox_created_through_the_api_receives_mail_over_smtp(api) -> None:
    stack, client = api
    response = client.post("/api/v1/domains/api.test/mailboxes",
                           json={"local_part": "pia", "quota_bytes": 100 * KB, "password": PASSWORD})  # fmt: skip
    assert response.status_code == 201, response.json
    subject = send(stack, "someone@elsewhere.test", ["pia@api.test"])
    assert wait_for_subject(stack, "pia@api.test", PASSWORD, subject)


def test_a_filter_set_through_the_api_files_matching_mail_into_its_folder(api) -> None:
    stack, client = api
    response = client.post("/api/v1/domains/api.test/mailboxes",
                           json={"local_part": "ivo", "quota_bytes": 100 * KB, "password": PASSWORD})  # fmt: skip
    assert response.status_code == 201, response.json
    response = client.post("/api/v1/filters/apply",
                           json={"name": "invoices", "script": INVOICES, "addresses": ["ivo@api.test"]})  # fmt: skip
    assert response.status_code == 200 and response.json["applied"] == 1, response.json
    with stack.installation.sessions() as session:
        home = stack.settings.mail_root / mailboxes.find_mailbox(session, "ivo@api.test").storage_key
    invoice = send(stack, "billing@elsewhere.test", ["ivo@api.test"], subject="Your invoice 2024-117")
    other = send(stack, "friend@elsewhere.test", ["ivo@api.test"], subject="Lunch on Friday?")
    assert wait_in_folder(stack, "ivo@api.test", "Invoices", invoice)
    assert wait_in_folder(stack, "ivo@api.test", "INBOX", other)
    assert folder_subjects(stack, "ivo@api.test", "INBOX") == [other]
    assert folder_subjects(stack, "ivo@api.test", "Invoices") == [invoice]
    # Dovecot compiled it once, at the first delivery, beside it.
    assert (home / ADMIN_SIEVE_SCRIPT.replace(".sieve", ".svbin")).exists()
    log = (stack.settings.log_dir / "dovecot.log").read_text(errors="replace")
    problems = [
        line for line in log.splitlines()
        if "ivo@api.test" in line and "sieve" in line.lower() and ("error" in line.lower() or "warning" in line.lower())
    ]  # fmt: skip
    assert problems == []

    assert client.delete("/api/v1/domains/api.test/mailboxes/ivo/filter").status_code == 204
    later = send(stack, "billing@elsewhere.test", ["ivo@api.test"], subject="Another invoice")
    assert wait_in_folder(stack, "ivo@api.test", "INBOX", later)
    assert folder_subjects(stack, "ivo@api.test", "Invoices") == [invoice]
