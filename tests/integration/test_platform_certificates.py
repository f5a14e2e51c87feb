"""The platform host's certificate and the setup names of domains without a brand, through the
real ACME flow (certbot, pebble, HTTP-01 answered by the stack's nginx; DNS from dnsmasq).

What a mail client sees: before, the self-signed certificate and `letterhead status` saying so;
after, pebble's certificate served by default on HTTPS, IMAPS and SMTP, and each tenant's setup
names in certificates that name no other tenant's domain.
"""

from __future__ import annotations

import dataclasses
import json
import smtplib
import socket
import ssl
from collections.abc import Iterator

import pytest
from cryptography import x509
from sqlalchemy import select

from controlplane.certs import acme
from controlplane.models import PlatformCertificate
from controlplane.runners import health
from controlplane.runners.scratch import ScratchStack
from controlplane.services import certificates, domains, tenants
from controlplane.services.scope import OPERATOR
from tests.acme_server import AcmeTestServer, TestDns, branded_stack
from tests.commands import letterhead

pytestmark = pytest.mark.integration

PLATFORM_HOST = "mail.letterhead.test"
RECORDS = [
    f"--host-record={PLATFORM_HOST},127.0.0.1",
    # Tenant Alpha: one domain with every setup name, one with MTA-STS only, one with none.
    "--host-record=autoconfig.alpha-one.test,127.0.0.1",
    f"--cname=autodiscover.alpha-one.test,{PLATFORM_HOST}",
    "--host-record=mta-sts.alpha-one.test,127.0.0.1",
    "--host-record=mta-sts.alpha-two.test,127.0.0.1",
    # Tenant Beta's domain.
    "--host-record=autoconfig.beta.test,127.0.0.1",
    "--host-record=mta-sts.beta.test,127.0.0.1",
    # A domain Beta adds later.
    "--host-record=mta-sts.beta-two.test,127.0.0.1",
]
ZONES = (
    "letterhead.test",
    "alpha-one.test",
    "alpha-two.test",
    "alpha-none.test",
    "beta.test",
    "beta-two.test",
)


@dataclasses.dataclass
class World:
    stack: ScratchStack
    acme: AcmeTestServer
    dns: TestDns
    tenant_ids: dict[str, int]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with branded_stack(RECORDS, zones=ZONES) as (stack, acme_server, dns):
        tenant_ids = {}
        with stack.installation.transaction() as session:
            for name, domain_names in (
                ("Alpha", ("alpha-one.test", "alpha-two.test", "alpha-none.test")),
                ("Beta", ("beta.test",)),
            ):
                tenant = tenants.create_tenant(session, OPERATOR, name=name, storage_pool_bytes=1000 * 1024)
                for domain_name in domain_names:
                    domains.create_domain(
                        session, OPERATOR, tenant=tenant, name=domain_name, max_mailboxes=5, max_aliases=5
                    )
                session.flush()
                tenant_ids[name] = tenant.id
        yield World(stack, acme_server, dns, tenant_ids)


def presented(world: World, port_name: str, server_name: str | None) -> x509.Certificate:
    """The certificate a client verifying against pebble's root is given (None: no SNI at all)."""
    context = ssl.create_default_context(cadata=world.acme.root_certificate())
    if server_name is None:
        context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", world.stack.ports[port_name]), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def names_of(certificate: x509.Certificate) -> set[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


def test_until_issued_the_platform_host_is_self_signed_and_status_says_so(world: World) -> None:
    report = health.check(world.stack.installation)

    assert report.platform_certificate.self_signed
    assert any("self-signed" in note for note in report.notes)
    with pytest.raises(ssl.SSLCertVerificationError):
        presented(world, "https", PLATFORM_HOST)


