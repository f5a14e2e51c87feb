"""What the real Postfix and Dovecot do for clients and for mail Letterhead sends itself: Sieve redirects
and vacation replies leave through the stack's own Postfix, the platform's postmaster receives mail,
VRFY tells nothing, a logged-in client sends neither as someone else nor with an empty sender, and no
password reaches a log file.
"""

from __future__ import annotations

import base64
import os
import re
import smtplib
import stat
import subprocess
import time
from collections.abc import Iterator

import pytest

from controlplane.daemons.process import wait_until
from controlplane.runners.scratch import ScratchStack
from controlplane.services import sieve
from controlplane.services.scope import OPERATOR
from tests.e2e.mailclient import DEFAULT_TIMEOUT, make_message, send, tls_context, wait_for_subject
from tests.factories import PASSWORD, make_domain, make_mailbox, make_tenant

KB = 1024
OPERATOR_MAILBOX = "ops@rules.test"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack() -> Iterator[ScratchStack]:
    """A stack whose operator reads ops@rules.test; mailboxes ann, bob (redirects) and val (vacation)."""
    stack = ScratchStack(min_mailbox_bytes=KB, extra_settings=f'postmaster_address = "{OPERATOR_MAILBOX}"')
    try:
        stack.start()
        with stack.installation.transaction() as session:
            tenant = make_tenant(session, name="Rules", pool=5000 * KB)
            domain = make_domain(session, tenant=tenant, name="rules.test", max_mailbox_bytes=1000 * KB)
            mailboxes = {
                local_part: make_mailbox(session, domain=domain, local_part=local_part, quota=1000 * KB)
                for local_part in ("ops", "ann", "bob", "val", "vic")
            }
            settings = stack.settings
            sieve.set_filter_for_mailbox(
                session, OPERATOR, settings, mailboxes["bob"], name="forward",
                script='redirect "ann@rules.test";\nredirect "someone@outside.example";\n',
            )  # fmt: skip
            sieve.set_filter_for_mailbox(
                session, OPERATOR, settings, mailboxes["val"], name="away",
                script='require "vacation";\nvacation :days 1 :subject "Away" "I am away this week.";\n',
            )  # fmt: skip
            # A reply that names someone else as its sender: Letterhead must not sign it as them.
            sieve.set_filter_for_mailbox(
                session, OPERATOR, settings, mailboxes["vic"], name="away",
                script='require "vacation";\nvacation :days 1 :from "ops@rules.test" :subject "Forged away" "x";\n',
            )  # fmt: skip
        yield stack
    finally:
        stack.stop()


def wait_for_sink(stack: ScratchStack, text: str, timeout: float = 15) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in stack.sink.messages():
            if text in message:
                return message
        time.sleep(0.2)
    return None


def test_a_sieve_redirect_is_delivered_inside_and_outside(stack: ScratchStack) -> None:
    subject = send(stack, "friend@outside.example", ["bob@rules.test"], subject="please forward this")
    assert wait_for_subject(stack, "ann@rules.test", PASSWORD, subject, timeout=15)
    assert wait_for_sink(stack, subject) is not None
    # Redirected, not kept: and not deferred (it was: 451 "Execution of Sieve filters was aborted").
    log = (stack.home / "log" / "postfix.log").read_text(errors="replace")
    assert "Execution of Sieve filters was aborted" not in log


def test_a_vacation_reply_goes_out_once_from_the_mailbox(stack: ScratchStack) -> None:
    first = send(stack, "writer@outside.example", ["val@rules.test"], subject="are you there")
    assert wait_for_subject(stack, "val@rules.test", PASSWORD, first)
    reply = wait_for_sink(stack, "Subject: Away")
    assert reply is not None and "I am away this week." in reply
    assert "writer@outside.example" in reply
    # Letterhead wrote it, as val: it leaves signed with rules.test's key, unscanned.
    headers = reply.split("\n\n", 1)[0]
    assert re.search(r"^DKIM-Signature:.*\bd=rules\.test;", headers, re.M | re.S), headers
    assert "X-Letterhead-Spam-Score" not in headers
    assert re.search(r"^X-Mail-Args: <val@rules\.test>", reply, re.M), reply[:300]
    send(stack, "writer@outside.example", ["val@rules.test"], subject="still there?")
    # Not a pause and a count: Sieve's own word that it sent no second reply.
    dovecot_log = stack.home / "log" / "dovecot.log"
    assert wait_until(
        lambda: (
            "discarded duplicate vacation response to <writer@outside.example>" in dovecot_log.read_text()
        ),
        timeout=15,
    ), dovecot_log.read_text()[-2000:]
    assert sum("Subject: Away" in message for message in stack.sink.messages()) == 1


