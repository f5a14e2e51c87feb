"""End to end against a private Postfix and Dovecot on free loopback ports.

One stack per module; each test makes the mailboxes it needs through the services,
commits, and speaks SMTP, IMAP and POP3 to the daemons like a real client.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import imaplib
import json
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from controlplane.certs.selfsigned import ensure_default_certificate
from controlplane.daemons import apply
from controlplane.models import ConfigGeneration
from controlplane.render import RenderState, TlsIdentity
from controlplane.runners.scratch import ScratchStack
from controlplane.services import aliases, configuration, domains, mail_logs, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from controlplane.settings import TEMPLATE_ROOT
from tests.e2e.mailclient import (
    imap_subjects,
    make_message,
    pop3_subjects,
    send,
    tls_context,
    until_found,
    wait_for_subject,
)

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def world(mail_stack: ScratchStack) -> ScratchStack:
    with mail_stack.installation.transaction() as session:
        acme = tenants.create_tenant(session, OPERATOR, name="Acme", storage_pool_bytes=2000 * KB)
        a_test = domains.create_domain(
            session,
            OPERATOR,
            tenant=acme,
            name="a.test",
            max_mailboxes=50,
            max_aliases=50,
            max_mailbox_bytes=500 * KB,
        )
        for local_part in ("alice", "bob", "carol", "dave", "erin"):
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=a_test,
                local_part=local_part,
                password=PASSWORD,
                quota_bytes=100 * KB,
            )
        aliases.create_alias(
            session,
            OPERATOR,
            domain=a_test,
            local_part="team",
            destinations=["alice@a.test", "bob@a.test", "carol@a.test"],
        )
        aliases.create_alias(
            session, OPERATOR, domain=a_test, local_part="outside", destinations=["someone@elsewhere.test"]
        )
    return mail_stack


def make_mailbox(stack: ScratchStack, address: str, quota: int = 100 * KB) -> None:
    local_part, domain_name = address.split("@")
    with stack.installation.transaction() as session:
        domain = domains.get_domain(session, OPERATOR, domain_name)
        mailboxes.create_mailbox(
            session, OPERATOR, domain=domain, local_part=local_part, password=PASSWORD, quota_bytes=quota
        )


def rcpt_reply(stack: ScratchStack, recipient: str, port: str = "smtp") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", stack.ports[port], timeout=10) as client:
        client.ehlo("client.test")
        client.mail("sender@elsewhere.test")
        return client.rcpt(recipient)


def queue_is_empty(stack: ScratchStack) -> bool:
    listing = subprocess.run(
        ["/usr/sbin/postqueue", "-c", str(stack.settings.live_config / "postfix"), "-j"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return listing.strip() == ""


# --- delivery and reading ------------------------------------------------------------------------


def test_mail_to_a_mailbox_is_read_over_imap_imaps_pop3_and_pop3s(world: ScratchStack) -> None:
    subject = send(world, "sender@elsewhere.test", ["alice@a.test"])
    assert wait_for_subject(world, "alice@a.test", PASSWORD, subject)
    assert subject in imap_subjects(world, "alice@a.test", PASSWORD, secure=True)
    assert subject in pop3_subjects(world, "alice@a.test", PASSWORD)
    assert subject in pop3_subjects(world, "alice@a.test", PASSWORD, secure=True)


def test_mail_to_an_alias_reaches_each_of_its_destinations(world: ScratchStack) -> None:
    subject = send(world, "sender@elsewhere.test", ["team@a.test"])
    for user in ("alice@a.test", "bob@a.test", "carol@a.test"):
        assert wait_for_subject(world, user, PASSWORD, subject), user
    assert subject not in imap_subjects(world, "dave@a.test", PASSWORD)


def test_alias_to_an_external_address_goes_to_the_outbound_relay(world: ScratchStack) -> None:
    subject = send(world, "sender@elsewhere.test", ["outside@a.test"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(subject in m for m in world.sink.messages()):
        time.sleep(0.1)
    assert any(subject in m for m in world.sink.messages())


def _sink_message(stack: ScratchStack, subject: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in stack.sink.messages():
            if subject in message:
                return message
        time.sleep(0.1)
    raise AssertionError(f"{subject!r} never reached the outbound relay")


def _envelope_sender(dumped: str) -> str:
    """smtp-sink's dump starts with the envelope: X-Mail-Args: <sender> ..."""
    match = re.search(r"^X-Mail-Args: <([^>]*)>", dumped, re.M)
    assert match, dumped[:500]
    return match.group(1)


