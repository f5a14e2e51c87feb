"""`GET /health` as a monitor asks it: over HTTPS through nginx on the platform host, no login.
Every part up gives 200; a part that died gives 503 naming it down; the answer carries nothing
but names and up or down."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import imaplib
import json
import os
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from controlplane.certs import acme
from controlplane.models import ConfigGeneration
from controlplane.runners import stack
from controlplane.runners.scratch import ScratchStack
from controlplane.services import aliases, brands, certificates, domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.certificates import self_signed
from tests.commands import letterhead
from tests.e2e.mailclient import send, tls_context, wait_for_subject

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "correct horse battery"
METRICS_TOKEN = "metrics-token-for-the-tests"


@pytest.fixture(scope="module")
def running() -> Iterator[ScratchStack]:
    scratch = ScratchStack(extra_settings=f'metrics_token = "{METRICS_TOKEN}"')
    try:
        scratch.start(web=True)
        with scratch.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Watched", storage_pool_bytes=1000 * KB)
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name="watched.test", max_mailboxes=5, max_aliases=5,
                max_mailbox_bytes=100 * KB,
            )  # fmt: skip
            mailboxes.create_mailbox(
                session, OPERATOR, domain=domain, local_part="ann", password=PASSWORD, quota_bytes=100 * KB
            )
            aliases.create_alias(
                session, OPERATOR, domain=domain, local_part="away", destinations=["far@elsewhere.test"]
            )
        yield scratch
    finally:
        scratch.stop()


def _health(scratch: ScratchStack) -> tuple[int, dict]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", scratch.ports["https"], timeout=20, context=tls_context(scratch)
    )
    connection.request("GET", "/health", headers={"Host": scratch.settings.hostname})
    response = connection.getresponse()
    status, body = response.status, json.loads(response.read())
    connection.close()
    return status, body


def _metrics(
    scratch: ScratchStack, *, host: str | None = None, token: str | None = METRICS_TOKEN
) -> tuple[int, str]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", scratch.ports["https"], timeout=20, context=tls_context(scratch)
    )
    headers = {"Host": host or scratch.settings.hostname}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    connection.request("GET", "/metrics", headers=headers)
    response = connection.getresponse()
    status, body = response.status, response.read().decode()
    connection.close()
    return status, body


def _until(found, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (result := found()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return result


@pytest.fixture(scope="module")
def mail_flowed(running: ScratchStack) -> ScratchStack:
    """One message delivered, and one waiting as deferred: the relay the stack sends through
    stopped answering."""
    assert send(running, "sender@elsewhere.test", ["ann@watched.test"])
    running.sink.stop()
    send(running, "sender@elsewhere.test", ["away@watched.test"])
    return running


def test_status_says_all_is_well_and_counts_deferred_mail(mail_flowed) -> None:
    result = letterhead(mail_flowed.home, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All is well." in result.stdout and "self-signed" in result.stdout
    document = _until(
        lambda: (
            (d := json.loads(letterhead(mail_flowed.home, "status", "--json").stdout))["queues"]["deferred"]
            and d
        )
    )
    assert document and sum(document["queues"].values()) == 1 and document["healthy"] is True
    assert document["disk_free_bytes"] > 0 and document["platform_certificate_self_signed"] is True
    assert {row["service"]: row["state"] for row in document["services"]}["postfix"] == "running"


def test_metrics_are_the_operators_on_the_platform_host_with_the_token(mail_flowed) -> None:
    running = mail_flowed
    assert _metrics(running, token=None)[0] == 401
    assert _metrics(running, token="not-" + METRICS_TOKEN)[0] == 401
    assert _metrics(running, host="mail.watched.test")[0] == 404  # a brand host: not there
    client = imaplib.IMAP4("127.0.0.1", running.ports["imap"], timeout=20)
    client.login("ann@watched.test", PASSWORD)
    client.logout()
    with contextlib.suppress(imaplib.IMAP4.error):
        imaplib.IMAP4("127.0.0.1", running.ports["imap"], timeout=20).login(
            "ann@watched.test", "wrong password"
        )
    wanted = (
        'letterhead_recipients_last_hour{outcome="delivered"} 1.0',
        'letterhead_logins_last_hour{result="success",service="imap"} 1.0',
        'letterhead_logins_last_hour{result="failure",service="imap"} 1.0',
        # Retried every few seconds in a test stack: between two attempts it waits as deferred.
        'letterhead_postfix_queue_messages{queue="deferred"} 1.0',
    )
    body = _until(lambda: all(line in (text := _metrics(running)[1]) for line in wanted) and text)
    assert body, _metrics(running)[1]
    assert 'letterhead_part_up{part="dovecot"} 1.0' in body
    assert "letterhead_healthy 1.0" in body and "letterhead_disk_free_bytes" in body
    assert "ann@watched.test" not in body  # figures, never addresses


def _expired_certificate(hostname: str) -> tuple[str, str]:
    """A certificate whose end has passed (as one left unrenewed would be), and its key."""
    now = dt.datetime.now(dt.UTC)
    return self_signed(
        hostname, hostname, valid_from=now - dt.timedelta(days=90), valid_until=now - dt.timedelta(days=1)
    )


def test_an_expired_brand_certificate_is_named_and_mail_keeps_flowing(mail_flowed) -> None:
    running, hostname = mail_flowed, "mail.watched.test"
    pems = _expired_certificate(hostname)
    with running.installation.transaction() as session:
        tenant = tenants.get_tenant(session, OPERATOR, "Watched")
        brand = brands.create_brand(
            session, OPERATOR, running.settings, tenant=tenant, hostname=hostname, name="W"
        )
        certificates.record_certificate(brand, acme.read_certificate_pem(pems[0]), pems)
    result = letterhead(running.home, "status")
    assert result.returncode == 1
    assert f"Problem: The certificate of {hostname} expired on" in result.stdout, result.stdout
    body = _metrics(running)[1]
    assert f'letterhead_certificate_expiry_timestamp_seconds{{host="{hostname}"}}' in body
    assert "letterhead_healthy 0.0" in body
    # The rest keeps working: the configuration is live, mail is delivered.
    with running.installation.sessions() as session:
        newest = session.scalars(select(ConfigGeneration).order_by(ConfigGeneration.id.desc())).first()
        assert newest is not None and newest.status == "live"
    subject = send(running, "sender@elsewhere.test", ["ann@watched.test"])
    assert wait_for_subject(running, "ann@watched.test", PASSWORD, subject, timeout=30)


def test_health_says_up_or_down_per_part_and_nothing_more(running) -> None:
    status, body = _health(running)
    assert status == 200, body
    assert set(body) == {"status", "parts"} and body["status"] == "up"
    assert {
        "database",
        "dovecot",
        "haproxy",
        "postfix",
        "rspamd",
        "redis",
        "web",
        "nginx",
        "log-follower",
    } <= set(body["parts"])
    assert set(body["parts"].values()) == {"up"}

    postsrsd_pid = {s.name: s.pid for s in stack.status(running.settings)}["postsrsd"]
    os.kill(postsrsd_pid, 9)
    status, body = _health(running)
    assert status == 503 and body["status"] == "down"
    assert body["parts"]["postsrsd"] == "down" and body["parts"]["dovecot"] == "up"
    assert set(body["parts"].values()) <= {"up", "down"}  # no PID, port or path

    result = letterhead(running.home, "status")
    assert result.returncode == 1 and "Problem: Not running: postsrsd." in result.stdout
    assert "letterhead_healthy 0.0" in _metrics(running)[1]
