"""Two mail nodes on one machine, sharing one PostgreSQL database (separate state directories,
ports and daemons): a mailbox made through node A's API receives mail on node B and is read over
IMAP on either, B's log rows tagged with B; a change made on A reaches B's daemons within seconds;
a brand certificate recorded once is served by SNI on B; mail A accepted for a mailbox on B
while B was down is delivered, once, when B is back; and an admin filter set, read and removed
through A for a mailbox on B is written, run and removed on B, as is the mail of a mailbox
deleted through A."""

from __future__ import annotations

import contextlib
import imaplib
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import func, select

from controlplane.certs import acme
from controlplane.daemons.postgres import PrivatePostgres
from controlplane.models import Mailbox, MailRecipientResult, MailTransaction, Node
from controlplane.render import ADMIN_SIEVE_SCRIPT, SPAM_REJECT_SCORES_KEY
from controlplane.runners import stack
from controlplane.runners.scratch import ScratchStack
from controlplane.services import brands, certificates, domains, mailboxes, spam, tenants, tokens
from controlplane.services.scope import OPERATOR
from tests import postgres_databases
from tests.e2e.mailclient import (
    api_call,
    imap_subjects,
    send,
    served_certificate,
    tls_context,
    until_found,
    wait_for_subject,
)
from webmail.managesieve import SieveClient

pytestmark = pytest.mark.e2e

KB = 1024
PASSWORD = "two nodes password"


def _node(url: str, name: str, *, web: bool) -> ScratchStack:
    node = ScratchStack(extra_settings=f'database_url = "{url}"\nnode_name = "{name}"\n')
    node.start(web=web)
    return node


@pytest.fixture(scope="module")
def cluster(postgres_cluster: PrivatePostgres) -> Iterator[tuple[ScratchStack, ScratchStack, str]]:
    database = postgres_databases.create(postgres_cluster)
    url = postgres_cluster.url(database)
    a = b = None
    try:
        a = _node(url, "a", web=True)
        b = _node(url, "b", web=False)
        with a.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Shared", storage_pool_bytes=1000 * KB)
            domains.create_domain(
                session, OPERATOR, tenant=tenant, name="nodes.test", max_mailboxes=10, max_aliases=5,
                max_mailbox_bytes=200 * KB,
            )  # fmt: skip
            _, secret = tokens.create_token(session, OPERATOR, tenant=tenant, kind="tenant", name="nodes")
        yield a, b, secret
    finally:
        for node in (b, a):
            if node is not None:
                node.stop()
        postgres_databases.drop(postgres_cluster, database)


def _api_create_mailbox(node: ScratchStack, secret: str, local_part: str) -> int:
    body = {"local_part": local_part, "quota_bytes": 100 * KB, "password": PASSWORD}
    return api_call(node, secret, "POST", "/domains/nodes.test/mailboxes", body)[0]


def _mailbox_on(node: ScratchStack, secret: str, home: str, local_parts: tuple[str, ...]) -> str:
    """The first of these new mailboxes that lands on `home` (they spread over the nodes)."""
    for local_part in local_parts:
        assert _api_create_mailbox(node, secret, local_part) == 201
        if _home_node(node, f"{local_part}@nodes.test") == home:
            return local_part
    raise AssertionError(f"none of {local_parts} was placed on {home}")


def _home_node(node: ScratchStack, address: str) -> str:
    with node.installation.sessions() as session:
        mailbox = mailboxes.find_mailbox(session, address)
        return session.scalar(
            select(Node.name).join(Mailbox, Mailbox.node_id == Node.id).where(Mailbox.id == mailbox.id)
        )


def _maildir_copies(node: ScratchStack, subject: str) -> int:
    found = 0
    for path in node.settings.mail_root.glob("*/Maildir/*/*"):
        if path.is_file() and f"Subject: {subject}".encode() in path.read_bytes()[:4096]:
            found += 1
    return found


INVOICES = 'require ["fileinto","mailbox"];\nif header :contains "subject" "invoice" { fileinto :create "Invoices"; }\n'


