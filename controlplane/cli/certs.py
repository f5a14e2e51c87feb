"""`letterhead certs ...`: certificates from the ACME server (brands', the platform host's and the
setup names' of domains without a brand)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from controlplane.cli.common import current_installation, emit, handles_errors, json_option
from controlplane.services import certificates, platform_certificates


def _certificate_row(brand) -> dict[str, Any]:
    return {
        "brand": brand.hostname,
        "state": brand.cert_status,
        "names": brand.cert_names,
        "expires": brand.cert_not_after.isoformat(timespec="minutes") if brand.cert_not_after else "",
        "failures": brand.cert_failures,
        "next_attempt": (
            brand.cert_next_attempt_at.isoformat(timespec="minutes") if brand.cert_next_attempt_at else ""
        ),
        "error": brand.cert_error,
    }


def _emit_outcomes(outcomes, as_json: bool) -> None:
    rows = [dataclasses.asdict(outcome) for outcome in outcomes]
    emit(rows, as_json, ("hostname", "result", "message"))
    if any(outcome.result == "failed" for outcome in outcomes):
        sys.exit(1)


@click.group()
def certs() -> None:
    """Brand certificates from the ACME server (Let's Encrypt by default), through certbot."""


@certs.command("status")
@json_option
@handles_errors
def certs_status(as_json: bool) -> None:
    """Each certificate: state, names served, expiry, last error and next attempt; the brands',
    then the platform host's and the setup names' (`setup-t<tenant>-<n>`: one tenant's domains)."""
    with current_installation().sessions() as session:
        rows = [_certificate_row(brand) for brand in certificates.list_brand_certificates(session)]
        rows += [
            _certificate_row(certificate)
            for certificate in platform_certificates.list_platform_certificates(session)
        ]
    emit(rows, as_json)


@certs.command("issue")
@click.argument("hostname")
@click.option(
    "--retry-now", is_flag=True, help="Ignore the backoff after a failure (after fixing its cause)."
)
@json_option
@handles_errors
def certs_issue(hostname: str, retry_now: bool, as_json: bool) -> None:
    """Obtain (or bring up to date) the certificate of the brand HOSTNAME (or the platform host) now."""
    _emit_outcomes(
        certificates.renew_certificates(current_installation(), hostnames=[hostname], retry_now=retry_now),
        as_json,
    )


@certs.command("renew")
@json_option
@handles_errors
def certs_renew(as_json: bool) -> None:
    """Order what is missing or due for every brand, the platform host and the setup names;
    meant to run periodically."""
    _emit_outcomes(certificates.renew_certificates(current_installation()), as_json)


@certs.command("deployed")
@click.option(
    "--lineage", envvar="RENEWED_LINEAGE", required=True, help="Set by certbot: the renewed lineage."
)
@handles_errors
def certs_deployed(lineage: str) -> None:
    """certbot's deploy hook: serve the brand's new certificate now."""
    click.echo(certificates.certificate_deployed(current_installation(), lineage))


@certs.command("challenge-put")
@click.option("--token", envvar="CERTBOT_TOKEN", required=True, help="Set by certbot.")
@click.option("--validation", envvar="CERTBOT_VALIDATION", required=True, help="Set by certbot.")
@handles_errors
def certs_challenge_put(token: str, validation: str) -> None:
    """certbot's auth hook on mail nodes: keep an HTTP-01 answer where every node gives it."""
    with current_installation().transaction() as session:
        certificates.store_challenge(session, token, validation)


@certs.command("challenge-clean")
@click.option("--token", envvar="CERTBOT_TOKEN", required=True, help="Set by certbot.")
@handles_errors
def certs_challenge_clean(token: str) -> None:
    """certbot's cleanup hook: forget the answer."""
    with current_installation().transaction() as session:
        certificates.remove_challenge(session, token)