def test_forwarded_mail_from_outside_leaves_with_an_srs_sender_and_its_bounce_comes_back(
    world: ScratchStack,
) -> None:
    subject = send(world, "sender@elsewhere.test", ["outside@a.test"], subject="srs forward")
    forwarded = _sink_message(world, subject)
    srs_sender = _envelope_sender(forwarded)
    hostname = world.settings.hostname
    assert re.fullmatch(rf"SRS0=[^=]+=[^=]+=elsewhere\.test=sender@{re.escape(hostname)}", srs_sender, re.I)
    assert "From: sender@elsewhere.test" in forwarded  # the message itself is untouched

    # The mail log keeps one story: forwarded to the outside address by the alias, sent by the
    # relay (the round through the internal listener continues the same transaction).
    def forwarded_row(session):
        found, _ = mail_logs.search_transactions(session, OPERATOR, "someone@elsewhere.test")
        for view in found:
            if view.transaction.sender == "sender@elsewhere.test":
                rows = [r for r in view.recipients if r.recipient == "someone@elsewhere.test"]
                if rows and all(
                    r.outcome == "forwarded" and "127.0.0.1]:" + str(world.sink.port) in r.detail + r.relay
                    for r in rows
                ):
                    return rows
        return None

    rows = until_found(world, forwarded_row)
    assert rows is not None and len(rows) == 1, "the forward through SRS is not one logged recipient"

    # The receiver bounces it: the bounce to the SRS address goes back to the original sender.
    with smtplib.SMTP("127.0.0.1", world.ports["smtp"], timeout=10) as client:
        client.ehlo("receiver.test")
        bounce = make_message("", [srs_sender], subject="bounce of srs forward")
        client.send_message(bounce, from_addr="", to_addrs=[srs_sender])
    returned = _sink_message(world, "bounce of srs forward")
    assert re.search(r"^X-Rcpt-Args: <sender@elsewhere\.test>", returned, re.M), returned[:500]

    # Anyone but a bounce is refused at RCPT, even with a genuine SRS address: else anyone who
    # once received a forward could send through this server to its original sender.
    with smtplib.SMTP("127.0.0.1", world.ports["smtp"], timeout=10) as client:
        client.ehlo("receiver.test")
        client.mail("spammer@receiver.test")
        code, reply = client.rcpt(srs_sender)
        assert (code, b"only delivery status notifications" in reply) == (554, True), reply

    # A forged SRS address is refused at RCPT, and a hosted domain's sender is never rewritten.
    with smtplib.SMTP("127.0.0.1", world.ports["smtp"], timeout=10) as client:
        client.ehlo("receiver.test")
        client.mail("")
        code, _ = client.rcpt(f"SRS0=AAAA=ZZ=elsewhere.test=victim@{hostname}")
        assert code == 550
    own = send(world, "alice@a.test", ["outside@a.test"], subject="own forward")
    assert _envelope_sender(_sink_message(world, own)) == "alice@a.test"


def test_catch_all_takes_unknown_addresses_but_never_an_existing_mailbox(world: ScratchStack) -> None:
    with world.installation.transaction() as session:
        acme = tenants.get_tenant(session, OPERATOR, "Acme")
        c_test = domains.create_domain(
            session, OPERATOR, tenant=acme, name="c.test", max_mailboxes=5, max_aliases=5
        )
        for local_part in ("owner", "staff"):
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=c_test,
                local_part=local_part,
                password=PASSWORD,
                quota_bytes=50 * KB,
            )
        aliases.create_alias(session, OPERATOR, domain=c_test, local_part="@", destinations=["owner@c.test"])
    to_unknown = send(world, "sender@elsewhere.test", ["whoever@c.test"])
    to_staff = send(world, "sender@elsewhere.test", ["staff@c.test"])
    assert wait_for_subject(world, "owner@c.test", PASSWORD, to_unknown)
    assert wait_for_subject(world, "staff@c.test", PASSWORD, to_staff)
    assert to_staff not in imap_subjects(world, "owner@c.test", PASSWORD)


# --- refusals at RCPT ----------------------------------------------------------------------------


def test_unknown_recipient_is_refused_with_550_at_rcpt(world: ScratchStack) -> None:
    code, message = rcpt_reply(world, "nobody@a.test")
    assert code == 550, message


def test_relaying_to_another_domain_without_login_is_refused(world: ScratchStack) -> None:
    code, message = rcpt_reply(world, "victim@elsewhere.test")
    assert code == 554 and b"Relay access denied" in message


