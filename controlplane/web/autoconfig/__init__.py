"""Mail-client autoconfiguration: Thunderbird autoconfig, Microsoft Autodiscover (POX) and an
Apple configuration profile, each naming the domain's brand host (or the platform's) and
implicit-TLS ports first; and the MTA-STS policy of each domain.

Only hosted, active domains are answered; the address a client sends is validated before
it reaches a response, and every value is escaped by the XML/plist writers.
"""

from __future__ import annotations

import datetime as dt
import plistlib
import re
import uuid

from flask import Blueprint, Response, abort, render_template, request

from controlplane.errors import ValidationError
from controlplane.models import Domain
from controlplane.services import brand_dns, brands, certificates, domains
from controlplane.validation import domain_to_unicode, normalize_domain, split_address
from controlplane.web.access import allow
from controlplane.web.requests import current_settings, db

blueprint = Blueprint("autoconfig", __name__, template_folder="templates")
MAX_AUTODISCOVER_REQUEST = 10_000
_EMAIL_IN_REQUEST = re.compile(rb"<EMailAddress>\s*([^<\s]{1,320})\s*</EMailAddress>", re.IGNORECASE)
_SCHEMA_IN_REQUEST = re.compile(
    rb"<AcceptableResponseSchema>\s*([^<\s]{1,200})\s*</AcceptableResponseSchema>", re.IGNORECASE
)
OUTLOOK_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MOBILESYNC_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"


def _active_domain(domain_name: str) -> Domain:
    domain = domains.find_domain(db(), domain_name)
    if domain is None or not domain.in_service:
        abort(404)
    return domain


def _hosted(local_part: str, domain_name: str) -> tuple[str, str]:
    """(address, A-label domain) if the domain is hosted and active; 404 otherwise."""
    domain = _active_domain(domain_name)
    return f"{local_part}@{domain.name}", domain.name


def _address_from(text: str) -> tuple[str, str]:
    try:
        local_part, domain_name = split_address(text)
    except ValidationError:
        abort(400)
    return _hosted(local_part, domain_name)


def _provider_name(domain_name: str) -> str:
    """What a mail client calls the provider: the brand the domain wears, else the domain."""
    brand = _active_domain(domain_name).brand
    return brand.name if brand is not None else domain_to_unicode(domain_name)


def _server(domain_name: str) -> dict[str, object]:
    """Where the domain's users connect: its brand's host, or the platform's."""
    settings = current_settings()
    host = brands.server_hostname(settings, _active_domain(domain_name))
    return {"host": host, "ports": dict(settings.ports)}


@blueprint.get("/.well-known/acme-challenge/<token>")
@allow("public")
def acme_challenge(token: str):
    """An HTTP-01 answer another mail node's certbot is waiting on (nginx serves this node's own
    from its webroot first)."""
    answer = certificates.challenge_answer(db(), token)
    if answer is None:
        abort(404)
    return Response(answer, mimetype="text/plain")


@blueprint.get("/mail/config-v1.1.xml")
@blueprint.get("/.well-known/autoconfig/mail/config-v1.1.xml")
@allow("public")
def thunderbird():
    """Thunderbird asks with ?emailaddress=, or by the autoconfig.<domain> host it reached."""
    email = request.args.get("emailaddress", "")
    if email:
        address, domain_name = _address_from(email)
    else:
        host = (request.host or "").split(":")[0].lower()
        if not host.startswith("autoconfig."):
            abort(404)
        address, domain_name = None, _hosted("x", host.removeprefix("autoconfig."))[1]
    body = render_template(
        "autoconfig/config-v1.1.xml", domain=domain_name, display=_provider_name(domain_name),
        short_name=domain_to_unicode(domain_name), address=address, **_server(domain_name),
    )  # fmt: skip
    return Response(body, mimetype="application/xml")


def _autodiscover_error(code: int, message: str, response_schema: str | None = None) -> Response:
    """An Autodiscover error document: 600 for a request it cannot read, 601 for a response
    schema (a kind of account) it does not offer. Answered with HTTP 200, as Exchange does:
    the client reads the code, and the document shows it reached an Autodiscover service."""
    body = render_template(
        "autoconfig/autodiscover-error.xml", code=code, message=message, response_schema=response_schema,
        time=dt.datetime.now(dt.UTC).strftime("%H:%M:%S"),
    )  # fmt: skip
    return Response(body, mimetype="application/xml")