def _folder_subjects(node: ScratchStack, user: str, folder: str) -> list[str]:
    client = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=tls_context(node), timeout=10)
    try:
        client.login(user, PASSWORD)
        if client.select(f'"{folder}"', readonly=True)[0] != "OK":
            return []
        _, data = client.search(None, "ALL")
        return [
            client.fetch(number, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1]
            .decode()
            .split(":", 1)[1]
            .strip()
            for number in data[0].split()
        ]
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def test_a_mailbox_made_on_a_receives_mail_on_b_and_is_read_on_either(cluster) -> None:
    a, b, secret = cluster
    assert _api_create_mailbox(a, secret, "ann") == 201
    assert _home_node(a, "ann@nodes.test") == "a"
    subject = send(b, "someone@elsewhere.test", ["ann@nodes.test"])
    # Stored once, on A: B's Dovecot handed the delivery on to A's LMTP.
    assert wait_for_subject(a, "ann@nodes.test", PASSWORD, subject, timeout=20)
    assert _maildir_copies(a, subject) == 1 and _maildir_copies(b, subject) == 0

    # B's log follower wrote the transaction into the shared database, tagged with its node.
    def received_on_b(session):
        return session.scalar(
            select(MailTransaction.node)
            .join(MailRecipientResult, MailRecipientResult.transaction_id == MailTransaction.id)
            .where(MailRecipientResult.recipient == "ann@nodes.test", MailTransaction.node == "b")
        )

    assert until_found(a, received_on_b) == "b"
    # A login on B is proxied to A, with the same answer.
    assert subject in imap_subjects(b, "ann@nodes.test", PASSWORD, secure=True)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_subjects(b, "ann@nodes.test", "wrong password", secure=True)


def _held(node: ScratchStack) -> dict[str, int]:
    with node.installation.sessions() as session:
        rows = session.execute(
            select(Node.name, func.count(Mailbox.id))
            .outerjoin(Mailbox, Mailbox.node_id == Node.id)
            .group_by(Node.name)
        ).all()
    return dict(rows)


def test_each_nodes_settings_with_the_database_password_are_roots_alone(cluster) -> None:
    for node in cluster[:2]:
        assert (node.home / "letterhead.toml").stat().st_mode & 0o777 == 0o600


def test_new_mailboxes_spread_over_the_nodes(cluster) -> None:
    a, _b, secret = cluster
    for local_part in ("bea", "bob", "bo"):
        before = _held(a)
        assert _api_create_mailbox(a, secret, local_part) == 201
        after = _held(a)
        # Each went to a node that held fewest just before.
        [placed] = [name for name in after if after[name] == before.get(name, 0) + 1]
        assert before.get(placed, 0) == min(before.values())
    assert abs(_held(a)["a"] - _held(a)["b"]) <= 1


