"""`letterhead brand ...`: brands (server names and looks) and their DNS records."""

from __future__ import annotations

import sys
from typing import Any

import click

from controlplane.cli.common import current_installation, emit, fail, handles_errors, json_option
from controlplane.services import brand_dns, brands, domains, tenants
from controlplane.services.scope import OPERATOR


def brand_row(brand) -> dict[str, Any]:
    return {
        "hostname": brand.hostname,
        "name": brand.name,
        "tenant": brand.tenant.name,
        "shared": brand.shared,
        "domains": " ".join(sorted(d.name for d in brand.domains)),
        "certificate": brand.cert_status,
        "not_after": brand.cert_not_after or "",
    }


@click.group()
def brand() -> None:
    """Brands: the server name customers use (mail.customer.com), and its look."""


@brand.command("create")
@click.argument("hostname")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--name", required=True, help="The brand name pages show.")
@click.option("--support-url", default=None)
@click.option("--shared", is_flag=True, help="The tenant's brand for customers without their own.")
@json_option
@handles_errors
def brand_create(
    hostname: str, tenant_name: str, name: str, support_url: str | None, shared: bool, as_json: bool
) -> None:
    installation = current_installation()
    with installation.transaction() as session:
        made = brands.create_brand(
            session, OPERATOR, installation.settings, tenant=tenants.get_tenant(session, OPERATOR, tenant_name),
            hostname=hostname, name=name, support_url=support_url, shared=shared,
        )  # fmt: skip
        emit(brand_row(made), as_json)


@brand.command("update")
@click.argument("hostname")
@click.option("--name", default=None, help="A new brand name.")
@click.option("--support-url", default=None, metavar="URL", help="The support link pages show.")
@click.option("--no-support-url", is_flag=True, help="Remove the support link.")
@click.option(
    "--logo",
    type=click.File("rb"),
    default=None,
    metavar="FILE",
    help="A PNG, JPEG or GIF of at most 256 KB.",
)
@click.option("--no-logo", is_flag=True, help="Remove the logo.")
@json_option
@handles_errors
def brand_update(
    hostname: str, name: str | None, support_url: str | None, no_support_url: bool, logo, no_logo: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Rename the brand HOSTNAME, change its support link or set its logo."""
    if support_url is not None and no_support_url:
        fail("Give --support-url or --no-support-url, not both.")
    if logo is not None and no_logo:
        fail("Give --logo or --no-logo, not both.")
    if name is None and support_url is None and not no_support_url and logo is None and not no_logo:
        fail("Nothing to change: give --name, --support-url, --no-support-url, --logo or --no-logo.")
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if support_url is not None or no_support_url:
        changes["support_url"] = None if no_support_url else support_url
    installation = current_installation()
    with installation.transaction() as session:
        target = brands.get_brand_by_hostname(session, OPERATOR, hostname)
        if changes:
            brands.update_brand(session, OPERATOR, installation.settings, target, **changes)
        if logo is not None or no_logo:
            # One byte past the limit is enough for the service to refuse it.
            data = None if no_logo else logo.read(brands.MAX_LOGO_BYTES + 1)
            brands.set_brand_logo(session, OPERATOR, target, data)
        emit(
            {**brand_row(target), "support_url": target.support_url or "", "logo": target.logo_type or ""},
            as_json,
        )


@brand.command("list")
@click.option("--tenant", "tenant_name", required=True)
@json_option
@handles_errors
def brand_list(tenant_name: str, as_json: bool) -> None:
    with current_installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        emit([brand_row(b) for b in brands.list_brands(session, OPERATOR, owner)], as_json)


@brand.command("use")
@click.argument("domain_name")
@click.argument("hostname", required=False)
@handles_errors
def brand_use(domain_name: str, hostname: str | None) -> None:
    """Make DOMAIN use the brand HOSTNAME (none given: the platform's host)."""
    with current_installation().transaction() as session:
        target = domains.get_domain(session, OPERATOR, domain_name)
        chosen = brands.get_brand_by_hostname(session, OPERATOR, hostname) if hostname else None
        brands.set_domain_brand(session, OPERATOR, target, chosen)
    click.echo(f"{domain_name} now uses {hostname or 'the platform host'}.")


@brand.command("delete")
@click.argument("hostname")
@click.option("--yes", is_flag=True, help="Do not ask.")
@handles_errors
def brand_delete(hostname: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Delete the brand {hostname}? Its domains go back to the platform host.", abort=True)
    with current_installation().transaction() as session:
        brands.delete_brand(session, OPERATOR, brands.get_brand_by_hostname(session, OPERATOR, hostname))
    click.echo(f"Deleted {hostname}.")


@brand.command("dns")
@click.argument("domain_name")
@json_option
@handles_errors
def brand_dns_check(domain_name: str, as_json: bool) -> None:
    """Check DOMAIN's DNS records now: expected value, state, and what was found."""
    installation = current_installation()
    with installation.transaction() as session:
        target = domains.get_domain(session, OPERATOR, domain_name)
        report = brand_dns.check_domain_dns(session, OPERATOR, installation.settings, target)
        rows = [
            {"name": c.expected.name, "type": c.expected.type, "expected": c.expected.value,
             "state": c.state, "found": " ".join(c.found), "note": c.note}
            for c in report.checks
        ]  # fmt: skip
    # The note says why a record is wrong (an SPF record's fault in words) or how it was accepted.
    emit(rows, as_json, columns=("name", "type", "expected", "state", "found", "note"))
    if not as_json and not report.all_ok:
        sys.exit(2)