def test_the_platform_host_gets_its_certificate_and_every_service_serves_it(world: World) -> None:
    before = world.acme.issued_count()

    outcomes = {o.hostname: o for o in certificates.renew_certificates(world.stack.installation)}

    assert outcomes[PLATFORM_HOST].result == "issued", outcomes[PLATFORM_HOST].message
    assert world.acme.issued_count() == before + 3  # the platform host, Alpha's and Beta's setup names
    # Verified against pebble's root: HTTPS and IMAPS by SNI, and IMAPS with no SNI at all
    # (the default certificate), SMTP after STARTTLS.
    for port_name, server_name in (("https", PLATFORM_HOST), ("imaps", PLATFORM_HOST), ("imaps", None)):
        assert names_of(presented(world, port_name, server_name)) == {PLATFORM_HOST}, (port_name, server_name)
    context = ssl.create_default_context(cadata=world.acme.root_certificate())
    with smtplib.SMTP(
        "127.0.0.1", world.stack.ports["smtp"], local_hostname="client.test", timeout=10
    ) as smtp:
        smtp._host = PLATFORM_HOST  # the name the certificate is checked against
        smtp.starttls(context=context)
        assert names_of(x509.load_der_x509_certificate(smtp.sock.getpeercert(binary_form=True))) == {
            PLATFORM_HOST
        }

    report = health.check(world.stack.installation)
    assert not report.platform_certificate.self_signed
    assert not any("self-signed" in note for note in report.notes)
    status = letterhead(world.stack.home, "status", "--json")
    assert json.loads(status.stdout)["platform_certificate_self_signed"] is False


def test_setup_names_are_grouped_per_tenant_and_never_name_another_tenants_domains(world: World) -> None:
    alpha, beta = world.tenant_ids["Alpha"], world.tenant_ids["Beta"]
    with world.stack.installation.sessions() as session:
        groups = {
            c.lineage: (c.tenant_id, c.cert_status, c.cert_names.split())
            for c in session.scalars(select(PlatformCertificate).where(PlatformCertificate.kind == "setup"))
        }
    # Only the names that lead here: autodiscover.alpha-two and all of alpha-none are left out.
    assert groups == {
        f"setup-t{alpha}-1": (
            alpha,
            "issued",
            ["autoconfig.alpha-one.test", "autodiscover.alpha-one.test", "mta-sts.alpha-one.test",
             "mta-sts.alpha-two.test"],
        ),
        f"setup-t{beta}-1": (beta, "issued", ["autoconfig.beta.test", "mta-sts.beta.test"]),
    }  # fmt: skip
    alpha_served = names_of(presented(world, "https", "mta-sts.alpha-two.test"))
    beta_served = names_of(presented(world, "https", "autoconfig.beta.test"))
    assert alpha_served == set(groups[f"setup-t{alpha}-1"][2])
    assert beta_served == {"autoconfig.beta.test", "mta-sts.beta.test"}
    assert not any("beta" in name for name in alpha_served)
    assert not any("alpha" in name for name in beta_served)
    # The lineages are named after the tenant's number, never a customer's domain.
    assert sorted(n for n in acme.lineage_names(world.stack.settings) if n.startswith("setup-")) == sorted(
        groups
    )


def test_a_second_run_orders_nothing_and_a_new_domain_reorders_only_its_tenants_group(world: World) -> None:
    alpha_group, beta_group = (f"setup-t{world.tenant_ids[name]}-1" for name in ("Alpha", "Beta"))
    before = world.acme.issued_count()
    outcomes = certificates.renew_certificates(world.stack.installation)
    assert world.acme.issued_count() == before, outcomes
    assert {o.result for o in outcomes} == {"current"}, outcomes

    with world.stack.installation.transaction() as session:
        tenant = tenants.get_tenant(session, OPERATOR, "Beta")
        domains.create_domain(
            session, OPERATOR, tenant=tenant, name="beta-two.test", max_mailboxes=5, max_aliases=5
        )
    outcomes = {o.hostname: o.result for o in certificates.renew_certificates(world.stack.installation)}

    assert world.acme.issued_count() == before + 1
    assert (outcomes[beta_group], outcomes[alpha_group], outcomes[PLATFORM_HOST]) == (
        "renewed",
        "current",
        "current",
    )
    assert names_of(presented(world, "https", "mta-sts.beta-two.test")) == {
        "autoconfig.beta.test", "mta-sts.beta.test", "mta-sts.beta-two.test"
    }  # fmt: skip


def test_status_lists_the_platform_certificates(world: World) -> None:
    rows = json.loads(letterhead(world.stack.home, "certs", "status", "--json").stdout)
    states = {row["brand"]: row["state"] for row in rows}
    assert states[PLATFORM_HOST] == "issued"
    assert states[f"setup-t{world.tenant_ids['Alpha']}-1"] == "issued"