def test_full_mailbox_is_refused_at_rcpt_and_nothing_is_lost(world: ScratchStack) -> None:
    # About 1 KB of headers is added on the way (Received:, the spam filter's verdict).
    make_mailbox(world, "small@a.test", quota=10 * KB)
    first = send(world, "sender@elsewhere.test", ["small@a.test"], size=7 * KB)
    assert wait_for_subject(world, "small@a.test", PASSWORD, first)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(world, "sender@elsewhere.test", ["small@a.test"], size=3 * KB)
    code, message = refused.value.recipients["small@a.test"]
    assert code == 552 and b"Mailbox is full" in message
    # The first message and the storage warning it caused (past 80%, written by Dovecot's
    # quota-warning service a moment after the delivery); not the refused one.
    assert wait_for_subject(world, "small@a.test", PASSWORD, "Your mailbox is 80% full")
    assert imap_subjects(world, "small@a.test", PASSWORD) == [first, "Your mailbox is 80% full"]
    assert queue_is_empty(world)


def test_a_raised_quota_applies_to_the_next_delivery_without_reload(world: ScratchStack) -> None:
    # Room for one message of 3 KB with the headers added on the way (the spam filter's verdict
    # and authentication results), not for two.
    make_mailbox(world, "grows@a.test", quota=5 * KB)
    first = send(world, "sender@elsewhere.test", ["grows@a.test"], size=3 * KB)
    assert wait_for_subject(world, "grows@a.test", PASSWORD, first)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(world, "sender@elsewhere.test", ["grows@a.test"], size=3 * KB)
    with world.installation.transaction() as session:
        mailbox = mailboxes.get_mailbox(session, OPERATOR, "grows@a.test")
        mailboxes.set_mailbox_quota(session, OPERATOR, mailbox, 40 * KB)
    subject = send(world, "sender@elsewhere.test", ["grows@a.test"], size=3 * KB)
    assert wait_for_subject(world, "grows@a.test", PASSWORD, subject)
    imap = imaplib.IMAP4("127.0.0.1", world.ports["imap"])
    imap.login("grows@a.test", PASSWORD)
    _, quota = imap.getquotaroot("INBOX")
    imap.logout()
    assert b"STORAGE" in quota[1][0] and quota[1][0].endswith(b" 40)")


# --- changes while running -----------------------------------------------------------------------


def test_a_new_mailbox_receives_mail_within_a_second_without_reload(world: ScratchStack) -> None:
    postfix_pid = (world.settings.postfix_queue / "pid" / "master.pid").read_text().split()[0]
    make_mailbox(world, "fresh@a.test")
    created = time.monotonic()
    subject = send(world, "sender@elsewhere.test", ["fresh@a.test"])
    assert wait_for_subject(world, "fresh@a.test", PASSWORD, subject, timeout=1)
    assert time.monotonic() - created < 1.5
    assert (world.settings.postfix_queue / "pid" / "master.pid").read_text().split()[0] == postfix_pid


def test_a_new_domain_accepts_mail_at_once(world: ScratchStack) -> None:
    assert rcpt_reply(world, "first@new-domain.test")[0] == 554  # not hosted yet: relay denied
    with world.installation.transaction() as session:
        acme = tenants.get_tenant(session, OPERATOR, "Acme")
        domains.create_domain(
            session, OPERATOR, tenant=acme, name="new-domain.test", max_mailboxes=2, max_aliases=2
        )
    make_mailbox(world, "first@new-domain.test")
    subject = send(world, "sender@elsewhere.test", ["first@new-domain.test"])
    assert wait_for_subject(world, "first@new-domain.test", PASSWORD, subject)


def test_a_deactivated_mailbox_refuses_mail_and_logins(world: ScratchStack) -> None:
    make_mailbox(world, "leaving@a.test")
    with world.installation.transaction() as session:
        mailbox = mailboxes.get_mailbox(session, OPERATOR, "leaving@a.test")
        mailboxes.update_mailbox(session, OPERATOR, mailbox, active=False)
    assert rcpt_reply(world, "leaving@a.test")[0] == 550
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(world, "leaving@a.test", PASSWORD)


def test_a_changed_password_applies_at_once(world: ScratchStack) -> None:
    make_mailbox(world, "rotates@a.test")
    with world.installation.transaction() as session:
        mailbox = mailboxes.get_mailbox(session, OPERATOR, "rotates@a.test")
        mailboxes.set_mailbox_password(session, OPERATOR, mailbox, password="a brand new secret")
    assert imap_subjects(world, "rotates@a.test", "a brand new secret") == []
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(world, "rotates@a.test", PASSWORD)


# --- submission ----------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["submission", "submissions"])
def test_authenticated_submission_delivers_locally_and_relays_out(world: ScratchStack, port: str) -> None:
    subject = send(
        world,
        "bob@a.test",
        ["dave@a.test", "friend@elsewhere.test"],
        port=port,
        login=("bob@a.test", PASSWORD),
    )
    assert wait_for_subject(world, "dave@a.test", PASSWORD, subject)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(subject in m for m in world.sink.messages()):
        time.sleep(0.1)
    assert any(subject in m for m in world.sink.messages())


