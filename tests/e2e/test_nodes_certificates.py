"""A brand certificate on two mail nodes: node A orders it once (certbot against pebble), pebble's
HTTP-01 validation reaches node B (which never ordered anything) and B's web app answers it from
the shared database; B then serves the very certificate A obtained, by SNI, and asking B to renew
places no second order."""

from __future__ import annotations

import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from controlplane.daemons.postgres import PrivatePostgres
from controlplane.models import AcmeChallenge, Brand
from controlplane.runners.scratch import ScratchStack, free_ports
from controlplane.services import brands, certificates, domains, tenants
from controlplane.services.scope import OPERATOR
from tests import postgres_databases
from tests.acme_server import PLATFORM_ADDRESS, AcmeTestServer, TestDns, require_binaries
from tests.e2e.mailclient import served_certificate

pytestmark = pytest.mark.e2e

BRAND = "mail.nodebrand.test"


@pytest.fixture(scope="module")
def two_nodes(
    postgres_cluster: PrivatePostgres,
) -> Iterator[tuple[ScratchStack, ScratchStack, AcmeTestServer]]:
    require_binaries()
    database = postgres_databases.create(postgres_cluster)
    url = postgres_cluster.url(database)
    dns = TestDns([f"--host-record={BRAND},{PLATFORM_ADDRESS}"], zones=("nodebrand.test",))
    workdir = Path(tempfile.mkdtemp(prefix="lh-acme-", dir="/tmp"))
    acme_ports = tuple(free_ports(4))

    def settings(name: str) -> str:
        return (
            f'database_url = "{url}"\nnode_name = "{name}"\n'
            f'acme_directory = "https://127.0.0.1:{acme_ports[0]}/dir"\n'
            f'acme_ca_bundle = "{workdir / "pebble-tls.pem"}"\n'
            'acme_email = "operator@letterhead.test"\n'
            f'dns_resolver = "{dns.address}"\nplatform_addresses = "{PLATFORM_ADDRESS}"\n'
        )

    a = ScratchStack(extra_settings=settings("a"))
    b = ScratchStack(extra_settings=settings("b"))
    acme = None
    try:
        # pebble validates on node B's HTTP port: B must answer for A's order.
        acme = AcmeTestServer(workdir, http_port=b.ports["http"], ports=acme_ports)  # type: ignore[arg-type]
        a.start(web=False)  # the oldest node: it orders
        b.start(web=True)
        yield a, b, acme
    finally:
        b.stop()
        a.stop()
        if acme is not None:
            acme.stop()
        dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        postgres_databases.drop(postgres_cluster, database)


def test_a_certificate_ordered_on_a_is_validated_through_b_and_served_by_b(two_nodes) -> None:
    a, b, acme = two_nodes
    with a.installation.transaction() as session:
        tenant = tenants.create_tenant(session, OPERATOR, name="Brand owner", storage_pool_bytes=1024 * 1024)
        domain = domains.create_domain(
            session, OPERATOR, tenant=tenant, name="nodebrand.test", max_mailboxes=5, max_aliases=5
        )
        brand = brands.create_brand(
            session, OPERATOR, a.settings, tenant=tenant, hostname=BRAND, name="Nodes"
        )
        brands.set_domain_brand(session, OPERATOR, domain, brand)
    (outcome,) = certificates.renew_certificates(a.installation, hostnames=[BRAND])
    assert outcome.result == "issued", outcome.message
    assert acme.issued_count() == 1
    with a.installation.sessions() as session:
        chain = session.scalar(select(Brand.cert_chain_pem).where(Brand.hostname == BRAND))
        # certbot's cleanup hook forgot the answer.
        assert session.scalar(select(func.count()).select_from(AcmeChallenge)) == 0
    expected = ssl.PEM_cert_to_DER_cert(chain)
    # B's HAProxy takes it through its admin socket, then B's nginx at the end of its reload.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        served_certificate(b.ports[port], BRAND) != expected for port in ("imaps", "https")
    ):
        time.sleep(0.3)
    assert served_certificate(b.ports["imaps"], BRAND) == expected
    assert served_certificate(b.ports["https"], BRAND) == expected

    # Node B holds the certificate through the database: it orders nothing itself.
    (on_b,) = certificates.renew_certificates(b.installation, hostnames=[BRAND])
    assert on_b.result in ("deferred", "current"), on_b.message
    assert acme.issued_count() == 1
