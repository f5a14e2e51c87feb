"""End to end: the real stack's Postfix and Dovecot logs, ingested and searched."""

from __future__ import annotations

import smtplib
import time

import pytest

from controlplane.daemons.scratch import ScratchStack
from controlplane.services import domains, mail_logs, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import imap_subjects, send, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Logs", storage_pool_bytes=1000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="logs.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=200 * KB,
        )  # fmt: skip
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part="reader", password=PASSWORD, quota_bytes=100 * KB
        )
    return mail_stack


def _ingest_until(stack: ScratchStack, name: str, found, timeout: float = 15.0):
    """The follower started by `letterhead up` reads the logs as Postfix (through postlogd, a
    moment after the SMTP reply) and Dovecot write them: poll the database for the records."""
    deadline = time.monotonic() + timeout
    while True:
        with stack.installation.sessions() as session:
            result = found(session)
            if result or time.monotonic() > deadline:
                return result
        time.sleep(0.3)


def test_a_delivery_and_a_refusal_are_found_in_the_ingested_postfix_log(world: ScratchStack) -> None:
    subject = send(world, "sender@elsewhere.test", ["reader@logs.test"])
    wait_for_subject(world, "reader@logs.test", PASSWORD, subject)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(world, "sender@elsewhere.test", ["nobody@logs.test"])

    def both(session):
        delivered, _ = mail_logs.search_transactions(session, OPERATOR, "reader@logs.test")
        refused, _ = mail_logs.search_transactions(session, OPERATOR, "nobody@logs.test")
        outcomes = [(r.outcome, r.reason) for view in delivered + refused for r in view.recipients]
        return outcomes if len(outcomes) >= 2 else None

    outcomes = _ingest_until(world, "postfix.log", both)
    assert outcomes is not None, "the stack's postfix.log never showed both transactions"
    assert ("delivered", "") in outcomes
    assert ("refused", "recipient not found") in outcomes


def test_an_imap_login_is_found_in_the_ingested_dovecot_log(world: ScratchStack) -> None:
    imap_subjects(world, "reader@logs.test", PASSWORD)

    def login(session):
        events, _ = mail_logs.search_logins(session, OPERATOR, "reader@logs.test")
        return [(e.service, e.success) for e in events if e.service == "imap"]

    assert ("imap", True) in (_ingest_until(world, "dovecot.log", login) or [])