def test_submission_refuses_sending_as_another_users_address(world: ScratchStack) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(world, "alice@a.test", ["dave@a.test"], port="submission", login=("bob@a.test", PASSWORD))
    code, message = refused.value.recipients["dave@a.test"]
    assert code == 553 and b"not owned by user bob@a.test" in message


def test_submission_refuses_a_sender_outside_the_platform(world: ScratchStack) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(world, "ceo@bank.test", ["dave@a.test"], port="submission", login=("bob@a.test", PASSWORD))


def test_submission_allows_sending_as_an_alias_the_user_receives(world: ScratchStack) -> None:
    subject = send(world, "team@a.test", ["dave@a.test"], port="submission", login=("bob@a.test", PASSWORD))
    assert wait_for_subject(world, "dave@a.test", PASSWORD, subject)


def test_submission_without_login_is_refused(world: ScratchStack) -> None:
    with pytest.raises(smtplib.SMTPException):
        send(world, "bob@a.test", ["friend@elsewhere.test"], port="submission")


def _submissions_login(stack: ScratchStack, address: str) -> tuple[float, bool, int]:
    """Port 465 as a mail program uses it: (seconds to the 220 greeting after the TLS handshake,
    whether the server issued a TLS session ticket, the AUTH reply's code)."""
    with (
        socket.create_connection(("127.0.0.1", stack.ports["submissions"]), timeout=10) as raw,
        tls_context(stack).wrap_socket(raw) as tls,
    ):
        started = time.perf_counter()
        greeting = tls.recv(1024)
        waited = time.perf_counter() - started
        assert greeting.startswith(b"220 ")
        ticket = tls.session is not None and tls.session.has_ticket
        tls.sendall(b"EHLO client.test\r\n")
        reply = b""
        while b"\r\n250 " not in b"\r\n" + reply:
            reply += tls.recv(4096)
        token = base64.b64encode(f"\0{address}\0{PASSWORD}".encode()).decode()
        tls.sendall(f"AUTH PLAIN {token}\r\n".encode())
        answer = tls.recv(1024)
        tls.sendall(b"QUIT\r\n")
        return waited, ticket, int(answer[:3])


def test_submissions_greets_at_once_after_the_tls_handshake(world: ScratchStack) -> None:
    # Postfix wrote TLS 1.3 session tickets just before its 220 greeting: Nagle held the greeting
    # until the client's delayed ACK, 40 ms at every connection, a quarter of the login rate lost.
    logins = [_submissions_login(world, "bob@a.test") for _ in range(5)]
    assert all(code == 235 for _, _, code in logins)
    assert not any(ticket for _, ticket, _ in logins)
    assert min(waited for waited, _, _ in logins) < 0.030


def test_a_burst_of_submission_logins_all_get_in(world: ScratchStack) -> None:
    # Each session connects to the sender milter at its start: a listen backlog of 5 turned the
    # rest of a burst into 454 "try again later" at AUTH.
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        codes = list(pool.map(lambda _: _submissions_login(world, "carol@a.test")[2], range(48)))
    assert codes == [235] * 48


def _login_from(stack: ScratchStack, port: str, source: str, command: bytes, answer: bytes) -> None:
    """A login over implicit TLS from the loopback address `source` (as if another client)."""
    raw = socket.create_connection(("127.0.0.1", stack.ports[port]), timeout=10, source_address=(source, 0))
    with tls_context(stack).wrap_socket(raw) as tls:
        received = tls.recv(1024)
        tls.sendall(command)
        while answer not in received:
            chunk = tls.recv(4096)
            assert chunk, received
            received += chunk


@pytest.mark.parametrize(
    ("port", "command", "answer"),
    [
        ("imaps", f'a LOGIN "carol@a.test" "{PASSWORD}"\r\n'.encode(), b"a OK"),
        ("pop3s", f"USER carol@a.test\r\nPASS {PASSWORD}\r\n".encode(), b"+OK Logged in"),
    ],
)
def test_dovecot_sees_the_clients_own_address_through_the_tls_proxy(
    world: ScratchStack, port: str, command: bytes, answer: bytes
) -> None:
    # HAProxy ends TLS for IMAPS and POP3S: Dovecot must still log (and throttle) the client, not
    # HAProxy.
    source = "127.0.0.2" if port == "imaps" else "127.0.0.3"
    _login_from(world, port, source, command, answer)
    log = world.settings.log_dir / "dovecot.log"
    login = f"Login: user=<carol@a.test>, method=PLAIN, rip={source}, "
    deadline = time.monotonic() + 5
    while login not in log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert login in log.read_text(errors="replace")


