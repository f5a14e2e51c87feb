"""rspamd as Postfix's milter, end to end: refusals at the end of DATA, the headers delivered mail
carries, and what happens to mail while rspamd is down."""

from __future__ import annotations

import email
import email.policy
import imaplib
import json
import smtplib
import time

import pytest
from click.testing import CliRunner

from controlplane import cli
from controlplane.daemons import rspamd
from controlplane.daemons.scratch import ScratchStack
from controlplane.render import SPAM_SCORE_HEADER
from controlplane.services import domains, mail_logs, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import DEFAULT_TIMEOUT, make_message, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Spam", storage_pool_bytes=2000 * KB)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="filtered.test", max_mailboxes=10, max_aliases=10,
            max_mailbox_bytes=500 * KB,
        )  # fmt: skip
        for local_part in ("alice", "bob"):
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=domain,
                local_part=local_part,
                password=PASSWORD,
                quota_bytes=200 * KB,
            )
    return mail_stack


def smtp_send(stack: ScratchStack, message: email.message.EmailMessage, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=DEFAULT_TIMEOUT) as client:
        client.ehlo("client.test")
        client.send_message(message, from_addr=str(message["From"]), to_addrs=recipients)


def fetch_headers(stack: ScratchStack, user: str, subject: str) -> email.message.Message:
    client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=DEFAULT_TIMEOUT)
    try:
        client.login(user, PASSWORD)
        client.select("INBOX", readonly=True)
        _, found = client.search(None, "SUBJECT", f'"{subject}"')
        (number,) = found[0].split()
        _, fetched = client.fetch(number, "(BODY.PEEK[HEADER])")
        return email.message_from_bytes(fetched[0][1], policy=email.policy.default)
    finally:
        client.logout()


def _until(stack: ScratchStack, found, timeout: float = 20.0):
    """Poll the database (the log follower writes it) until `found` returns something."""
    deadline = time.monotonic() + timeout
    while True:
        with stack.installation.sessions() as session:
            result = found(session)
            if result or time.monotonic() > deadline:
                return result
        time.sleep(0.3)


def test_gtube_is_refused_at_the_end_of_data_and_logged_as_rejected_as_spam(world: ScratchStack) -> None:
    message = make_message("gtube-sender@outside.test", ["alice@filtered.test"], subject="gtube")
    message.set_content(f"{GTUBE}\n")
    with pytest.raises(smtplib.SMTPDataError) as refused:
        smtp_send(world, message, ["alice@filtered.test"])
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error.startswith(b"5.7.1")

    def logged(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "gtube-sender@outside.test")
        if (
            found
            and found[0].transaction.spam_action
            and any(line.text.startswith("221") for line in found[0].transaction.dialogue)
        ):
            return found[0], [(line.direction, line.text) for line in found[0].transaction.dialogue]
        return None

    found = _until(world, logged)
    assert found is not None, "the refusal and rspamd's verdict never reached the database"
    view, dialogue = found
    assert view.spam_verdict == "rejected as spam (the GTUBE test pattern)"
    [recipient] = view.recipients
    assert (recipient.recipient, recipient.outcome, recipient.reason) == (
        "alice@filtered.test", "refused", "rejected as spam (the GTUBE test pattern)",
    )  # fmt: skip
    # The dialogue shows the refusal where the client got it: in answer to the message's end.
    assert (">", "554 5.7.1 Gtube pattern") in dialogue
    shown = CliRunner().invoke(
        cli.main,
        ["logs", "search", "gtube-sender@outside.test", "--json"],
        env={"LETTERHEAD_HOME": str(world.home)},
    )
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.output)["transactions"]
    assert row["spam_verdict"] == "rejected as spam (the GTUBE test pattern)"


def test_delivered_mail_carries_the_score_and_authentication_results(world: ScratchStack) -> None:
    message = make_message("sender@outside.test", ["alice@filtered.test"])
    # A sender's own score header must never decide where the message is filed.
    message[SPAM_SCORE_HEADER] = "0"
    message["Authentication-Results"] = "filtered.test; dkim=pass"
    smtp_send(world, message, ["alice@filtered.test"])
    subject = str(message["Subject"])
    assert wait_for_subject(world, "alice@filtered.test", PASSWORD, subject)
    headers = fetch_headers(world, "alice@filtered.test", subject)
    scores = headers.get_all(SPAM_SCORE_HEADER)
    assert scores is not None and len(scores) == 1 and scores[0].isdigit()
    results = headers.get_all("Authentication-Results")
    assert results is not None and len(results) == 1
    # rspamd's own, naming this server: the client's was removed.
    assert results[0].startswith(world.settings.hostname + ";")


def test_while_rspamd_is_down_mail_is_deferred_never_lost(world: ScratchStack) -> None:
    settings = world.settings
    rspamd.stop(settings)
    try:
        message = make_message("sender@outside.test", ["bob@filtered.test"])
        with pytest.raises(smtplib.SMTPResponseException) as deferred:
            smtp_send(world, message, ["bob@filtered.test"])
        # A temporary error: the sending server keeps the message and retries.
        assert 400 <= deferred.value.smtp_code < 500, deferred.value
    finally:
        rspamd.start(settings, settings.live_config / "rspamd")
    smtp_send(world, message, ["bob@filtered.test"])
    assert wait_for_subject(world, "bob@filtered.test", PASSWORD, str(message["Subject"]))
