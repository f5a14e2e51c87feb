"""A brand's certificate, issued by a real ACME flow (certbot and pebble, HTTP-01 answered by
nginx), is what every TLS service presents for the brand's names; any other name gets the
default certificate. Clients verify the chain against pebble's root and the name, as a mail
client would.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator

import pytest
from cryptography import x509

from controlplane.certs import acme
from controlplane.runners.scratch import ScratchStack
from controlplane.services import brands, certificates, domains, tenants
from controlplane.services.scope import OPERATOR
from tests.acme_server import AcmeTestServer, branded_stack

pytestmark = pytest.mark.e2e

BRAND = "mail.customer.test"
RECORDS = [f"--host-record={BRAND},127.0.0.1", f"--cname=autoconfig.customer.test,{BRAND}"]


@pytest.fixture(scope="module")
def issued() -> Iterator[tuple[ScratchStack, AcmeTestServer]]:
    with branded_stack(RECORDS, zones=("customer.test",)) as (stack, acme_server, _dns):
        with stack.installation.transaction() as session:
            tenant = tenants.create_tenant(session, OPERATOR, name="Reseller", storage_pool_bytes=1024 * 1024)
            domain = domains.create_domain(
                session, OPERATOR, tenant=tenant, name="customer.test", max_mailboxes=5, max_aliases=5
            )
            brand = brands.create_brand(
                session, OPERATOR, stack.settings, tenant=tenant, hostname=BRAND, name="Customer"
            )
            brands.set_domain_brand(session, OPERATOR, domain, brand)
        (outcome,) = certificates.renew_certificates(stack.installation, hostnames=[BRAND])
        assert outcome.result == "issued", outcome.message
        yield stack, acme_server


def _lines_until(sock: socket.socket, done: Callable[[bytes], bool]) -> bytes:
    received = b""
    while not done(received):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"The server closed the connection after {received!r}")
        received += chunk
    return received


def _smtp_starttls(sock: socket.socket) -> None:
    _lines_until(sock, lambda r: r.endswith(b"\r\n") and r.split(b"\r\n")[-2][3:4] == b" ")
    sock.sendall(b"EHLO client.test\r\n")
    reply = _lines_until(sock, lambda r: r.endswith(b"\r\n") and r.split(b"\r\n")[-2][3:4] == b" ")
    assert b"STARTTLS" in reply
    sock.sendall(b"STARTTLS\r\n")
    assert _lines_until(sock, lambda r: r.endswith(b"\r\n")).startswith(b"220")


def _imap_starttls(sock: socket.socket) -> None:
    _lines_until(sock, lambda r: r.endswith(b"\r\n"))
    sock.sendall(b"a1 STARTTLS\r\n")
    assert b"a1 OK" in _lines_until(sock, lambda r: b"a1 " in r and r.endswith(b"\r\n"))


def _pop3_stls(sock: socket.socket) -> None:
    _lines_until(sock, lambda r: r.endswith(b"\r\n"))
    sock.sendall(b"STLS\r\n")
    assert _lines_until(sock, lambda r: r.endswith(b"\r\n")).startswith(b"+OK")


# Port name and the plain-text dialogue that leads to TLS (None: TLS from the first byte).
SERVICES = {
    "smtp": _smtp_starttls,
    "submission": _smtp_starttls,
    "submissions": None,
    "imap": _imap_starttls,
    "imaps": None,
    "pop3": _pop3_stls,
    "pop3s": None,
    "https": None,
}
# Dovecot's STARTTLS ports serve the platform's certificate to every name: brands' certificates
# are chosen by HAProxy, which ends TLS for IMAPS and POP3S (what autoconfig names) but cannot
# for a protocol that starts in plain text.
BRANDED = [name for name in SERVICES if name not in ("imap", "pop3")]


def presented_certificate(
    stack: ScratchStack, port_name: str, server_name: str, context: ssl.SSLContext
) -> x509.Certificate:
    with socket.create_connection(("127.0.0.1", stack.ports[port_name]), timeout=10) as raw:
        starttls = SERVICES[port_name]
        if starttls is not None:
            starttls(raw)
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


@pytest.mark.parametrize("port_name", BRANDED)
@pytest.mark.parametrize("server_name", [BRAND, "autoconfig.customer.test"])
def test_every_tls_service_presents_the_brand_certificate_for_its_names(
    issued: tuple[ScratchStack, AcmeTestServer], port_name: str, server_name: str
) -> None:
    stack, pebble = issued
    # Verified as a client does: chain to the ACME server's root, and the name.
    context = ssl.create_default_context(cadata=pebble.root_certificate())
    fullchain, _ = acme.certificate_paths(stack.settings, BRAND)
    expected = x509.load_pem_x509_certificate(fullchain.read_bytes())

    presented = presented_certificate(stack, port_name, server_name, context)

    assert presented == expected


@pytest.mark.parametrize(
    ("port_name", "server_name"),
    [(name, "unknown.elsewhere.test") for name in SERVICES]
    # Dovecot's STARTTLS ports: the platform's certificate even for a brand's name.
    + [(name, BRAND) for name in SERVICES if name not in BRANDED],
)
def test_an_unknown_name_and_a_brand_on_starttls_get_the_default_certificate(
    issued: tuple[ScratchStack, AcmeTestServer], port_name: str, server_name: str
) -> None:
    stack, _ = issued
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    default = x509.load_pem_x509_certificate((stack.settings.certs_dir / "default.crt").read_bytes())

    presented = presented_certificate(stack, port_name, server_name, context)

    assert presented == default
