"""Brand certificates through a real ACME flow: certbot orders from pebble, pebble validates the
HTTP-01 challenge against the stack's nginx, and Letterhead decides from a real DNS server
(dnsmasq) which names to order. Nothing is faked: pebble's log counts the certificates issued.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from sqlalchemy import select

from cli import main as letterhead
from controlplane.certs import acme
from controlplane.daemons import haproxy
from controlplane.daemons.process import wait_until
from controlplane.models import Brand
from controlplane.models.base import utcnow
from controlplane.runners import periodic
from controlplane.runners.scratch import ScratchStack
from controlplane.runtime import Installation
from controlplane.services import brands, certificates, configuration, domains, tenants
from controlplane.services.scope import OPERATOR
from tests.acme_server import AcmeTestServer, TestDns, branded_stack

pytestmark = pytest.mark.integration

RECORDS = [
    "--host-record=mail.brand.test,127.0.0.1",
    "--cname=autoconfig.brand.test,mail.brand.test",
    "--host-record=mta-sts.brand.test,127.0.0.1",
    # autodiscover.brand.test is missing: it is left out of the certificate.
    "--host-record=autoconfig.more.test,127.0.0.1",
    # mail.nodns.test has no record at all.
    "--host-record=mail.bad.test,127.0.0.1",
    "--host-record=mail.short.test,127.0.0.1",
    "--host-record=mail.later.test,127.0.0.1",
]
ZONES = ("brand.test", "more.test", "nodns.test", "bad.test", "short.test", "later.test")


@dataclasses.dataclass
class World:
    stack: ScratchStack
    acme: AcmeTestServer
    dns: TestDns

    @property
    def installation(self) -> Installation:
        return self.stack.installation


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with branded_stack(RECORDS, zones=ZONES) as (stack, acme_server, dns):
        with stack.installation.transaction() as session:
            tenants.create_tenant(session, OPERATOR, name="Reseller", storage_pool_bytes=1000 * 1024)
        yield World(stack, acme_server, dns)


def add_brand(world: World, hostname: str, *domain_names: str) -> None:
    with world.installation.transaction() as session:
        tenant = tenants.get_tenant(session, OPERATOR, "Reseller")
        brand = brands.create_brand(
            session, OPERATOR, world.stack.settings, tenant=tenant, hostname=hostname, name=hostname
        )
        for name in domain_names:
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name=name, max_mailboxes=5, max_aliases=5
            )
            brands.set_domain_brand(session, OPERATOR, domain, brand)


def use_brand(world: World, domain_name: str, hostname: str) -> None:
    with world.installation.transaction() as session:
        tenant = tenants.get_tenant(session, OPERATOR, "Reseller")
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name=domain_name, max_mailboxes=5, max_aliases=5
        )
        brand = session.scalar(select(Brand).where(Brand.hostname == hostname))
        brands.set_domain_brand(session, OPERATOR, domain, brand)


def brand_state(world: World, hostname: str) -> Brand:
    with world.installation.sessions() as session:
        brand = session.scalar(select(Brand).where(Brand.hostname == hostname))
        session.expunge(brand)
        return brand


def served_certificate(
    world: World, server_name: str, root: str | None = None, port_name: str = "https"
) -> x509.Certificate:
    """The certificate presented (HTTPS by nginx unless said) for this SNI name, verified
    against pebble's root."""
    context = ssl.create_default_context(cadata=root or world.acme.root_certificate())
    with (
        socket.create_connection(("127.0.0.1", world.stack.ports[port_name]), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def certbot_log(world: World) -> str:
    return acme.certbot_log_file(world.stack.settings).read_text(errors="replace")


def test_a_brand_certificate_is_issued_through_http01_answered_by_nginx(world: World) -> None:
    add_brand(world, "mail.brand.test", "brand.test")
    before = world.acme.issued_count()

    (outcome,) = certificates.renew_certificates(world.installation, hostnames=["mail.brand.test"])

    assert outcome.result == "issued", outcome.message
    assert world.acme.issued_count() == before + 1
    fullchain, _ = acme.certificate_paths(world.stack.settings, "mail.brand.test")
    info = acme.read_certificate(fullchain)
    # Only the names that lead to the platform: autodiscover.brand.test has no record.
    assert info.names == ("autoconfig.brand.test", "mail.brand.test", "mta-sts.brand.test")
    assert "Pebble" in info.issuer
    brand = brand_state(world, "mail.brand.test")
    assert brand.cert_status == "issued"
    assert brand.cert_names == "mail.brand.test autoconfig.brand.test mta-sts.brand.test"
    assert brand.cert_not_after == info.not_after
    assert (brand.cert_error, brand.cert_failures, brand.cert_next_attempt_at) == ("", 0, None)
    # certbot ran the deploy hook, which published the certificate: nginx serves it by SNI.
    assert "Serving the certificate of mail.brand.test" in certbot_log(world)
    served = served_certificate(world, "mta-sts.brand.test")
    assert served.not_valid_after_utc == info.not_after


def test_reapplying_the_configuration_never_orders_a_certificate_again(world: World) -> None:
    before = world.acme.issued_count()
    with world.installation.transaction() as session:
        assert (
            configuration.apply_current_configuration(session, world.stack.settings, force=True).status
            == "live"
        )

    outcomes = certificates.renew_certificates(world.installation, hostnames=["mail.brand.test"])

    assert [(o.hostname, o.result) for o in outcomes] == [("mail.brand.test", "current")]
    assert world.acme.issued_count() == before


def test_a_brand_whose_host_does_not_resolve_waits_for_dns_and_orders_nothing(world: World) -> None:
    add_brand(world, "mail.nodns.test")
    log_before, issued_before = certbot_log(world), world.acme.issued_count()

    (outcome,) = certificates.renew_certificates(world.installation, hostnames=["mail.nodns.test"])

    assert outcome.result == "waiting_dns"
    assert "mail.nodns.test has no A or AAAA record" in outcome.message
    brand = brand_state(world, "mail.nodns.test")
    assert (brand.cert_status, brand.cert_names) == ("waiting_dns", "")
    assert "mail.nodns.test has no A or AAAA record: point it at 127.0.0.1" in brand.cert_error
    assert certbot_log(world) == log_before  # certbot never ran
    assert world.acme.issued_count() == issued_before
    assert acme.current_certificate(world.stack.settings, "mail.nodns.test") is None


def test_a_failed_validation_is_shown_and_backs_off_without_calling_certbot_again(world: World) -> None:
    add_brand(world, "mail.bad.test")
    # Letterhead's DNS says the host is ours, but the ACME server reaches it where nothing listens.
    world.acme.point("mail.bad.test", "127.0.0.2")
    started = utcnow()

    (outcome,) = certificates.renew_certificates(world.installation, hostnames=["mail.bad.test"])

    assert outcome.result == "failed"
    brand = brand_state(world, "mail.bad.test")
    assert brand.cert_status == "failed" and brand.cert_failures == 1
    assert "mail.bad.test" in brand.cert_error and "127.0.0.2" in brand.cert_error
    assert "connection refused" in brand.cert_error
    assert "Saving debug log" not in brand.cert_error and len(brand.cert_error) <= acme.MAX_ERROR_CHARS
    assert started + dt.timedelta(minutes=59) < brand.cert_next_attempt_at
    assert brand.cert_next_attempt_at < utcnow() + dt.timedelta(minutes=61)

    log_before = certbot_log(world)
    result = CliRunner().invoke(letterhead, ["certs", "renew", "--json"], env=_env(world))
    assert result.exit_code == 0, result.output
    by_host = {row["hostname"]: row for row in json.loads(result.output)}
    assert by_host["mail.bad.test"]["result"] == "backing_off"
    assert "connection refused" in by_host["mail.bad.test"]["message"]
    assert by_host["mail.brand.test"]["result"] == "current"  # the other brands are unaffected
    assert certbot_log(world) == log_before  # certbot was not called again
    assert brand_state(world, "mail.bad.test").cert_failures == 1

    status = CliRunner().invoke(letterhead, ["certs", "status", "--json"], env=_env(world))
    rows = {row["brand"]: row for row in json.loads(status.output)}
    assert rows["mail.bad.test"]["state"] == "failed"
    assert rows["mail.bad.test"]["next_attempt"] and "127.0.0.2" in rows["mail.bad.test"]["error"]
    assert rows["mail.brand.test"]["state"] == "issued"


def test_names_added_to_a_brand_are_ordered_once_within_the_per_run_cap(world: World) -> None:
    use_brand(world, "more.test", "mail.brand.test")
    issued_before = world.acme.issued_count()

    deferred = certificates.renew_certificates(
        world.installation, hostnames=["mail.brand.test"], max_orders=0
    )
    assert [o.result for o in deferred] == ["deferred"]
    assert world.acme.issued_count() == issued_before

    (outcome,) = certificates.renew_certificates(world.installation, hostnames=["mail.brand.test"])
    assert outcome.result == "renewed", outcome.message
    assert world.acme.issued_count() == issued_before + 1
    brand = brand_state(world, "mail.brand.test")
    assert "autoconfig.more.test" in brand.cert_names.split()
    assert served_certificate(world, "autoconfig.more.test").not_valid_after_utc == brand.cert_not_after

    (again,) = certificates.renew_certificates(world.installation, hostnames=["mail.brand.test"])
    assert again.result == "current"
    assert world.acme.issued_count() == issued_before + 1


def test_a_certificate_near_expiry_is_renewed_and_served_at_once(world: World, tmp_path: Path) -> None:
    # A second ACME server whose certificates live 10 days: due for renewal from the start.
    short_lived = AcmeTestServer(
        tmp_path / "pebble", http_port=world.stack.ports["http"], validity_seconds=864000
    )
    settings = dataclasses.replace(
        world.stack.settings,
        acme_directory=short_lived.directory_url,
        acme_ca_bundle=str(short_lived.ca_bundle),
    )
    installation = Installation(settings)
    try:
        add_brand(world, "mail.short.test")
        (first,) = certificates.renew_certificates(installation, hostnames=["mail.short.test"])
        assert first.result == "issued", first.message
        issued = brand_state(world, "mail.short.test").cert_not_after
        assert issued - utcnow() < certificates.RENEW_BEFORE
        root = short_lived.root_certificate()
        served_before = served_certificate(world, "mail.short.test", root)
        assert served_certificate(world, "mail.short.test", root, "imaps") == served_before
        assert served_certificate(world, "mail.short.test", root, "submissions") == served_before

        haproxy_workers = haproxy.worker_pids(world.stack.settings)
        assert haproxy_workers

        (renewed,) = certificates.renew_certificates(installation, hostnames=["mail.short.test"])

        assert renewed.result == "renewed", renewed.message
        assert short_lived.issued_count() == 2
        served_after = served_certificate(world, "mail.short.test", root)
        assert served_after.serial_number != served_before.serial_number
        # The renewed file keeps its path: HAProxy loaded it again through its admin socket, with
        # no reload (which would have started new workers).
        for port in ("imaps", "pop3s"):
            assert served_certificate(world, "mail.short.test", root, port) == served_after
        assert haproxy.worker_pids(world.stack.settings) == haproxy_workers
        # Postfix reads its SNI map at each handshake: the renewed chain was republished.
        assert served_certificate(world, "mail.short.test", root, "submissions") == served_after
    finally:
        installation.dispose()
        short_lived.stop()


def test_the_certificate_of_a_removed_brand_is_deleted(world: World) -> None:
    assert "mail.short.test" in acme.lineage_names(world.stack.settings)
    with world.installation.transaction() as session:
        brand = session.scalar(select(Brand).where(Brand.hostname == "mail.short.test"))
        brands.delete_brand(session, OPERATOR, brand)

    outcomes = certificates.renew_certificates(world.installation)

    assert ("mail.short.test", "removed") in [(o.hostname, o.result) for o in outcomes]
    assert "mail.short.test" not in acme.lineage_names(world.stack.settings)
    assert acme.current_certificate(world.stack.settings, "mail.short.test") is None


def test_the_periodic_runner_renews_certificates_and_checks_dns_until_stopped(world: World) -> None:
    add_brand(world, "mail.later.test", "later.test")
    settings = world.stack.settings

    periodic.start_periodic(settings)
    try:
        assert periodic.periodic_pid(settings) is not None
        assert wait_until(lambda: brand_state(world, "mail.later.test").cert_status == "issued", timeout=60)
        assert wait_until(
            lambda: brand_state(world, "mail.later.test").dns_checked_at is not None, timeout=30
        )
    finally:
        periodic.stop_periodic(settings)
    assert periodic.periodic_pid(settings) is None
    log = (settings.log_dir / periodic.LOG_FILE).read_text()
    assert "certificate mail.later.test: issued" in log
    assert "certificate mail.bad.test: backing_off" in log


def _env(world: World) -> dict[str, str]:
    return {"LETTERHEAD_HOME": str(world.stack.home)}