@blueprint.post("/autodiscover/autodiscover.xml")
@blueprint.post("/Autodiscover/Autodiscover.xml")
@allow("public")
def autodiscover():
    """Outlook's POX Autodiscover: the request names the address and the kind of answer it
    accepts; nothing else of it is read. Only the Outlook answer (IMAP and SMTP) exists here."""
    data = request.get_data(cache=False)[: MAX_AUTODISCOVER_REQUEST + 1]
    if len(data) > MAX_AUTODISCOVER_REQUEST:
        abort(400)
    schema = _SCHEMA_IN_REQUEST.search(data)
    wanted = schema.group(1).decode("ascii", errors="replace") if schema else OUTLOOK_SCHEMA
    if wanted == MOBILESYNC_SCHEMA:
        # A phone asking for Exchange ActiveSync: say plainly there is none, in the answer it
        # reads (MS-ASCMD's Autodiscover error), instead of settings it cannot use.
        return _autodiscover_error(
            601,
            "Exchange ActiveSync is not offered here: set the account up as IMAP and SMTP.",
            MOBILESYNC_SCHEMA,
        )
    if wanted != OUTLOOK_SCHEMA:
        return _autodiscover_error(
            601, "Only the Outlook response schema (IMAP and SMTP settings) is offered."
        )
    match = _EMAIL_IN_REQUEST.search(data)
    if match is None:
        abort(400)
    address, domain_name = _address_from(match.group(1).decode("ascii", errors="replace"))
    body = render_template("autoconfig/autodiscover.xml", address=address, **_server(domain_name))
    return Response(body, mimetype="application/xml")


@blueprint.get("/autodiscover/autodiscover.xml")
@blueprint.get("/Autodiscover/Autodiscover.xml")
@allow("public")
def autodiscover_probe():
    """A GET names no address: Outlook sends one to the URL it was redirected to before it
    POSTs there. Answer what Exchange answers, an Autodiscover "invalid request" document,
    which tells the client (or a person testing in a browser) the service is here."""
    return _autodiscover_error(
        600, "Invalid Request: Autodiscover answers a POST that names an EMailAddress."
    )


@blueprint.get("/apple/mail.mobileconfig")
@allow("public")
def apple_profile():
    """An Apple configuration profile a user downloads and installs (?emailaddress=)."""
    address, domain_name = _address_from(request.args.get("emailaddress", ""))
    server = _server(domain_name)
    ports = server["ports"]
    provider = _provider_name(domain_name)
    # One identifier per account: a phone replaces a profile with the same identifier, and two
    # accounts of one domain must live side by side.
    account_id = uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address}")
    identifier = f"com.letterhead.mail.{domain_name}.{account_id}"
    account = {
        "PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.account", "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, address)),
        "PayloadDisplayName": f"{provider}: {address}", "PayloadOrganization": provider,
        "EmailAccountDescription": f"{provider} ({address})", "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": address,
        "IncomingMailServerHostName": server["host"], "IncomingMailServerPortNumber": ports["imaps"],
        "IncomingMailServerUseSSL": True, "IncomingMailServerUsername": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": server["host"], "OutgoingMailServerPortNumber": ports["submissions"],
        "OutgoingMailServerUseSSL": True, "OutgoingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword", "OutgoingPasswordSameAsIncomingPassword": True,
    }  # fmt: skip
    profile = {
        "PayloadType": "Configuration", "PayloadVersion": 1, "PayloadIdentifier": identifier,
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, identifier)),
        "PayloadDisplayName": f"{provider} mail for {address}", "PayloadOrganization": provider,
        "PayloadContent": [account],
    }  # fmt: skip
    return Response(
        plistlib.dumps(profile),
        mimetype="application/x-apple-aspen-config",
        headers={
            "Content-Disposition": f'attachment; filename="{address.replace("@", "-at-")}.mobileconfig"'
        },
    )


@blueprint.get("/.well-known/mta-sts.txt")
@allow("public")
def mta_sts_policy():
    """RFC 8461: served on `mta-sts.<domain>` only, naming the domain's server host as its MX."""
    host = (request.host or "").split(":")[0].lower()
    if not host.startswith("mta-sts."):
        abort(404)
    try:
        domain = _active_domain(normalize_domain(host.removeprefix("mta-sts.")))
    except ValidationError:
        abort(404)
    return Response(brand_dns.mta_sts_policy(current_settings(), domain), mimetype="text/plain")
