"""Mail-client autoconfiguration: Thunderbird, Outlook (POX Autodiscover) and Apple profiles."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

import pytest

from controlplane import create_app
from controlplane.services import brands, scope
from tests.factories import make_domain, make_tenant

AUTODISCOVER_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
RESPONSE_NS = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
MOBILESYNC = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"


def _autodiscover_request(address: str, schema: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        f'autodiscover/mobilesync/requestschema/2006"><Request><EMailAddress>{address}</EMailAddress>'
        f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>"
    )


def _error_of(response, namespace: str = RESPONSE_NS) -> tuple[str, str]:
    """(ErrorCode, Message) of an Autodiscover error document, whose Response is in `namespace`."""
    assert response.status_code == 200 and response.mimetype == "application/xml"
    root = ET.fromstring(response.data)
    assert root.tag == f"{RESPONSE_NS}Autodiscover"
    error = root.find(f"{namespace}Response/{namespace}Error")
    assert error is not None, response.data
    return error.findtext(f"{namespace}ErrorCode"), error.findtext(f"{namespace}Message")


@pytest.fixture
def client(settings, installation):
    with installation.transaction() as session:
        tenant = make_tenant(session)
        make_domain(session, tenant=tenant, name="bücher.test")
        sleeping = make_domain(session, tenant=tenant, name="off.test")
        sleeping.active = False
        branded = make_domain(session, tenant=tenant, name="customer.test")
        brand = brands.create_brand(
            session, scope.OPERATOR, settings, tenant=tenant, hostname="mail.customer.test", name="Customer"
        )
        brands.set_domain_brand(session, scope.OPERATOR, branded, brand)
    app = create_app({"LETTERHEAD_SETTINGS": settings, "TESTING": True})
    yield app.test_client()
    app.extensions["letterhead"].dispose()


def test_thunderbird_gets_the_server_with_implicit_tls_first(client, settings) -> None:
    response = client.get("/mail/config-v1.1.xml?emailaddress=Ann@Bücher.test")
    assert response.status_code == 200 and response.mimetype == "application/xml"
    provider = ET.fromstring(response.data).find("emailProvider")
    assert provider.get("id") == "xn--bcher-kva.test" and provider.findtext("displayName") == "bücher.test"
    incoming = provider.findall("incomingServer")
    assert [(s.get("type"), s.findtext("port"), s.findtext("socketType")) for s in incoming][0] == (
        "imap", str(settings.ports["imaps"]), "SSL",
    )  # fmt: skip
    assert {s.findtext("hostname") for s in incoming} == {settings.hostname}
    outgoing = provider.findall("outgoingServer")
    assert (outgoing[0].findtext("port"), outgoing[0].findtext("socketType")) == (
        str(settings.ports["submissions"]), "SSL",
    )  # fmt: skip


def test_thunderbird_finds_the_domain_by_the_autoconfig_host_and_the_well_known_path(client) -> None:
    response = client.get(
        "/.well-known/autoconfig/mail/config-v1.1.xml", headers={"Host": "autoconfig.xn--bcher-kva.test"}
    )
    assert response.status_code == 200
    assert ET.fromstring(response.data).find("emailProvider").findtext("domain") == "xn--bcher-kva.test"


@pytest.mark.parametrize(
    "address", ["nobody@unknown.test", "ann@off.test", "no-at-sign", 'a"<x>@bücher.test', "a@b@bücher.test"]
)
def test_unknown_inactive_or_hostile_addresses_get_nothing(client, address: str) -> None:
    response = client.get("/mail/config-v1.1.xml", query_string={"emailaddress": address})
    assert response.status_code in (400, 404)
    assert b"<clientConfig" not in response.data


def test_outlook_autodiscover_answers_the_address_it_was_asked_about(client, settings) -> None:
    request = (
        '<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
        'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>ann@xn--bcher-kva.test</EMailAddress>'
        "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
        "</AcceptableResponseSchema></Request></Autodiscover>"
    )
    response = client.post("/autodiscover/autodiscover.xml", data=request, content_type="text/xml")
    assert response.status_code == 200
    protocols = ET.fromstring(response.data).iter(f"{AUTODISCOVER_NS}Protocol")
    found = {p.findtext(f"{AUTODISCOVER_NS}Type"): p for p in protocols}
    assert found["IMAP"].findtext(f"{AUTODISCOVER_NS}Port") == str(settings.ports["imaps"])
    assert found["SMTP"].findtext(f"{AUTODISCOVER_NS}LoginName") == "ann@xn--bcher-kva.test"


def test_autodiscover_refuses_what_it_cannot_read(client) -> None:
    assert client.post("/autodiscover/autodiscover.xml", data="<x/>").status_code == 400
    huge = "<EMailAddress>ann@xn--bcher-kva.test</EMailAddress>" + " " * 20_000
    assert client.post("/autodiscover/autodiscover.xml", data=huge).status_code == 400


@pytest.mark.parametrize("path", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"])
def test_a_get_on_the_autodiscover_url_answers_an_autodiscover_document_not_405(client, path) -> None:
    # Outlook GETs the URL it was redirected to before it POSTs there; Exchange answers 600.
    code, message = _error_of(client.get(path))
    assert code == "600" and "POST" in message


def test_an_activesync_request_gets_a_clear_refusal_in_the_mobilesync_error_format(client) -> None:
    response = client.post(
        "/autodiscover/autodiscover.xml",
        data=_autodiscover_request("ann@xn--bcher-kva.test", MOBILESYNC),
        content_type="text/xml",
    )
    code, message = _error_of(response, namespace=f"{{{MOBILESYNC}}}")
    assert code == "601" and "ActiveSync is not offered" in message
    assert b"<Protocol>" not in response.data and b"IMAP" in response.data  # says what to use instead


def test_a_response_schema_other_than_outlooks_is_refused_with_601(client) -> None:
    response = client.post(
        "/autodiscover/autodiscover.xml",
        data=_autodiscover_request("ann@xn--bcher-kva.test", "http://example.test/some/other/schema"),
    )
    assert _error_of(response)[0] == "601"


def test_apple_profile_installs_an_imap_account_over_tls(client, settings) -> None:
    response = client.get("/apple/mail.mobileconfig?emailaddress=ann@xn--bcher-kva.test")
    assert response.status_code == 200 and response.mimetype == "application/x-apple-aspen-config"
    profile = plistlib.loads(response.data)
    (account,) = profile["PayloadContent"]
    assert account["EmailAddress"] == "ann@xn--bcher-kva.test"
    assert (account["IncomingMailServerHostName"], account["IncomingMailServerPortNumber"]) == (
        settings.hostname, settings.ports["imaps"],
    )  # fmt: skip
    assert account["IncomingMailServerUseSSL"] and account["OutgoingMailServerUseSSL"]


def test_every_document_names_the_brand_host_of_a_branded_domain(client, settings) -> None:
    thunderbird = ET.fromstring(client.get("/mail/config-v1.1.xml?emailaddress=ann@customer.test").data)
    hosts = {s.findtext("hostname") for s in thunderbird.iter() if s.tag.endswith("Server")}
    assert hosts == {"mail.customer.test"}
    request = (
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
        "<Request><EMailAddress>ann@customer.test</EMailAddress></Request></Autodiscover>"
    )
    outlook = ET.fromstring(client.post("/autodiscover/autodiscover.xml", data=request).data)
    assert {e.text for e in outlook.iter(f"{AUTODISCOVER_NS}Server")} == {"mail.customer.test"}
    apple = plistlib.loads(client.get("/apple/mail.mobileconfig?emailaddress=ann@customer.test").data)
    account = apple["PayloadContent"][0]
    assert (
        account["IncomingMailServerHostName"] == account["OutgoingMailServerHostName"] == "mail.customer.test"
    )
    # The mail programs name the provider as the brand.
    assert thunderbird.find("emailProvider").findtext("displayName") == "Customer"
    assert apple["PayloadOrganization"] == "Customer" and account["EmailAccountDescription"].startswith(
        "Customer"
    )
    unbranded = ET.fromstring(client.get("/mail/config-v1.1.xml?emailaddress=ann@bücher.test").data)
    assert {s.findtext("hostname") for s in unbranded.iter() if s.tag.endswith("Server")} == {
        settings.hostname
    }


def test_the_mta_sts_policy_is_served_on_the_mta_sts_host_of_hosted_domains(client, settings) -> None:
    response = client.get("/.well-known/mta-sts.txt", headers={"Host": "mta-sts.customer.test"})
    assert response.status_code == 200 and response.mimetype == "text/plain"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "version: STSv1" and "mx: mail.customer.test" in lines and "mode: testing" in lines
    assert "mx: " + settings.hostname in client.get(
        "/.well-known/mta-sts.txt", headers={"Host": "mta-sts.xn--bcher-kva.test"}
    ).get_data(as_text=True)
    for host in ("mta-sts.unknown.test", "mta-sts.off.test", "mail.customer.test", "mta-sts.bad_host.test"):
        assert client.get("/.well-known/mta-sts.txt", headers={"Host": host}).status_code == 404


def test_two_accounts_of_one_domain_get_profiles_that_do_not_replace_each_other(client) -> None:
    ann = plistlib.loads(client.get("/apple/mail.mobileconfig?emailaddress=ann@customer.test").data)
    bob_response = client.get("/apple/mail.mobileconfig?emailaddress=bob@customer.test")
    bob = plistlib.loads(bob_response.data)
    assert ann["PayloadIdentifier"] != bob["PayloadIdentifier"]
    assert ann["PayloadUUID"] != bob["PayloadUUID"]
    assert ann["PayloadContent"][0]["PayloadIdentifier"] != bob["PayloadContent"][0]["PayloadIdentifier"]
    assert "bob-at-customer.test.mobileconfig" in bob_response.headers["Content-Disposition"]
    # The same account asked twice gets the same profile: installing again updates it.
    again = plistlib.loads(client.get("/apple/mail.mobileconfig?emailaddress=ann@customer.test").data)
    assert again["PayloadIdentifier"] == ann["PayloadIdentifier"]


def test_an_http01_answer_waiting_in_the_database_is_given_by_any_node(app, installation) -> None:
    from controlplane.errors import ValidationError
    from controlplane.services import certificates

    with installation.transaction() as session:
        certificates.store_challenge(session, "tok_EN-1", "tok_EN-1.thumb_print")
        for token, validation in [("../etc", "a.b"), ("t", "no dot"), ("t" * 256, "t.b"), ("t", "t.b\nX: y")]:
            with pytest.raises(ValidationError):
                certificates.store_challenge(session, token, validation)
    web = app.test_client()
    response = web.get("/.well-known/acme-challenge/tok_EN-1", headers={"Host": "mail.anything.test"})
    assert (response.status_code, response.mimetype, response.text) == (
        200,
        "text/plain",
        "tok_EN-1.thumb_print",
    )
    assert web.get("/.well-known/acme-challenge/unknown").status_code == 404
    with installation.transaction() as session:
        certificates.remove_challenge(session, "tok_EN-1")
    assert web.get("/.well-known/acme-challenge/tok_EN-1").status_code == 404