def test_a_change_made_on_a_reaches_b_daemons_within_seconds(cluster) -> None:
    a, b, _secret = cluster
    with a.installation.transaction() as session:
        domain = domains.get_domain(session, OPERATOR, "nodes.test")
        spam.update(session, OPERATOR, a.settings, domain, reject_score=21.5)
    client = redis.Redis(host="127.0.0.1", port=b.ports["redis"], decode_responses=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and client.hget(SPAM_REJECT_SCORES_KEY, "nodes.test") != "21.5":
        time.sleep(0.2)
    assert client.hget(SPAM_REJECT_SCORES_KEY, "nodes.test") == "21.5"
    client.close()


def test_mail_a_accepted_while_b_was_down_is_delivered_once_when_b_is_back(cluster) -> None:
    a, b, secret = cluster
    assert _api_create_mailbox(a, secret, "cyd") == 201
    if _home_node(a, "cyd@nodes.test") != "b":
        assert _api_create_mailbox(a, secret, "dee") == 201
        address = "dee@nodes.test"
    else:
        address = "cyd@nodes.test"
    assert _home_node(a, address) == "b"
    stack.down(b.settings)
    subject = send(a, "someone@elsewhere.test", [address])  # accepted by A: 250
    time.sleep(2)
    assert _maildir_copies(b, subject) == 0
    queue = subprocess.run(
        ["/usr/sbin/postqueue", "-c", str(a.settings.live_config / "postfix"), "-p"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert address in queue.stdout  # waiting in A's queue, not lost
    b.start(web=False)
    subprocess.run(["/usr/sbin/postqueue", "-c", str(a.settings.live_config / "postfix"), "-f"], check=False)
    assert wait_for_subject(b, address, PASSWORD, subject, timeout=30)
    assert _maildir_copies(b, subject) == 1 and _maildir_copies(a, subject) == 0


def test_a_brand_certificate_obtained_on_a_is_served_by_sni_on_b(cluster, tmp_path) -> None:
    a, b, _secret = cluster
    hostname = "mail.nodes.test"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", f"/CN={hostname}",
         "-addext", f"subjectAltName=DNS:{hostname}", "-keyout", str(tmp_path / "key.pem"),
         "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    pems = ((tmp_path / "cert.pem").read_text(), (tmp_path / "key.pem").read_text())
    expected = ssl.PEM_cert_to_DER_cert(pems[0])
    with a.installation.transaction() as session:
        tenant = tenants.get_tenant(session, OPERATOR, "Shared")
        brand = brands.create_brand(
            session, OPERATOR, a.settings, tenant=tenant, hostname=hostname, name="Nodes"
        )
        # As node A's certbot deploy hook records what it obtained.
        certificates.record_certificate(brand, acme.read_certificate(tmp_path / "cert.pem"), pems)
        brands.signal_brands_changed(session)
    # B's HAProxy takes it through its admin socket, then B's nginx at the end of its reload.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        served_certificate(b.ports[port], hostname) != expected for port in ("imaps", "https")
    ):
        time.sleep(0.3)
    # Node B never ordered it: it serves the copy it wrote from the database, on IMAPS and HTTPS.
    assert served_certificate(b.ports["imaps"], hostname) == expected
    assert served_certificate(b.ports["https"], hostname) == expected
    assert served_certificate(b.ports["imaps"], "other.test") != expected  # the default for other names


def test_an_admin_filter_set_on_a_works_on_b_and_deleting_on_a_removes_bs_mail(cluster) -> None:
    """The mailbox is on B; every request goes to A, whose web app has no such home on its disk."""
    a, b, secret = cluster
    local_part = _mailbox_on(a, secret, "b", ("fay", "gus", "hal"))
    address, path = f"{local_part}@nodes.test", f"/domains/nodes.test/mailboxes/{local_part}"
    with a.installation.sessions() as session:
        home = mailboxes.find_mailbox(session, address).storage_key
    status, body = api_call(a, secret, "PUT", f"{path}/filter", {"name": "invoices", "script": INVOICES})
    assert status == 200 and body["name"] == "invoices", body
    assert (b.settings.mail_root / home / ADMIN_SIEVE_SCRIPT).is_file()
    assert not (a.settings.mail_root / home).exists()
    status, body = api_call(a, secret, "GET", f"{path}/filter")
    assert status == 200 and body["name"] == "invoices" and "Invoices" in body["script"]
    # B's LMTP runs it: mail sent to A is filed on B, and read through A.
    subject = send(a, "billing@elsewhere.test", [address], subject=f"Your invoice {time.time_ns()}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and subject not in _folder_subjects(a, address, "Invoices"):
        time.sleep(0.2)
    assert subject in _folder_subjects(a, address, "Invoices")

    # The user's own rules (the webmail's settings) go through A's ManageSieve, proxied to B.
    with SieveClient.open(a.settings, address, PASSWORD) as client:
        client.store("letterhead", "keep;\n")
        client.activate("letterhead")
    assert (b.settings.mail_root / home / "sieve" / "letterhead.sieve").read_text() == "keep;\n"

    assert api_call(a, secret, "DELETE", f"{path}/filter")[0] == 204
    assert not (b.settings.mail_root / home / ADMIN_SIEVE_SCRIPT).exists()
    assert api_call(a, secret, "GET", f"{path}/filter")[1].get("name") is None

    assert (b.settings.mail_root / home / "Maildir").is_dir()
    assert api_call(a, secret, "DELETE", path)[0] == 204
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (b.settings.mail_root / home).exists():
        time.sleep(0.1)
    assert not (b.settings.mail_root / home).exists()  # B removed it, once A's deletion committed


def test_a_mailbox_full_on_b_is_refused_at_rcpt_on_a(cluster) -> None:
    """A's quota-status knows only A's mailboxes; the shared usage table speaks for B's."""
    a, b, secret = cluster
    local_part = _mailbox_on(a, secret, "b", ("ida", "jon", "kim"))
    address = f"{local_part}@nodes.test"
    subject = send(b, "someone@elsewhere.test", [address], size=80 * KB)
    assert wait_for_subject(b, address, PASSWORD, subject, timeout=20)
    with a.installation.transaction() as session:  # now below what it holds: full
        mailboxes.set_mailbox_quota(session, OPERATOR, mailboxes.find_mailbox(session, address), 50 * KB)
    deadline = time.monotonic() + 10
    refused = None
    while time.monotonic() < deadline and refused is None:
        try:
            send(a, "someone@elsewhere.test", [address])
        except smtplib.SMTPRecipientsRefused as error:
            refused = error.recipients[address]
        else:
            time.sleep(0.5)  # B's usage writer has not recorded the delivery yet
    assert refused is not None and refused[0] == 552 and b"Mailbox is full" in refused[1]
