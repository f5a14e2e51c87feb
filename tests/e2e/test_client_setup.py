"""Outlook's Autodiscover the way Outlook reaches it: plain HTTP to nginx, a 302 to HTTPS, a GET
there and then the POST, all through the deployed nginx in front of the app."""

from __future__ import annotations

import http.client
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from controlplane.runners.scratch import ScratchStack
from tests.factories import make_domain, make_tenant

pytestmark = pytest.mark.e2e

OUTLOOK_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
RESPONSE_NS = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
HOST = "autodiscover.setup.test"


@pytest.fixture(scope="module")
def deployed() -> Iterator[ScratchStack]:
    stack = ScratchStack()
    try:
        stack.start(web=True)
        with stack.installation.transaction() as session:
            make_domain(session, tenant=make_tenant(session, name="Setup"), name="setup.test")
        yield stack
    finally:
        stack.stop()


def _request(connection: http.client.HTTPConnection, method: str, path: str, body: str | None = None):
    connection.request(method, path, body=body, headers={"Host": HOST, "Content-Type": "text/xml"})
    response = connection.getresponse()
    return response.status, response.getheader("Location"), response.read()


@pytest.mark.parametrize("path", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"])
def test_outlook_is_redirected_with_a_302_then_answered_over_https(deployed: ScratchStack, path: str) -> None:
    plain = http.client.HTTPConnection("127.0.0.1", deployed.ports["http"], timeout=20)
    status, location, _ = _request(plain, "GET", path)
    assert (status, location) == (302, f"https://{HOST}:{deployed.ports['https']}{path}")
    # Any other plain-HTTP page keeps its permanent redirect.
    assert _request(plain, "GET", "/")[0] == 301

    # Only the redirect and the answers are under test here: the default certificate does
    # not name the autodiscover host (tests/e2e/test_brand_tls.py checks certificates).
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    secure = http.client.HTTPSConnection("127.0.0.1", deployed.ports["https"], timeout=20, context=context)
    status, _, body = _request(secure, "GET", path)
    assert status == 200 and ET.fromstring(body).findtext(f".//{RESPONSE_NS}ErrorCode") == "600"
    request = (
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
        "<Request><EMailAddress>ann@setup.test</EMailAddress><AcceptableResponseSchema>"
        "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
        "</AcceptableResponseSchema></Request></Autodiscover>"
    )
    status, _, body = _request(secure, "POST", path, request)
    assert status == 200
    protocols = {
        p.findtext(f"{OUTLOOK_NS}Type"): p for p in ET.fromstring(body).iter(f"{OUTLOOK_NS}Protocol")
    }
    assert protocols["IMAP"].findtext(f"{OUTLOOK_NS}Port") == str(deployed.ports["imaps"])
    assert protocols["SMTP"].findtext(f"{OUTLOOK_NS}Port") == str(deployed.ports["submissions"])