def test_a_vacation_reply_naming_another_sender_leaves_unsigned(stack: ScratchStack) -> None:
    send(stack, "writer@outside.example", ["vic@rules.test"], subject="to vic")
    reply = wait_for_sink(stack, "Subject: Forged away")
    assert reply is not None
    assert "DKIM-Signature" not in reply.split("\n\n", 1)[0]


def test_a_redirect_of_a_forged_hosted_sender_leaves_unsigned(stack: ScratchStack) -> None:
    """Anyone may write a hosted domain's address on port 25; a redirect must not lend it the
    domain's DKIM key, even dressed as a vacation reply Dovecot would sign."""
    subject = send(stack, "ops@rules.test", ["bob@rules.test"], subject="forged and redirected")
    forwarded = wait_for_sink(stack, subject)
    assert forwarded is not None
    assert "DKIM-Signature" not in forwarded.split("\n\n", 1)[0]
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=DEFAULT_TIMEOUT) as client:
        client.ehlo("client.test")
        client.sendmail(
            "", ["bob@rules.test"],
            b"From: ops@rules.test\r\nTo: bob@rules.test\r\nAuto-Submitted: auto-replied\r\n"
            b"Subject: forged auto-reply\r\n\r\nSign me.\r\n",
        )  # fmt: skip
    forwarded = wait_for_sink(stack, "forged auto-reply")
    assert forwarded is not None
    headers = forwarded.split("\n\n", 1)[0]
    assert "X-Sieve-Redirected-From" in headers
    assert "DKIM-Signature" not in headers


def test_a_sieve_redirect_of_outside_mail_leaves_with_an_srs_sender(stack: ScratchStack) -> None:
    subject = send(stack, "friend@outside.example", ["bob@rules.test"], subject="redirect with srs")
    forwarded = wait_for_sink(stack, subject)
    assert forwarded is not None
    sender = re.search(r"^X-Mail-Args: <([^>]*)>", forwarded, re.M).group(1)
    assert re.fullmatch(
        rf"SRS0=[^=]+=[^=]+=outside\.example=friend@{re.escape(stack.settings.hostname)}", sender
    )


def test_postmaster_without_a_domain_reaches_the_operator(stack: ScratchStack) -> None:
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=DEFAULT_TIMEOUT) as client:
        client.ehlo("client.test")
        client.mail("someone@outside.example")
        code, _ = client.rcpt("<postmaster>")
        assert code == 250
        client.data(b"Subject: to the bare postmaster\r\n\r\nRFC 5321 4.5.1\r\n")
    assert wait_for_subject(stack, OPERATOR_MAILBOX, PASSWORD, "to the bare postmaster")


# tls-reports@ is read by Letterhead itself (tests/e2e/test_tls_reports.py).
@pytest.mark.parametrize("local_part", ["postmaster", "abuse"])
def test_the_platform_hosts_own_addresses_reach_the_operator(stack: ScratchStack, local_part: str) -> None:
    address = f"{local_part}@{stack.settings.hostname}"
    subject = send(stack, "reporter@outside.example", [address])
    assert wait_for_subject(stack, OPERATOR_MAILBOX, PASSWORD, subject)


def test_any_other_address_of_the_platform_host_is_refused(stack: ScratchStack) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(stack, "someone@outside.example", [f"nobody@{stack.settings.hostname}"])
    [(code, _)] = refused.value.recipients.values()
    assert code == 550