@pytest.mark.parametrize("port", ["imaps_proxied", "pop3s_proxied"])
def test_the_plain_port_behind_haproxy_takes_no_client_that_skips_haproxy(
    world: ScratchStack, port: str
) -> None:
    """Dovecot takes passwords in plain text on the port behind HAProxy (TLS ended there). A
    client reaching it directly without a PROXY header (one that did not come through HAProxy, or
    the address it claims) is dropped before any greeting. (A local process that writes the
    header itself is trusted as the machine's own: the port is on loopback only.)"""
    with socket.create_connection(("127.0.0.1", world.ports[port]), timeout=10) as raw:
        raw.sendall(f'a LOGIN "carol@a.test" "{PASSWORD}"\r\nUSER carol@a.test\r\n'.encode())
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := raw.recv(4096):
                received += chunk
    assert b"OK" not in received


@pytest.mark.parametrize(
    ("port", "command", "refusal"),
    [
        ("imap", f'a LOGIN "carol@a.test" "{PASSWORD}"\r\n'.encode(), b"a NO [PRIVACYREQUIRED]"),
        ("pop3", b"USER carol@a.test\r\n", b"-ERR [AUTH] Plaintext authentication disallowed"),
    ],
)
def test_plain_imap_and_pop3_still_refuse_a_password_before_starttls(
    world: ScratchStack, port: str, command: bytes, refusal: bytes
) -> None:
    # From another loopback address: Dovecot counts a client on its own address as secured.
    with socket.create_connection(
        ("127.0.0.1", world.ports[port]), timeout=10, source_address=("127.0.0.2", 0)
    ) as raw:
        greeting = raw.recv(4096)
        assert port == "pop3" or b"LOGINDISABLED" in greeting
        raw.sendall(command)
        reply = b""
        while refusal not in reply and b"OK" not in reply and (chunk := raw.recv(4096)):
            reply += chunk
    assert refusal in reply and b"OK" not in reply, reply


def test_wrong_password_is_refused_by_smtp_imap_and_pop3(world: ScratchStack) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send(
            world, "bob@a.test", ["dave@a.test"], port="submission", login=("bob@a.test", "not the password")
        )
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(world, "bob@a.test", "not the password")
    with pytest.raises(poplib.error_proto):
        pop3_subjects(world, "bob@a.test", "not the password")


# --- hostile input reaching the lookup tables ----------------------------------------------------

HOSTILE_LOCAL_PARTS = [
    "a'b",
    "alice'--",
    "' OR '1'='1",
    "x' UNION SELECT destination FROM mail_aliases --",
    "%s",
    "%u%d",
    "alice%",
    "ali_e",
    "a\\\\b",
    "x" * 1000,
    '"ali ce"',
    '"alice\\"x',
]


@pytest.mark.parametrize("local_part", HOSTILE_LOCAL_PARTS)
def test_hostile_recipients_get_a_plain_refusal(world: ScratchStack, local_part: str) -> None:
    recipient = local_part if "@" in local_part else f"{local_part}@a.test"
    code, message = rcpt_reply(
        world, f"<{recipient}>".strip("<>") if local_part.startswith('"') else recipient
    )
    assert 500 <= code < 600, (code, message)
    assert b"lookup" not in message.lower()  # "temporary lookup failure" would be a server error


def test_a_nul_byte_in_a_recipient_is_refused(world: ScratchStack) -> None:
    with smtplib.SMTP("127.0.0.1", world.ports["smtp"], timeout=10) as client:
        client.ehlo("client.test")
        client.mail("sender@elsewhere.test")
        client.send(b"RCPT TO:<alice\x00@a.test>\r\n")
        code, _ = client.getreply()
    assert 500 <= code < 600


HOSTILE_LOGINS = [
    ("alice@a.test' --", PASSWORD),
    ("' OR '1'='1", "' OR '1'='1"),
    ("alice@a.test' OR '1'='1", "anything at all"),
    ("%u@a.test", PASSWORD),
    ("alice%@a.test", PASSWORD),
    ("a" * 1000 + "@a.test", PASSWORD),
    ("alice@a.test\\", PASSWORD),
]


@pytest.mark.parametrize("user, password", HOSTILE_LOGINS)
def test_hostile_logins_get_a_plain_authentication_failure(
    world: ScratchStack, user: str, password: str
) -> None:
    imap = imaplib.IMAP4("127.0.0.1", world.ports["imap"], timeout=10)
    try:
        status, detail = imap._simple_command("LOGIN", imap._quote(user), imap._quote(password))
        assert status == "NO" and b"AUTHENTICATIONFAILED" in detail[0], detail
        assert imap.noop()[0] == "OK"  # the session survives: a refusal, not a server error
    finally:
        imap.logout()
    with pytest.raises(smtplib.SMTPAuthenticationError) as smtp_refused:
        send(world, "bob@a.test", ["dave@a.test"], port="submission", login=(user, password))
    assert smtp_refused.value.smtp_code == 535


