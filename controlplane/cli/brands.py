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


IMAGE_OPTIONS = (("logo", "logo"), ("logo_dark", "logo-dark"), ("favicon", "favicon"))
TEXT_OPTIONS = (("accent_colour", "accent"), ("page_title", "title"), ("footer_text", "footer"))


@brand.command("update")
@click.argument("hostname")
@click.option("--name", default=None, help="A new brand name.")
@click.option("--support-url", default=None, metavar="URL", help="The support link pages show.")
@click.option("--no-support-url", is_flag=True, help="Remove the support link.")
@click.option("--accent", default=None, metavar="#RRGGBB", help="The accent colour of buttons and badges.")
@click.option("--title", default=None, help="The browser tab's title (instead of the brand name).")
@click.option("--footer", default=None, help="A short line of text at the foot of every page.")
@click.option("--no-accent", is_flag=True, help="Back to the platform's accent colour.")
@click.option("--no-title", is_flag=True, help="Remove the page title.")
@click.option("--no-footer", is_flag=True, help="Remove the footer text.")
@click.option("--logo", type=click.File("rb"), default=None, metavar="FILE",
              help="PNG, JPEG, WebP or SVG (made safe) of at most 256 KB.")  # fmt: skip
@click.option(
    "--logo-dark", type=click.File("rb"), default=None, metavar="FILE", help="The logo on dark pages."
)
@click.option(
    "--favicon", type=click.File("rb"), default=None, metavar="FILE", help="The browser tab's icon."
)
@click.option("--no-logo", is_flag=True, help="Remove the logo.")
@click.option("--no-logo-dark", is_flag=True, help="Remove the logo for dark pages.")
@click.option("--no-favicon", is_flag=True, help="Remove the favicon (the logo serves).")
@json_option
@handles_errors
def brand_update(hostname: str, name: str | None, support_url: str | None, no_support_url: bool,
                 as_json: bool, **look: Any) -> None:  # fmt: skip
    """Rename the brand HOSTNAME or change its look: support link, accent colour, page title,
    footer, logo, logo for dark pages and favicon."""
    if support_url is not None and no_support_url:
        fail("Give --support-url or --no-support-url, not both.")
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if support_url is not None or no_support_url:
        changes["support_url"] = None if no_support_url else support_url
    for field, option in TEXT_OPTIONS:
        value, cleared = look[option], look[f"no_{option}"]
        if value is not None and cleared:
            fail(f"Give --{option} or --no-{option}, not both.")
        if value is not None or cleared:
            changes[field] = None if cleared else value
    images = {}
    for field, option in IMAGE_OPTIONS:
        upload, removed = look[field], look[f"no_{field}"]
        if upload is not None and removed:
            fail(f"Give --{option} or --no-{option}, not both.")
        if upload is not None or removed:
            # One byte past the limit is enough for the service to refuse it.
            images[field] = None if removed else upload.read(brands.MAX_LOGO_BYTES + 1)
    if not changes and not images:
        fail("Nothing to change: give --name, --support-url, --accent, --title, --footer, --logo, "
             "--logo-dark or --favicon (or a --no- one).")  # fmt: skip
    installation = current_installation()
    with installation.transaction() as session:
        target = brands.get_brand_by_hostname(session, OPERATOR, hostname)
        if changes:
            brands.update_brand(session, OPERATOR, installation.settings, target, **changes)
        for field, data in images.items():
            brands.set_brand_image(session, OPERATOR, target, field, data)
        emit(
            {
                **brand_row(target), "support_url": target.support_url or "", "logo": target.logo_type or "",
                "logo_dark": target.logo_dark_type or "", "favicon": target.favicon_type or "",
                "accent_colour": target.accent_colour or "", "page_title": target.page_title or "",
                "footer_text": target.footer_text or "",
            },
            as_json,
        )  # fmt: skip


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
