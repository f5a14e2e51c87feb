"""What Letterhead depends on outside the machine, failing under SMTP load: the DNS resolver stops
answering, then the ACME server. Each is named in words where the operator looks (`letterhead
certs renew`, `letterhead status`); nothing is backed off or forgotten for a resolver's silence;
the brand keeps its certificate; and every message accepted meanwhile reaches its mailbox.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from sqlalchemy import select

from controlplane.models import Brand
from controlplane.runners.scratch import ScratchStack
from controlplane.services import brands, certificates, domains, mailboxes, tenants
from controlplane.services.scope import OPERATOR
from tests.acme_server import AcmeTestServer, TestDns, branded_stack
from tests.commands import letterhead
from tests.e2e.load import PersistentSender, stored_message_ids

pytestmark = pytest.mark.e2e

KB = 1024
BRAND = "mail.outage.test"
RECORDS = [
    f"--host-record={BRAND},127.0.0.1",
    "--host-record=autoconfig.outage.test,127.0.0.1",
    "--host-record=autoconfig.later-outage.test,127.0.0.1",
]
ZONES = ("outage.test", "later-outage.test")
RECIPIENTS = ["ann@outage.test", "ben@outage.test"]


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[ScratchStack, AcmeTestServer, TestDns, str]]:
    with branded_stack(RECORDS, zones=ZONES) as (scratch, acme_server, dns):
        with scratch.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Outage", storage_pool_bytes=20_000 * KB)
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name="outage.test", max_mailboxes=5, max_aliases=5,
                max_mailbox_bytes=5000 * KB,
            )  # fmt: skip
            for address in RECIPIENTS:
                mailboxes.create_mailbox(
                    session, OPERATOR, domain=domain, local_part=address.split("@")[0],
                    quota_bytes=5000 * KB, password="outage password",
                )  # fmt: skip
            brand = brands.create_brand(
                session, OPERATOR, scratch.settings, tenant=tenant, hostname=BRAND, name="Outage"
            )
            brands.set_domain_brand(session, OPERATOR, domain, brand)
        outcomes = {
            o.hostname: o for o in certificates.renew_certificates(scratch.installation, hostnames=[BRAND])
        }
        assert outcomes[BRAND].result == "issued", outcomes[BRAND].message
        yield scratch, acme_server, dns, acme_server.root_certificate()


def brand_row(scratch: ScratchStack) -> Brand:
    with scratch.installation.sessions() as session:
        brand = session.scalar(select(Brand).where(Brand.hostname == BRAND))
        session.expunge(brand)
        return brand


def served_names(scratch: ScratchStack, root: str) -> set[str]:
    """What IMAPS presents for the brand host, verified against pebble's root."""
    context = ssl.create_default_context(cadata=root)
    with (
        socket.create_connection(("127.0.0.1", scratch.ports["imaps"]), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=BRAND) as tls,
    ):
        certificate = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    return set(
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    )


def all_delivered(scratch: ScratchStack, sender: PersistentSender) -> list[str]:
    """The accepted messages missing from the mailboxes after waiting for them."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not set(sender.accepted) <= set(stored_message_ids(scratch)):
        time.sleep(1)
    return sorted(set(sender.accepted) - set(stored_message_ids(scratch)))


def test_the_dns_resolver_down_is_named_and_changes_nothing(world) -> None:
    scratch, _, dns, root = world
    before = brand_row(scratch)
    sender = PersistentSender(scratch, RECIPIENTS)
    sender.start()
    try:
        dns.stop()
        renew = letterhead(scratch.home, "certs", "renew", "--json")
        checked = letterhead(scratch.home, "brand", "dns", "outage.test", "--json")
        # rspamd's SPF, DKIM and DMARC lookups now wait for the resolver's timeout: slower, not stopped.
        time.sleep(8)
    finally:
        sender.stop()
        # The resolver back on its port (the module's teardown stops it).
        dns.process = TestDns(RECORDS, zones=ZONES, port=dns.port).process
    outcomes = {row["hostname"]: row for row in json.loads(renew.stdout)}
    assert renew.returncode == 0, renew.stderr
    assert outcomes[BRAND]["result"] == "dns_unchecked"
    assert "did not answer" in outcomes[BRAND]["message"]
    assert "did not answer" in checked.stdout + checked.stderr
    # A resolver's silence is no failure of the brand: no backoff, its certificate kept and served.
    after = brand_row(scratch)
    assert (after.cert_status, after.cert_failures, after.cert_next_attempt_at) == (
        before.cert_status, before.cert_failures, before.cert_next_attempt_at,
    )  # fmt: skip
    assert BRAND in served_names(scratch, root)
    assert len(sender.accepted) >= 3, sender.failures[-3:]
    assert not all_delivered(scratch, sender)
    # The resolver back: the next run finds all as it was.
    outcomes = {o.hostname: o.result for o in certificates.renew_certificates(scratch.installation)}
    assert outcomes[BRAND] == "current"


def test_the_acme_server_failing_is_named_backed_off_and_the_certificate_kept(world) -> None:
    scratch, acme_server, dns, root = world
    # New names for the brand: an order is due, and the ACME server is gone.
    with scratch.installation.transaction() as session:
        tenant = tenants.get_tenant(session, OPERATOR, "Outage")
        later = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="later-outage.test", max_mailboxes=5, max_aliases=5
        )
        brands.set_domain_brand(
            session, OPERATOR, later, session.scalar(select(Brand).where(Brand.hostname == BRAND))
        )
    sender = PersistentSender(scratch, RECIPIENTS)
    sender.start()
    try:
        acme_server.stop()
        issue = letterhead(scratch.home, "certs", "issue", BRAND, "--json")
        status = letterhead(scratch.home, "status", "--json")
        time.sleep(3)
    finally:
        sender.stop()

    assert issue.returncode == 1
    (outcome,) = json.loads(issue.stdout)
    assert outcome["result"] == "failed"
    assert "Next attempt after" in outcome["message"]
    brand = brand_row(scratch)
    assert brand.cert_status == "failed" and brand.cert_failures == 1
    assert brand.cert_next_attempt_at is not None
    assert brand.cert_error.startswith(
        f"The ACME server {scratch.settings.acme_directory} refused the connection: no certificate could be ordered"
    ), brand.cert_error
    # The operator's status names the brand and why; the old certificate still serves.
    report = json.loads(status.stdout)
    assert status.returncode == 1
    assert any(
        BRAND in problem and "No certificate could be obtained" in problem for problem in report["problems"]
    )
    assert BRAND in served_names(scratch, root)
    # The backoff holds: the periodic run does not call the ACME server again.
    outcomes = {o.hostname: o.result for o in certificates.renew_certificates(scratch.installation)}
    assert outcomes[BRAND] == "backing_off"
    assert len(sender.accepted) >= 5, sender.failures[-3:]
    assert not all_delivered(scratch, sender)