def test_the_stack_still_delivers_after_hostile_input(world: ScratchStack) -> None:
    subject = send(world, "sender@elsewhere.test", ["erin@a.test"])
    assert wait_for_subject(world, "erin@a.test", PASSWORD, subject)


# --- configuration generations -------------------------------------------------------------------


def _broken_templates(tmp_path: Path, kind: str) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATE_ROOT, root)
    main_cf = root / "postfix" / "main.cf.j2"
    if kind == "template-error":
        main_cf.write_text(main_cf.read_text() + "\n{% if %}\n")
    else:
        main_cf.write_text(main_cf.read_text().replace("smtpd_helo_required", "smtpd_helo_requird"))
    return root


@pytest.mark.parametrize("kind", ["template-error", "checker-error"])
def test_a_broken_config_is_refused_and_mail_keeps_flowing(
    world: ScratchStack, tmp_path: Path, kind: str
) -> None:
    live_before = world.settings.live_config.resolve()
    with world.installation.transaction() as session:
        generation = configuration.apply_current_configuration(
            session, world.settings, template_root=_broken_templates(tmp_path, kind), force=True
        )
        generation_id = generation.id
    assert generation.status == "refused" and generation.error
    assert world.settings.live_config.resolve() == live_before
    with world.installation.transaction() as session:
        recorded = session.scalar(select(ConfigGeneration).where(ConfigGeneration.id == generation_id))
        assert recorded.status == "refused"
    subject = send(world, "sender@elsewhere.test", ["erin@a.test"])
    assert wait_for_subject(world, "erin@a.test", PASSWORD, subject)


def test_a_good_config_change_goes_live_with_a_graceful_reload(world: ScratchStack) -> None:
    postfix_pid = (world.settings.postfix_queue / "pid" / "master.pid").read_text().split()[0]
    with world.installation.transaction() as session:
        generation = configuration.apply_current_configuration(session, world.settings, force=True)
    assert generation.status == "live", generation.error
    assert world.settings.live_config.resolve() == Path(generation.path)
    assert (world.settings.postfix_queue / "pid" / "master.pid").read_text().split()[0] == postfix_pid
    subject = send(world, "sender@elsewhere.test", ["erin@a.test"])
    assert wait_for_subject(world, "erin@a.test", PASSWORD, subject)


# --- the operator's CLI against the running stack ------------------------------------------------


def _cli(world: ScratchStack, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        __import__("cli").main, list(args), env={"LETTERHEAD_HOME": str(world.home)}, catch_exceptions=False
    )
    return result.exit_code, result.output


def test_status_reports_each_service_with_pid_ports_and_generation(world: ScratchStack) -> None:
    code, output = _cli(world, "status", "--json")
    document = json.loads(output)
    # This stack runs without the web app (`up --no-web`): status says so, and exits 1.
    assert code == 1 and document["healthy"] is False
    assert any(problem.startswith("Not running:") and "web" in problem for problem in document["problems"])
    rows = {row["service"]: row for row in document["services"]}
    assert rows["postfix"]["state"] == "running" and rows["dovecot"]["state"] == "running"
    assert f"smtp={world.ports['smtp']}" in rows["postfix"]["ports"]
    assert rows["postfix"]["generation"] == world.settings.live_config.resolve().name