def test_vrfy_says_nothing_about_which_addresses_exist(stack: ScratchStack) -> None:
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=DEFAULT_TIMEOUT) as client:
        client.ehlo("client.test")
        answers = {address: client.verify(address) for address in ("ann@rules.test", "nobody@rules.test")}
    assert answers["ann@rules.test"] == answers["nobody@rules.test"]
    assert answers["ann@rules.test"][0] == 502


def test_a_logged_in_client_cannot_send_with_an_empty_sender(stack: ScratchStack) -> None:
    with smtplib.SMTP("127.0.0.1", stack.ports["submission"], timeout=DEFAULT_TIMEOUT) as client:
        client.starttls(context=tls_context(stack))
        client.login("ann@rules.test", PASSWORD)
        client.ehlo_or_helo_if_needed()
        client.mail("<>")
        code, message = client.rcpt("someone@outside.example")
    assert code == 554 and b"empty sender" in message


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_a_password_sent_with_auth_on_port_25_reaches_no_log_file(
    stack: ScratchStack, mechanism: str
) -> None:
    secret = f"port-25-{mechanism.lower()}-secret"
    encoded = base64.b64encode(f"\0ann@rules.test\0{secret}".encode()).decode()
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=DEFAULT_TIMEOUT) as client:
        client.ehlo("client.test")
        client.docmd("AUTH", f"{mechanism} {encoded}")
        client.docmd(base64.b64encode(secret.encode()).decode())  # as if answering a challenge
        client.docmd("NOOP")
    log_dir = stack.home / "log"
    # The dialogue is logged (so this test would see the lines), and the password is not.
    assert wait_until(
        lambda: f"AUTH {mechanism} [redacted]" in (log_dir / "postfix.log").read_text(), timeout=10
    )
    for path in log_dir.iterdir():
        if path.is_file():
            content = path.read_text(errors="replace")
            assert encoded not in content and secret not in content, path
            assert base64.b64encode(secret.encode()).decode() not in content, path


def test_the_logs_are_readable_by_root_only(stack: ScratchStack) -> None:
    secret = "port-25-secret-password"
    credentials = base64.b64encode(f"\0ann@rules.test\0{secret}".encode()).decode()
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=DEFAULT_TIMEOUT) as client:
        client.ehlo("client.test")
        client.docmd("AUTH", f"PLAIN {credentials}")
    log_dir = stack.home / "log"
    # Port 25's dialogue trace writes what such a client sends: nobody but root may read the
    # logs at all (the folder is closed to others), and the follower redacts it before storing.
    assert not stat.S_IMODE(os.stat(log_dir).st_mode) & 0o007
    for name in ("postfix.log", "dovecot.log", "web.log", "nginx-access.log"):
        reading = subprocess.run(
            ["runuser", "-u", "nobody", "--", "cat", str(log_dir / name)], capture_output=True, text=True
        )
        assert reading.returncode != 0 and "Permission denied" in reading.stderr, name


def submit(stack: ScratchStack, login: str, header_from: str, envelope_from: str | None = None) -> str:
    message = make_message(header_from, ["someone@outside.example"])
    with smtplib.SMTP("127.0.0.1", stack.ports["submission"], timeout=DEFAULT_TIMEOUT) as client:
        client.starttls(context=tls_context(stack))
        client.login(login, PASSWORD)
        client.send_message(message, from_addr=envelope_from or login, to_addrs=["someone@outside.example"])
    return str(message["Subject"])


def test_a_logged_in_user_sends_with_their_own_from(stack: ScratchStack) -> None:
    subject = submit(stack, "ann@rules.test", "Ann <ann@rules.test>")
    assert wait_for_sink(stack, subject) is not None


@pytest.mark.parametrize(
    "header_from", ["Bob <bob@rules.test>", "ceo@bank.example", "ann@rules.test, bob@rules.test"]
)
def test_a_from_header_the_login_does_not_own_is_refused(stack: ScratchStack, header_from: str) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        submit(stack, "ann@rules.test", header_from)
    assert refused.value.smtp_code == 550
    assert b"From: header" in refused.value.smtp_error
