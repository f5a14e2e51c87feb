"""Small real-client helpers for the end-to-end tests: smtplib, imaplib, poplib."""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import imaplib
import json
import poplib
import smtplib
import socket
import ssl
import time
import uuid
from email.message import EmailMessage

from controlplane.runners.scratch import ScratchStack

DEFAULT_TIMEOUT = 10


def tls_context(stack: ScratchStack) -> ssl.SSLContext:
    """Trust exactly the stack's own default certificate (self-signed)."""
    context = ssl.create_default_context(cafile=str(stack.settings.certs_dir / "default.crt"))
    context.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
    return context


def make_message(
    sender: str, recipients: list[str], *, subject: str | None = None, size: int = 0
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject or f"test {uuid.uuid4().hex}"
    # As every mail program sends them: without, rspamd scores a message as suspect.
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or "client.test")
    message.set_content("Hello from the Letterhead tests.\n" + ("x" * 70 + "\n") * (size // 71))
    return message


def send(
    stack: ScratchStack,
    sender: str,
    recipients: list[str],
    *,
    subject: str | None = None,
    size: int = 0,
    port: str = "smtp",
    login: tuple[str, str] | None = None,
) -> str:
    """Send one message; return its subject. Raises smtplib errors as a real client would see them."""
    message = make_message(sender, recipients, subject=subject, size=size)
    port_number = stack.ports[port]
    if port == "submissions":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            "127.0.0.1", port_number, context=tls_context(stack), timeout=DEFAULT_TIMEOUT
        )
    else:
        client = smtplib.SMTP("127.0.0.1", port_number, timeout=DEFAULT_TIMEOUT)
    with client:
        client.ehlo("client.test")
        if port == "submission":
            client.starttls(context=tls_context(stack))
            client.ehlo("client.test")
        if login:
            client.login(*login)
        client.send_message(message, from_addr=sender, to_addrs=recipients)
    return str(message["Subject"])


def imap_subjects(stack: ScratchStack, user: str, password: str, *, secure: bool = False) -> list[str]:
    if secure:
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            "127.0.0.1", stack.ports["imaps"], ssl_context=tls_context(stack), timeout=DEFAULT_TIMEOUT
        )
    else:
        client = imaplib.IMAP4("127.0.0.1", stack.ports["imap"], timeout=DEFAULT_TIMEOUT)
    try:
        client.login(user, password)
        client.select("INBOX", readonly=True)
        _, data = client.search(None, "ALL")
        subjects = []
        for number in data[0].split():
            _, fetched = client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            header = fetched[0][1].decode().strip()
            subjects.append(header.removeprefix("Subject:").strip())
        return subjects
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def pop3_subjects(stack: ScratchStack, user: str, password: str, *, secure: bool = False) -> list[str]:
    if secure:
        client: poplib.POP3 = poplib.POP3_SSL(
            "127.0.0.1", stack.ports["pop3s"], context=tls_context(stack), timeout=DEFAULT_TIMEOUT
        )
    else:
        client = poplib.POP3("127.0.0.1", stack.ports["pop3"], timeout=DEFAULT_TIMEOUT)
    try:
        client.user(user)
        client.pass_(password)
        count, _ = client.stat()
        subjects = []
        for number in range(1, count + 1):
            _, lines, _ = client.top(number, 0)
            for line in lines:
                if line.lower().startswith(b"subject:"):
                    subjects.append(line.decode().split(":", 1)[1].strip())
        return subjects
    finally:
        client.quit()


def wait_for_subject(
    stack: ScratchStack, user: str, password: str, subject: str, timeout: float = 10
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subject in imap_subjects(stack, user, password):
            return True
        time.sleep(0.1)
    return False


def until_found(stack: ScratchStack, found, timeout: float = 20.0):
    """The log follower reads the logs as Postfix (through the log writer, a moment after the SMTP reply),
    rspamd and Dovecot write them: poll the database until `found(session)` returns something."""
    deadline = time.monotonic() + timeout
    while True:
        with stack.installation.sessions() as session:
            result = found(session)
            if result or time.monotonic() > deadline:
                return result
        time.sleep(0.3)


def served_certificate(port: int, hostname: str) -> bytes:
    """The certificate (DER) a TLS port presents for `hostname` by SNI, unverified: tests compare
    it byte for byte with the one they expect."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=DEFAULT_TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as secure,
    ):
        return secure.getpeercert(binary_form=True)


def api_call(
    stack: ScratchStack, secret: str, method: str, path: str, body: dict | None = None
) -> tuple[int, object]:
    """`/api/v1{path}` through the stack's nginx over HTTPS with a token, as a reseller's script
    calls it: the status and the decoded JSON body (an empty dict when there is none)."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", stack.ports["https"], timeout=30, context=tls_context(stack)
    )
    try:
        connection.request(
            method,
            f"/api/v1{path}",
            body=json.dumps(body) if body is not None else None,
            headers={
                "Host": stack.settings.hostname,
                "Authorization": f"Bearer {secret}",
                "Content-Type": "application/json",
            },
        )
        response = connection.getresponse()
        status, data = response.status, response.read()
    finally:
        connection.close()
    return status, json.loads(data) if data else {}
