"""A domain admin's alerts on the real stack: refusals at port 25 are read from Postfix's log by
the follower, the periodic runner's alert job finds more than asked for within the hour, and the
alert arrives through Postfix in the admin's mailbox, read over IMAPS."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from controlplane.runners import periodic
from controlplane.runners.scratch import ScratchStack
from controlplane.services import domain_alerts, domains, mail_logs, mailboxes, scope, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import imap_subjects, until_found, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "alerts password 1"
DOMAIN = "alerted.test"
SUBJECT = f"3 messages to or from {DOMAIN} bounced or were refused in the last hour"


@pytest.fixture(scope="module")
def stack() -> Iterator[ScratchStack]:
    scratch = ScratchStack(min_mailbox_bytes=KB)
    try:
        scratch.start()
        with scratch.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Alerted", storage_pool_bytes=1000 * KB)
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name=DOMAIN, max_mailboxes=5, max_aliases=5
            )
            mailboxes.create_mailbox(session, OPERATOR, domain=domain, local_part="admin", quota_bytes=100 * KB,
                                     password=PASSWORD, is_domain_admin=True)  # fmt: skip
            domain_alerts.set_alerts(
                session, scope.domain_admin(tenant.id, domain.id, name=f"admin@{DOMAIN}"), domain,
                recipient=f"admin@{DOMAIN}", bounce_threshold=2, storage_warning=False,
            )  # fmt: skip
        yield scratch
    finally:
        scratch.stop()


def test_more_refusals_than_asked_for_are_mailed_to_the_domain_admin(stack: ScratchStack) -> None:
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=30) as client:
        client.ehlo("mta.sender.test")
        client.mail("someone@sender.test")
        for guess in ("nobody", "ghost", "phantom"):
            code, _ = client.rcpt(f"{guess}@{DOMAIN}")
            assert code == 550
    refused = until_found(
        stack,
        lambda session: (lambda views: len(views) >= 3 and views)(
            mail_logs.search_transactions(session, OPERATOR, "someone@sender.test", result="refused")[0]
        ),
    )
    assert refused, "the follower did not read the refusals"

    periodic.send_alerts_job(stack.installation)  # what the periodic runner does every 5 minutes
    assert wait_for_subject(stack, f"admin@{DOMAIN}", PASSWORD, SUBJECT, timeout=30)
    # Told once an hour: the next run sends nothing new.
    periodic.send_alerts_job(stack.installation)
    assert imap_subjects(stack, f"admin@{DOMAIN}", PASSWORD).count(SUBJECT) == 1