def test_an_imported_mailbox_logs_in_with_its_migrated_password_hash(
    world: ScratchStack, tmp_path: Path
) -> None:
    hashed = subprocess.run(
        ["/usr/bin/doveadm", "pw", "-s", "SHA512-CRYPT", "-p", "migrated secret"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    export = tmp_path / "export.yaml"
    code, output = _cli(world, "export")
    assert code == 0
    data = yaml.safe_load(output)
    a_test = next(d for t in data["tenants"] for d in t["domains"] if d["name"] == "a.test")
    a_test["mailboxes"].append({"local_part": "migrated", "password_hash": hashed, "quota_bytes": 20 * KB})
    export.write_text(yaml.safe_dump(data))
    code, output = _cli(world, "import", str(export), "--json")
    assert code == 0, output
    assert json.loads(output)["created"] == 1
    assert imap_subjects(world, "migrated@a.test", "migrated secret") == []
    code, output = _cli(world, "import", str(export), "--json")
    assert json.loads(output)["created"] == 0


def _state_with_brand(world: ScratchStack) -> RenderState:
    """A change that reloads nginx alone: a brand's TLS name (Postfix's SNI map, nginx's map, and
    HAProxy's certificates through its admin socket)."""
    state = apply.build_render_state(world.settings)
    brand = TlsIdentity("mail.brand.test", state.default_tls.cert_path, state.default_tls.key_path)
    return dataclasses.replace(state, sni_identities=(brand,))


def _haproxy_processes(world: ScratchStack) -> tuple[int, set[int]]:
    from controlplane.daemons import haproxy

    master, workers = haproxy.master_pid(world.settings), haproxy.worker_pids(world.settings)
    assert master is not None and workers
    return master, workers


def _served_certificate_subject(world: ScratchStack, port: str, server_name: str | None) -> str:
    """The subject of the certificate the daemon presents for this SNI name (None: no SNI)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if port == "smtp":
        with smtplib.SMTP("127.0.0.1", world.ports["smtp"], timeout=10) as client:
            client.ehlo("client.test")
            client._host = server_name  # smtplib sends SNI for this name (None: no SNI)
            client.starttls(context=context)
            der = client.sock.getpeercert(binary_form=True)
    else:
        with (
            socket.create_connection(("127.0.0.1", world.ports[port]), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    return subprocess.run(
        ["/usr/bin/openssl", "x509", "-noout", "-subject"],
        input=ssl.DER_cert_to_PEM_cert(der), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_a_brand_certificate_is_served_by_sni_on_smtp_imaps_and_pop3s_without_reloading_postfix_or_dovecot(
    world: ScratchStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controlplane.daemons import dovecot

    dovecot_reloads = []
    monkeypatch.setattr(dovecot, "reload", lambda path: dovecot_reloads.append(path))
    brand = ensure_default_certificate(tmp_path / "brand", "mail.brand.test")
    state = dataclasses.replace(apply.build_render_state(world.settings), sni_identities=(brand,))
    postfix_pid = (world.settings.postfix_queue / "pid" / "master.pid").read_text().split()[0]
    smtpd_before = _reload_count(world)
    haproxy_before = _haproxy_processes(world)
    try:
        with world.installation.transaction() as session:
            generation = apply.apply_configuration(session, world.settings, state=state)
        assert generation.status == "live", generation.error
        for port in ("smtp", "imaps", "pop3s"):
            assert "CN = mail.brand.test" in _served_certificate_subject(world, port, "mail.brand.test")
            assert "CN = mail.letterhead.test" in _served_certificate_subject(world, port, None)
            assert "CN = mail.letterhead.test" in _served_certificate_subject(world, port, "other.test")
        assert (world.settings.postfix_queue / "pid" / "master.pid").read_text().split()[0] == postfix_pid
        assert _reload_count(world) == smtpd_before
        assert dovecot_reloads == []
        # HAProxy took the certificate at run time: its master and its workers are the same processes.
        assert _haproxy_processes(world) == haproxy_before
    finally:
        with world.installation.transaction() as session:
            configuration.apply_current_configuration(session, world.settings)
    assert "CN = mail.letterhead.test" in _served_certificate_subject(world, "smtp", "mail.brand.test")


def _reload_count(world: ScratchStack) -> int:
    log = world.settings.log_dir / "postfix.log"
    return log.read_text(errors="replace").count("postfix/master") if log.exists() else 0


def test_a_postfix_only_change_does_not_reload_dovecot(world: ScratchStack, monkeypatch) -> None:
    from controlplane.daemons import dovecot, postfix

    reloaded = []
    monkeypatch.setattr(dovecot, "reload", lambda path: reloaded.append("dovecot"))
    real_postfix_reload = postfix.reload
    monkeypatch.setattr(
        postfix, "reload", lambda path: reloaded.append("postfix") or real_postfix_reload(path)
    )
    state = dataclasses.replace(apply.build_render_state(world.settings), relayhost="[127.0.0.1]:9")
    try:
        with world.installation.transaction() as session:
            generation = apply.apply_configuration(session, world.settings, state=state)
        assert generation.status == "live", generation.error
        assert reloaded == ["postfix"]
    finally:
        with world.installation.transaction() as session:
            configuration.apply_current_configuration(session, world.settings)
    subject = send(world, "sender@elsewhere.test", ["erin@a.test"])
    assert wait_for_subject(world, "erin@a.test", PASSWORD, subject)


def test_a_failed_reload_switches_back_and_mail_keeps_flowing(
    world: ScratchStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controlplane.daemons import nginx
    from controlplane.daemons.process import DaemonError

    live_before = world.settings.live_config.resolve()
    real_reload = nginx.reload
    calls = []

    def reload_failing_once(config_file: Path) -> None:
        calls.append(config_file)
        if len(calls) == 1:  # the new generation's reload fails; restoring the old one works
            raise DaemonError("nginx did not reload: simulated by the test")
        real_reload(config_file)

    monkeypatch.setattr(nginx, "reload", reload_failing_once)
    with world.installation.transaction() as session:
        generation = apply.apply_configuration(session, world.settings, state=_state_with_brand(world))
    assert generation.status == "rolled_back" and "simulated" in generation.error
    assert world.settings.live_config.resolve() == live_before
    assert len(calls) == 2
    subject = send(world, "sender@elsewhere.test", ["erin@a.test"])
    assert wait_for_subject(world, "erin@a.test", PASSWORD, subject)


def test_haproxy_reloads_for_its_own_changes_and_a_reload_it_cannot_make_is_rolled_back(
    world: ScratchStack, tmp_path: Path
) -> None:
    """A change to haproxy.cfg (here a listener more) reloads HAProxy: a new worker, IMAPS still
    served. One that passes `haproxy -c` but cannot run (its port taken, which the check never
    binds) leaves the running worker serving, and the generation is rolled back."""
    from controlplane.daemons import haproxy
    from controlplane.daemons.process import port_open
    from controlplane.runners.scratch import free_ports

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATE_ROOT, templates)
    template = templates / "haproxy" / "haproxy.cfg.j2"
    original = template.read_text()
    free, taken = free_ports(2)

    def with_listener(port: int) -> None:
        template.write_text(
            f"{original}\nfrontend extra\n    bind 127.0.0.1:{port}\n    default_backend imaps_dovecot\n"
        )

    def apply_templates() -> ConfigGeneration:
        with world.installation.transaction() as session:
            return configuration.apply_current_configuration(session, world.settings, template_root=templates)

    login = (f'a LOGIN "carol@a.test" "{PASSWORD}"\r\n'.encode(), b"a OK")
    workers = haproxy.worker_pids(world.settings)
    try:
        with_listener(free)
        generation = apply_templates()
        assert generation.status == "live", generation.error
        assert haproxy.worker_pids(world.settings) - workers and port_open("127.0.0.1", free)
        _login_from(world, "imaps", "127.0.0.4", *login)

        live_before = world.settings.live_config.resolve()
        with socket.create_server(("127.0.0.1", taken)):
            with_listener(taken)
            generation = apply_templates()
            assert generation.status == "rolled_back"
            assert "HAProxy did not reload" in generation.error and "cannot bind" in generation.error
            assert world.settings.live_config.resolve() == live_before
            _login_from(world, "imaps", "127.0.0.4", *login)
    finally:
        with world.installation.transaction() as session:
            assert configuration.apply_current_configuration(session, world.settings).status == "live"
    assert not port_open("127.0.0.1", free)
    _login_from(world, "imaps", "127.0.0.4", *login)


def test_managesieve_accepts_a_mailbox_login(world: ScratchStack) -> None:
    import base64
    import socket

    with socket.create_connection(("127.0.0.1", world.ports["managesieve"]), timeout=10) as connection:
        stream = connection.makefile("rwb")
        greeting = b""
        while not greeting.startswith(b"OK"):
            line = stream.readline()
            assert line, "ManageSieve closed the connection"
            greeting = line
        token = base64.b64encode(b"\0alice@a.test\0" + PASSWORD.encode()).decode()
        stream.write(f'AUTHENTICATE "PLAIN" "{token}"\r\n'.encode())
        stream.flush()
        assert stream.readline().startswith(b"OK")


def test_a_message_postfix_delivers_again_after_a_cut_session_is_stored_once(world: ScratchStack) -> None:
    """Postfix retries a delivery whose LMTP reply it never got (Dovecot reloaded after saving
    it): the same queue ID again. The mailbox keeps one copy; another message is stored."""
    make_mailbox(world, "retried@a.test")

    def deliver(queue_id: str, subject: str) -> None:
        message = (
            f"Received: from client.test (localhost [127.0.0.1])\r\n"
            f"\tby {world.settings.hostname} (Postfix) with ESMTP id {queue_id}\r\n"
            f"\tfor <retried@a.test>; Sun,  6 Dec 2026 06:00:00 +0000 (UTC)\r\n"
            f"From: sender@elsewhere.test\r\nTo: retried@a.test\r\nSubject: {subject}\r\n\r\nbody\r\n"
        )
        with smtplib.LMTP(str(world.settings.run_dir / "lmtp")) as lmtp:
            lmtp.sendmail("sender@elsewhere.test", ["retried@a.test"], message.encode())

    deliver("4jhzzzRetry1", "delivered once")
    deliver("4jhzzzRetry1", "delivered once")  # the retry
    deliver("4jhzzzOther2", "another message")

    assert wait_for_subject(world, "retried@a.test", PASSWORD, "another message")
    assert sorted(imap_subjects(world, "retried@a.test", PASSWORD)) == ["another message", "delivered once"]
