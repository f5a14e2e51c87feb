"""Outbound limits end to end, through submission as a mail client sends: too many recipients in
one message, and the hourly limits of a mailbox and of its whole tenant, refused at RCPT with
temporary errors, and said in words in the log."""

from __future__ import annotations

import json
import smtplib

import pytest
from click.testing import CliRunner

from controlplane import cli
from controlplane.runners.scratch import ScratchStack
from controlplane.services import domains, mail_logs, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import DEFAULT_TIMEOUT, make_message, tls_context, until_found

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Limited", storage_pool_bytes=2000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="limited.test", max_mailboxes=5, max_aliases=5,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        for local_part in ("ann", "ben", "cat"):
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=domain,
                local_part=local_part,
                password=PASSWORD,
                quota_bytes=100 * KB,
            )
    result = CliRunner().invoke(
        cli.main,
        ["tenant", "limits", "Limited", "--mailbox-hourly-messages", "2", "--tenant-hourly-messages", "3",
         "--max-recipients", "3", "--json"],
        env={"LETTERHEAD_HOME": str(mail_stack.home)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["max_recipients_per_message"] == 3
    return mail_stack


def submit(stack: ScratchStack, login: str, recipients: list[str]) -> dict:
    """Send one message through submission (STARTTLS, logged in); the recipients refused."""
    message = make_message(login, recipients)
    with smtplib.SMTP("127.0.0.1", stack.ports["submission"], timeout=DEFAULT_TIMEOUT) as client:
        client.starttls(context=tls_context(stack))
        client.login(login, PASSWORD)
        return client.send_message(message, from_addr=login, to_addrs=recipients)


def test_a_recipient_beyond_the_limit_per_message_is_told_to_come_back(world: ScratchStack) -> None:
    recipients = [f"r{n}@outside.test" for n in range(1, 5)]
    refused = submit(world, "cat@limited.test", recipients)
    # The first three are accepted and the message goes to them; the fourth waits for another.
    assert list(refused) == ["r4@outside.test"]
    code, text = refused["r4@outside.test"]
    assert code == 452 and text.startswith(b"4.5.3") and b"at most 3 per message" in text


def test_the_message_after_the_hourly_limit_is_refused_at_rcpt_with_a_4xx_that_says_why(
    world: ScratchStack,
) -> None:
    assert submit(world, "ann@limited.test", ["one@outside.test"]) == {}
    assert submit(world, "ann@limited.test", ["two@outside.test"]) == {}
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        submit(world, "ann@limited.test", ["three@outside.test"])
    code, text = refused.value.recipients["three@outside.test"]
    assert code == 450 and text.startswith(b"4.7.1")
    assert b"this mailbox may send 2 messages an hour" in text

    def logged(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "three@outside.test")
        return found[0].recipients[0] if found else None

    recipient = until_found(world, logged)
    assert recipient is not None, "the refusal never reached the log"
    assert (recipient.outcome, recipient.status_code) == ("refused", "450 4.7.1")
    assert (
        recipient.reason == "the sender's hourly sending limit was reached (temporary: the sender will retry)"
    )


def test_the_tenant_limit_holds_across_its_mailboxes(world: ScratchStack) -> None:
    # ann sent two messages and cat one: the tenant's three an hour are used up, ben has sent none.
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        submit(world, "ben@limited.test", ["four@outside.test"])
    code, text = refused.value.recipients["four@outside.test"]
    assert code == 450 and b"for all mailboxes of this provider (3 messages an hour)" in text
