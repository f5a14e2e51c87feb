"""The `letterhead` command: thin wrappers that call the services and print the result.

Every command prints a readable table, or JSON with --json; errors go to stderr with
exit status 1.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from controlplane.daemons import apply as config_apply
from controlplane.daemons import postfix_log, sender_milter
from controlplane.daemons.process import DaemonError
from controlplane.errors import LetterheadError
from controlplane.logs.dovecot import AuthVerdicts
from controlplane.logs.ingest import ingest_file
from controlplane.render import render_all
from controlplane.runners import follower, stack
from controlplane.runners import periodic as periodic_runner
from controlplane.runtime import Installation
from controlplane.schema import upgrade_database
from controlplane.services import (
    admins,
    aliases,
    brand_dns,
    brands,
    certificates,
    configuration,
    domains,
    log_retention,
    mail_logs,
    mailboxes,
    passwords,
    storage,
    tenants,
    tokens,
    transfer,
)
from controlplane.services.scope import OPERATOR
from controlplane.settings import load_settings


def _installation() -> Installation:
    context = click.get_current_context()
    root = context.find_root()
    if "installation" not in root.meta:
        root.meta["installation"] = Installation(load_settings())
    return root.meta["installation"]


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


def handles_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LetterheadError as error:
            fail(error.message)
        except DaemonError as error:
            fail(str(error))

    return wrapper


def emit(rows: Sequence[dict[str, Any]] | dict[str, Any], as_json: bool, columns: Iterable[str] = ()) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    items = [rows] if isinstance(rows, dict) else list(rows)
    if not items:
        click.echo("(none)")
        return
    names = list(columns) or list(items[0])
    table = [[str(item.get(name, "")) for name in names] for item in items]
    widths = [max(len(name), *(len(row[i]) for row in table)) for i, name in enumerate(names)]
    click.echo("  ".join(name.upper().ljust(w) for name, w in zip(names, widths, strict=True)).rstrip())
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def size_option(*names: str, **kwargs: Any):
    return click.option(
        *names, callback=lambda _c, _p, v: None if v is None else storage.parse_size(v), **kwargs
    )


@click.group()
def main() -> None:
    """Letterhead: white-label mail hosting on Postfix and Dovecot."""


# --- tenants -------------------------------------------------------------------------------------


def tenant_row(session, tenant) -> dict[str, Any]:
    usage = storage.pool_usage(session, tenant)
    return {
        "name": tenant.name,
        "pool_bytes": tenant.storage_pool_bytes,
        "allocated_bytes": usage.allocated_bytes,
        "free_bytes": usage.free_bytes,
        "max_mailbox_bytes": tenant.max_mailbox_bytes,
        "active": tenant.active,
    }


@main.group()
def tenant() -> None:
    """Reseller accounts and their storage pools."""


@tenant.command("create")
@click.argument("name")
@size_option("--pool", required=True, help="Total storage for all mailboxes, e.g. 100GB.")
@size_option(
    "--max-mailbox",
    help=f"The plan's largest mailbox (default: {storage.format_bytes(tenants.PLAN_LARGEST_MAILBOX_BYTES)}).",
)
@json_option
@handles_errors
def tenant_create(name: str, pool: int, max_mailbox: int | None, as_json: bool) -> None:
    plan = {} if max_mailbox is None else {"max_mailbox_bytes": max_mailbox}
    with _installation().transaction() as session:
        created = tenants.create_tenant(session, OPERATOR, name=name, storage_pool_bytes=pool, **plan)
        emit(tenant_row(session, created), as_json)


@tenant.command("list")
@json_option
@handles_errors
def tenant_list(as_json: bool) -> None:
    with _installation().transaction() as session:
        emit([tenant_row(session, t) for t in tenants.list_tenants(session, OPERATOR)], as_json)


@tenant.command("show")
@click.argument("name")
@json_option
@handles_errors
def tenant_show(name: str, as_json: bool) -> None:
    with _installation().transaction() as session:
        emit(tenant_row(session, tenants.get_tenant(session, OPERATOR, name)), as_json)


@tenant.command("update")
@click.argument("name")
@size_option("--pool", default=None)
@size_option("--max-mailbox", default=None)
@click.option("--active/--inactive", default=None)
@json_option
@handles_errors
def tenant_update(
    name: str, pool: int | None, max_mailbox: int | None, active: bool | None, as_json: bool
) -> None:
    with _installation().transaction() as session:
        found = tenants.get_tenant(session, OPERATOR, name)
        tenants.update_tenant(
            session, OPERATOR, found, storage_pool_bytes=pool, max_mailbox_bytes=max_mailbox, active=active
        )
        emit(tenant_row(session, found), as_json)


@tenant.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm: delete its domains, mailboxes and aliases too.")
@handles_errors
def tenant_delete(name: str, yes: bool) -> None:
    if not yes:
        fail(f"This deletes {name} with all its domains, mailboxes and aliases; add --yes to confirm.")
    with _installation().transaction() as session:
        tenants.delete_tenant(session, OPERATOR, tenants.get_tenant(session, OPERATOR, name))
    click.echo(f"Deleted tenant {name}.")


@tenant.command("add-admin")
@click.argument("tenant_name")
@click.argument("login")
@click.option("--password", default=None, help="Omit to generate one (printed once).")
@handles_errors
def tenant_add_admin(tenant_name: str, login: str, password: str | None) -> None:
    """Give a tenant a full admin (a login of its own, not a mailbox)."""
    generated = None
    if password is None:
        password = generated = passwords.generate_password()
    with _installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        admin = admins.create_admin(session, OPERATOR, tenant=owner, login=login, password=password)
        click.echo(
            f"{admin.login} is a full admin of {owner.name}."
            + (f" Password: {generated}" if generated else "")
        )


@tenant.command("admins")
@click.argument("tenant_name")
@json_option
@handles_errors
def tenant_admins(tenant_name: str, as_json: bool) -> None:
    with _installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        emit(
            [{"login": a.login, "active": a.active} for a in admins.list_admins(session, OPERATOR, owner)],
            as_json,
        )


@tenant.command("remove-admin")
@click.argument("login")
@handles_errors
def tenant_remove_admin(login: str) -> None:
    with _installation().transaction() as session:
        admins.delete_admin(session, OPERATOR, login)
    click.echo(f"Removed the admin {login}.")


# --- domains -------------------------------------------------------------------------------------


def domain_row(session, domain) -> dict[str, Any]:
    counts = domains.domain_counts(session, domain)
    return {
        "name": domain.display_name,
        "ascii_name": domain.name,
        "tenant": domain.tenant.name,
        "mailboxes": counts.mailboxes,
        "max_mailboxes": domain.max_mailboxes,
        "aliases": counts.aliases,
        "max_aliases": domain.max_aliases,
        "allocated_bytes": counts.allocated_bytes,
        "max_mailbox_bytes": domain.max_mailbox_bytes,
        "active": domain.active,
    }


@main.group()
def domain() -> None:
    """Mail domains and their limits."""


@domain.command("create")
@click.argument("name")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--max-mailboxes", type=int, required=True)
@click.option("--max-aliases", type=int, required=True)
@size_option("--max-mailbox-size", default=None, help="Largest mailbox in this domain (default: the plan's).")
@json_option
@handles_errors
def domain_create(
    name: str,
    tenant_name: str,
    max_mailboxes: int,
    max_aliases: int,
    max_mailbox_size: int | None,
    as_json: bool,
) -> None:
    with _installation().transaction() as session:
        created = domains.create_domain(
            session,
            OPERATOR,
            tenant=tenants.get_tenant(session, OPERATOR, tenant_name),
            name=name,
            max_mailboxes=max_mailboxes,
            max_aliases=max_aliases,
            max_mailbox_bytes=max_mailbox_size,
        )
        emit(domain_row(session, created), as_json)


@domain.command("list")
@click.option("--tenant", "tenant_name", default=None)
@json_option
@handles_errors
def domain_list(tenant_name: str | None, as_json: bool) -> None:
    with _installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name) if tenant_name else None
        emit([domain_row(session, d) for d in domains.list_domains(session, OPERATOR, owner)], as_json)


@domain.command("show")
@click.argument("name")
@json_option
@handles_errors
def domain_show(name: str, as_json: bool) -> None:
    with _installation().transaction() as session:
        emit(domain_row(session, domains.get_domain(session, OPERATOR, name)), as_json)


@domain.command("update")
@click.argument("name")
@click.option("--max-mailboxes", type=int, default=None)
@click.option("--max-aliases", type=int, default=None)
@size_option("--max-mailbox-size", default=None)
@click.option("--active/--inactive", default=None)
@json_option
@handles_errors
def domain_update(
    name: str,
    max_mailboxes: int | None,
    max_aliases: int | None,
    max_mailbox_size: int | None,
    active: bool | None,
    as_json: bool,
) -> None:
    with _installation().transaction() as session:
        found = domains.get_domain(session, OPERATOR, name)
        domains.update_domain(
            session,
            OPERATOR,
            found,
            max_mailboxes=max_mailboxes,
            max_aliases=max_aliases,
            max_mailbox_bytes=max_mailbox_size,
            active=active,
        )
        emit(domain_row(session, found), as_json)


@domain.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm: delete its mailboxes (and their mail) and aliases too.")
@handles_errors
def domain_delete(name: str, yes: bool) -> None:
    if not yes:
        fail(f"This deletes {name} with all its mailboxes, their mail, and aliases; add --yes to confirm.")
    with _installation().transaction() as session:
        domains.delete_domain(session, OPERATOR, domains.get_domain(session, OPERATOR, name))
    click.echo(f"Deleted domain {name}.")


# --- mailboxes -----------------------------------------------------------------------------------


def mailbox_row(mailbox) -> dict[str, Any]:
    return {
        "address": mailbox.address,
        "display_name": mailbox.display_name,
        "quota_bytes": mailbox.quota_bytes,
        "active": mailbox.active,
        "domain_admin": mailbox.is_domain_admin,
    }


def _split_for_create(session, address: str):
    local_part, _, domain_name = address.rpartition("@")
    if not local_part:
        raise click.BadParameter(f"{address!r} is not an email address.")
    return local_part, domains.get_domain(session, OPERATOR, domain_name)


@main.group()
def mailbox() -> None:
    """Mailboxes: storage, passwords, the domain-admin role."""


@mailbox.command("create")
@click.argument("address")
@size_option("--quota", required=True, help="Storage from the tenant's pool, e.g. 1GB.")
@click.option("--password", default=None, help="Plain password (omit both to generate one).")
@click.option("--password-hash", default=None, help="An existing hash, e.g. {SHA512-CRYPT}$6$...")
@click.option("--name", "display_name", default="")
@click.option("--domain-admin", is_flag=True)
@json_option
@handles_errors
def mailbox_create(
    address: str,
    quota: int,
    password: str | None,
    password_hash: str | None,
    display_name: str,
    domain_admin: bool,
    as_json: bool,
) -> None:
    generated = None
    if password is None and password_hash is None:
        password = generated = passwords.generate_password()
    with _installation().transaction() as session:
        local_part, owner = _split_for_create(session, address)
        created = mailboxes.create_mailbox(
            session,
            OPERATOR,
            domain=owner,
            local_part=local_part,
            quota_bytes=quota,
            password=password,
            password_hash=password_hash,
            display_name=display_name,
            is_domain_admin=domain_admin,
        )
        row = mailbox_row(created)
    if generated:
        row["generated_password"] = generated
    emit(row, as_json)


@mailbox.command("list")
@click.argument("domain_name")
@click.option("--search", default="")
@click.option("--offset", type=int, default=0)
@click.option("--limit", type=int, default=100)
@json_option
@handles_errors
def mailbox_list(domain_name: str, search: str, offset: int, limit: int, as_json: bool) -> None:
    with _installation().transaction() as session:
        owner = domains.get_domain(session, OPERATOR, domain_name)
        found = mailboxes.list_mailboxes(session, OPERATOR, owner, search=search, offset=offset, limit=limit)
        emit([mailbox_row(m) for m in found], as_json)


@mailbox.command("show")
@click.argument("address")
@json_option
@handles_errors
def mailbox_show(address: str, as_json: bool) -> None:
    with _installation().transaction() as session:
        emit(mailbox_row(mailboxes.get_mailbox(session, OPERATOR, address)), as_json)


@mailbox.command("set-quota")
@click.argument("address")
@size_option("--quota", required=True)
@json_option
@handles_errors
def mailbox_set_quota(address: str, quota: int, as_json: bool) -> None:
    with _installation().transaction() as session:
        found = mailboxes.get_mailbox(session, OPERATOR, address)
        mailboxes.set_mailbox_quota(session, OPERATOR, found, quota)
        emit(mailbox_row(found), as_json)


@mailbox.command("set-password")
@click.argument("address")
@click.option("--password", default=None)
@click.option("--password-hash", default=None)
@handles_errors
def mailbox_set_password(address: str, password: str | None, password_hash: str | None) -> None:
    generated = None
    if password is None and password_hash is None:
        password = generated = passwords.generate_password()
    with _installation().transaction() as session:
        found = mailboxes.get_mailbox(session, OPERATOR, address)
        mailboxes.set_mailbox_password(
            session, OPERATOR, found, password=password, password_hash=password_hash
        )
    click.echo(f"New password for {address}: {generated}" if generated else f"Password of {address} changed.")


@mailbox.command("update")
@click.argument("address")
@click.option("--name", "display_name", default=None)
@click.option("--active/--inactive", default=None)
@click.option("--rename", "new_local_part", default=None, help="New part before @.")
@json_option
@handles_errors
def mailbox_update(
    address: str, display_name: str | None, active: bool | None, new_local_part: str | None, as_json: bool
) -> None:
    with _installation().transaction() as session:
        found = mailboxes.get_mailbox(session, OPERATOR, address)
        mailboxes.update_mailbox(
            session, OPERATOR, found, display_name=display_name, active=active, local_part=new_local_part
        )
        emit(mailbox_row(found), as_json)


@mailbox.command("grant-admin")
@click.argument("address")
@handles_errors
def mailbox_grant_admin(address: str) -> None:
    with _installation().transaction() as session:
        mailboxes.set_domain_admin(session, OPERATOR, mailboxes.get_mailbox(session, OPERATOR, address), True)
    click.echo(f"{address} is now an admin of its domain.")


@mailbox.command("revoke-admin")
@click.argument("address")
@handles_errors
def mailbox_revoke_admin(address: str) -> None:
    with _installation().transaction() as session:
        mailboxes.set_domain_admin(
            session, OPERATOR, mailboxes.get_mailbox(session, OPERATOR, address), False
        )
    click.echo(f"{address} is no longer an admin of its domain.")


@mailbox.command("delete")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Confirm: its mail is deleted too.")
@handles_errors
def mailbox_delete(address: str, yes: bool) -> None:
    if not yes:
        fail(f"This deletes {address} and all its mail; add --yes to confirm.")
    with _installation().transaction() as session:
        mailboxes.delete_mailbox(session, OPERATOR, mailboxes.get_mailbox(session, OPERATOR, address))
    click.echo(f"Deleted mailbox {address}.")


# --- aliases -------------------------------------------------------------------------------------


def alias_row(alias) -> dict[str, Any]:
    return {"address": alias.address, "destinations": ", ".join(alias.destination_addresses)}


@main.group()
def alias() -> None:
    """Aliases (use @domain for a catch-all)."""


@alias.command("create")
@click.argument("address")
@click.argument("destinations", nargs=-1, required=True)
@json_option
@handles_errors
def alias_create(address: str, destinations: tuple[str, ...], as_json: bool) -> None:
    with _installation().transaction() as session:
        local_part, _, domain_name = address.rpartition("@")
        created = aliases.create_alias(
            session,
            OPERATOR,
            domain=domains.get_domain(session, OPERATOR, domain_name),
            local_part=local_part,
            destinations=list(destinations),
        )
        emit(alias_row(created), as_json)


@alias.command("list")
@click.argument("domain_name")
@json_option
@handles_errors
def alias_list(domain_name: str, as_json: bool) -> None:
    with _installation().transaction() as session:
        owner = domains.get_domain(session, OPERATOR, domain_name)
        emit([alias_row(a) for a in aliases.list_aliases(session, OPERATOR, owner)], as_json)


@alias.command("set")
@click.argument("address")
@click.argument("destinations", nargs=-1, required=True)
@json_option
@handles_errors
def alias_set(address: str, destinations: tuple[str, ...], as_json: bool) -> None:
    with _installation().transaction() as session:
        found = aliases.get_alias(session, OPERATOR, address)
        aliases.set_alias_destinations(session, OPERATOR, found, list(destinations))
        emit(alias_row(found), as_json)


@alias.command("delete")
@click.argument("address")
@handles_errors
def alias_delete(address: str) -> None:
    with _installation().transaction() as session:
        aliases.delete_alias(session, OPERATOR, aliases.get_alias(session, OPERATOR, address))
    click.echo(f"Deleted alias {address}.")


# --- brands -------------------------------------------------------------------------------------


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


@main.group()
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
    installation = _installation()
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
    installation = _installation()
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
    with _installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        emit([brand_row(b) for b in brands.list_brands(session, OPERATOR, owner)], as_json)


@brand.command("use")
@click.argument("domain_name")
@click.argument("hostname", required=False)
@handles_errors
def brand_use(domain_name: str, hostname: str | None) -> None:
    """Make DOMAIN use the brand HOSTNAME (none given: the platform's host)."""
    with _installation().transaction() as session:
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
    with _installation().transaction() as session:
        brands.delete_brand(session, OPERATOR, brands.get_brand_by_hostname(session, OPERATOR, hostname))
    click.echo(f"Deleted {hostname}.")


@brand.command("dns")
@click.argument("domain_name")
@json_option
@handles_errors
def brand_dns_check(domain_name: str, as_json: bool) -> None:
    """Check DOMAIN's DNS records now: expected value, state, and what was found."""
    installation = _installation()
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


# --- API tokens ----------------------------------------------------------------------------------


def token_row(token) -> dict[str, Any]:
    return {
        "prefix": token.prefix,
        "kind": token.kind,
        "tenant": token.tenant.name,
        "domain": token.domain.name if token.domain else "",
        "name": token.name,
        "hourly_limit": token.hourly_limit or "",
        "created_at": token.created_at,
        "last_used_at": token.last_used_at or "",
        "revoked_at": token.revoked_at or "",
    }


@main.group()
def token() -> None:
    """Bearer tokens for the REST API (the secret is printed once, when made)."""


@token.command("create")
@click.option("--tenant", "tenant_name", required=True)
@click.option("--domain", "domain_name", default=None, help="The domain of a domain or sign-up token.")
@click.option("--kind", type=click.Choice(["tenant", "domain", "signup"]), required=True)
@click.option("--name", required=True, help="What the token is for, e.g. billing.")
@click.option("--hourly-limit", type=int, default=None, help="Sign-up tokens: mailboxes an hour.")
@json_option
@handles_errors
def token_create(
    tenant_name: str,
    domain_name: str | None,
    kind: str,
    name: str,
    hourly_limit: int | None,
    as_json: bool,
) -> None:
    """Make a token and print its secret, which is not stored and never shown again."""
    with _installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        made, secret = tokens.create_token(
            session,
            OPERATOR,
            tenant=owner,
            kind=kind,
            name=name,
            domain=domains.get_domain(session, OPERATOR, domain_name) if domain_name else None,
            hourly_limit=hourly_limit,
        )
        row = token_row(made)
    if as_json:
        emit({**row, "secret": secret}, as_json)
        return
    emit(row, as_json)
    click.echo(f"Secret (shown once; store it now): {secret}")


@token.command("list")
@click.option("--tenant", "tenant_name", required=True)
@json_option
@handles_errors
def token_list(tenant_name: str, as_json: bool) -> None:
    """The tenant's tokens, newest first; secrets are never listed."""
    with _installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        emit([token_row(t) for t in tokens.list_tokens(session, OPERATOR, owner)], as_json)


@token.command("revoke")
@click.argument("prefix")
@handles_errors
def token_revoke(prefix: str) -> None:
    """Refuse the token with this prefix (as `token list` shows it) from its next request on."""
    with _installation().transaction() as session:
        revoked = tokens.revoke_token(
            session, OPERATOR, tokens.get_token_by_prefix(session, OPERATOR, prefix)
        )
        done = f"Revoked the {revoked.kind} token {revoked.prefix} ({revoked.name}) of {revoked.tenant.name}."
    click.echo(done + " It is refused from its next request on.")


# --- configuration -------------------------------------------------------------------------------


@main.group()
def config() -> None:
    """Render, check and apply the daemons' configuration."""


@config.command("render")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
@handles_errors
def config_render(out: Path | None) -> None:
    installation = _installation()
    with installation.sessions() as session:
        files = render_all(configuration.current_render_state(session, installation.settings))
    for name, content in files.items():
        if out is None:
            click.echo(f"==> {name} <==\n{content}")
        else:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(content)
    if out is not None:
        click.echo(f"Wrote {len(files)} files under {out}.")


@config.command("diff")
@handles_errors
def config_diff() -> None:
    installation = _installation()
    settings = installation.settings
    with installation.sessions() as session:
        files = render_all(configuration.current_render_state(session, settings))
    live = config_apply.live_generation_dir(settings)
    changed = False
    for name, content in files.items():
        old = (live / name).read_text() if live and (live / name).exists() else ""
        diff = list(
            difflib.unified_diff(old.splitlines(True), content.splitlines(True), f"live/{name}", name)
        )
        if diff:
            changed = True
            click.echo("".join(diff), nl=False)
    if not changed:
        click.echo("The live configuration matches the database and settings.")


@config.command("check")
@handles_errors
def config_check() -> None:
    installation = _installation()
    with installation.transaction() as session:
        generation = configuration.apply_current_configuration(
            session, installation.settings, reload=False, force=True
        )
        if generation.status != "live":
            fail(generation.error)
    click.echo(
        f"Generation {generation.id} passed postconf, postfix check, postmap and doveconf -x and nginx -t."
    )


@config.command("apply")
@click.option("--force", is_flag=True, help="Apply even if nothing changed.")
@handles_errors
def config_apply_command(force: bool) -> None:
    installation = _installation()
    with installation.transaction() as session:
        generation = configuration.apply_current_configuration(session, installation.settings, force=force)
    if generation.status != "live":
        fail(
            f"Generation {generation.id} was {generation.status}; the previous one stays live.\n{generation.error}"
        )
    click.echo(f"Generation {generation.id} is live.")


@config.command("history")
@click.option("--limit", type=int, default=20)
@json_option
@handles_errors
def config_history(limit: int, as_json: bool) -> None:
    from sqlalchemy import select

    from controlplane.models import ConfigGeneration

    with _installation().transaction() as session:
        rows = session.scalars(select(ConfigGeneration).order_by(ConfigGeneration.id.desc()).limit(limit))
        emit(
            [
                {
                    "id": g.id,
                    "status": g.status,
                    "created_at": g.created_at,
                    "error": g.error.splitlines()[:1],
                }
                for g in rows
            ],
            as_json,
        )


# --- mail logs -----------------------------------------------------------------------------------


def transaction_row(view: mail_logs.TransactionView) -> dict[str, Any]:
    transaction = view.transaction
    return {
        "time": transaction.time.isoformat(timespec="seconds"),
        "client": f"{transaction.client_name}[{transaction.client_ip}]" if transaction.client_ip else "",
        "helo": transaction.helo,
        "sasl_user": transaction.sasl_user,
        "sender": transaction.sender or "",
        "message_id": transaction.message_id,
        "size": transaction.size,
        "queue_ids": [entry.queue_id for entry in transaction.queue_entries],
        "recipients": [
            {
                "recipient": r.recipient,
                "orig_to": r.orig_to,
                "outcome": r.outcome,
                "status": r.status_code,
                "relay": r.relay,
                "server_reply": r.detail,
                "reason": r.reason,
                "attempts": r.attempts,
                "time": r.time.isoformat(timespec="seconds"),
            }
            for r in view.recipients
        ],
        "dialogue": [
            {
                "time": line.time.isoformat(timespec="seconds"),
                "from": "client" if line.direction == "<" else "server",
                "text": line.text,
            }
            for line in transaction.dialogue
        ],
    }


def login_row(event) -> dict[str, Any]:
    return {
        "time": event.time.isoformat(timespec="seconds"),
        "service": event.service,
        "login": event.login,
        "client_ip": event.client_ip,
        "success": event.success,
        "reason": event.reason,
    }


@main.group()
def logs() -> None:
    """Read the Postfix and Dovecot logs into the database, and search them."""


@logs.command("ingest")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@json_option
@handles_errors
def logs_ingest(files: tuple[Path, ...], as_json: bool) -> None:
    """Read each FILE from where the last run stopped (plain or gzip; rotation is followed).

    Name Dovecot's log before Postfix's: failed SMTP logins then get Dovecot's reason."""
    rows = []
    verdicts = AuthVerdicts()
    with _installation().sessions() as session:
        for path in files:
            result = ingest_file(session, path, verdicts=verdicts)
            rows.append({"file": str(path), **dataclasses.asdict(result)})
    emit(rows, as_json)


@logs.command("follow")
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@click.option(
    "--poll-seconds", type=click.FloatRange(0.05, 60), default=follower.POLL_SECONDS, show_default=True
)
@click.option(
    "--batch-lines", type=click.IntRange(1, 100_000), default=follower.BATCH_LINES, show_default=True
)
@handles_errors
def logs_follow(daemon: bool, poll_seconds: float, batch_lines: int) -> None:
    """Read the Postfix and Dovecot logs as they grow, until stopped (SIGTERM or Ctrl-C)."""
    follower.run_follower(load_settings(), daemon=daemon, poll_seconds=poll_seconds, batch_lines=batch_lines)


@logs.command("search")
@click.argument("query", default="")
@click.option("--date", "on", type=click.DateTime(["%Y-%m-%d"]), help="Only this day (UTC), YYYY-MM-DD.")
@click.option("--offset", type=int, default=0)
@click.option("--limit", type=int, default=50)
@click.option(
    "--dialogue", "with_dialogue", is_flag=True, help="Also print each transaction's SMTP dialogue."
)
@json_option
@handles_errors
def logs_search(query: str, on, offset: int, limit: int, with_dialogue: bool, as_json: bool) -> None:
    """Transactions by address, client IP, message-id or queue ID, newest first (JSON: with the
    SMTP dialogue)."""
    with _installation().transaction() as session:
        found, total = mail_logs.search_transactions(
            session, OPERATOR, query, on=on.date() if on else None, offset=offset, limit=limit
        )
        rows = [transaction_row(view) for view in found]
    if as_json:
        emit({"total": total, "transactions": rows}, as_json)
        return
    flat = [
        {
            "time": row["time"],
            "client": row["client"],
            "sender": row["sender"],
            "recipient": recipient["recipient"],
            "outcome": recipient["outcome"],
            "status": recipient["status"],
            "reason": recipient["reason"],
        }
        for row in rows
        for recipient in row["recipients"] or [{"recipient": "", "outcome": "", "status": "", "reason": ""}]
    ]
    emit(flat, as_json)
    click.echo(f"{len(rows)} of {total} transactions")
    if with_dialogue:
        for row in rows:
            queued = ", ".join(row["queue_ids"]) or "NOQUEUE"
            click.echo(f"\n{row['time']}  {queued}  from {row['sender'] or '<>'}  {row['client']}")
            for line in row["dialogue"] or [{"time": "", "from": "", "text": "(no dialogue logged)"}]:
                side = {"client": "C:", "server": "S:"}.get(line["from"], "  ")
                click.echo(f"  {line['time'][11:19]:8}  {side} {line['text']}")


@logs.command("auth")
@click.argument("query", default="")
@click.option("--offset", type=int, default=0)
@click.option("--limit", type=int, default=50)
@json_option
@handles_errors
def logs_auth(query: str, offset: int, limit: int, as_json: bool) -> None:
    """Login attempts (panel, SMTP, IMAP, POP3) by login or client IP, newest first."""
    with _installation().transaction() as session:
        found, total = mail_logs.search_logins(session, OPERATOR, query, offset=offset, limit=limit)
        rows = [login_row(event) for event in found]
    if as_json:
        emit({"total": total, "logins": rows}, as_json)
        return
    emit(rows, as_json)
    click.echo(f"{len(rows)} of {total} login attempts")


# --- brand certificates --------------------------------------------------------------------------


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


@main.group()
def certs() -> None:
    """Brand certificates from the ACME server (Let's Encrypt by default), through certbot."""


@certs.command("status")
@json_option
@handles_errors
def certs_status(as_json: bool) -> None:
    """Each brand's certificate: state, names served, expiry, last error and next attempt."""
    with _installation().sessions() as session:
        rows = [_certificate_row(brand) for brand in certificates.list_brand_certificates(session)]
    emit(rows, as_json)


@certs.command("issue")
@click.argument("hostname")
@click.option(
    "--retry-now", is_flag=True, help="Ignore the backoff after a failure (after fixing its cause)."
)
@json_option
@handles_errors
def certs_issue(hostname: str, retry_now: bool, as_json: bool) -> None:
    """Obtain (or bring up to date) the certificate of the brand HOSTNAME now."""
    _emit_outcomes(
        certificates.renew_certificates(_installation(), hostnames=[hostname], retry_now=retry_now), as_json
    )


@certs.command("renew")
@json_option
@handles_errors
def certs_renew(as_json: bool) -> None:
    """Order what is missing or due for every brand; meant to run periodically."""
    _emit_outcomes(certificates.renew_certificates(_installation()), as_json)


@certs.command("deployed")
@click.option(
    "--lineage", envvar="RENEWED_LINEAGE", required=True, help="Set by certbot: the renewed lineage."
)
@handles_errors
def certs_deployed(lineage: str) -> None:
    """certbot's deploy hook: serve the brand's new certificate now."""
    click.echo(certificates.certificate_deployed(_installation(), lineage))


@main.command("postfix-log-writer")
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@handles_errors
def postfix_log_writer_command(daemon: bool) -> None:
    """Run Postfix in the foreground and write log/postfix.log without credentials, until it stops."""
    postfix_log.run_log_writer(load_settings(), daemon=daemon)


@main.command("sender-milter")
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@handles_errors
def sender_milter_command(daemon: bool) -> None:
    """Check the From: header of mail sent after login against the login, for Postfix, until stopped."""
    sender_milter.run_sender_milter(load_settings(), daemon=daemon)


@main.command()
@click.option("--daemon", is_flag=True, help="Detach and run in the background (as `letterhead up` does).")
@handles_errors
def periodic(daemon: bool) -> None:
    """Run certificate renewal twice a day and brand DNS checks hourly, until stopped."""
    periodic_runner.run_periodic(load_settings(), daemon=daemon)


@logs.command("purge")
@click.option(
    "--days", type=int, default=None, help="Keep this many days (default: the log_retention_days setting)."
)
@json_option
@handles_errors
def logs_purge(days: int | None, as_json: bool) -> None:
    """Delete mail transactions, their dialogue, login attempts and unparsed lines older than the retention."""
    installation = _installation()
    with installation.transaction() as session:
        result = log_retention.purge_expired_logs(
            session,
            OPERATOR,
            retention_days=installation.settings.log_retention_days if days is None else days,
        )
    emit(
        {
            "before": result.cutoff.isoformat(timespec="seconds"),
            "transactions": result.transactions,
            "dialogue_lines": result.dialogue_lines,
            "logins": result.logins,
            "unparsed_lines": result.unparsed_lines,
        },
        as_json,
    )


# --- database, stack, transfer -------------------------------------------------------------------


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@handles_errors
def db_upgrade() -> None:
    settings = _installation().settings
    settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.sqlalchemy_url)
    click.echo("The database schema is up to date.")


@main.command()
@click.option("--no-web", is_flag=True, help="Start only Postfix and Dovecot.")
@handles_errors
def up(no_web: bool) -> None:
    """Start Dovecot, Postfix and the web app."""
    installation = _installation()
    stack.up(installation, web=not no_web)
    _print_status(installation.settings, as_json=False)


@main.command()
@handles_errors
def down() -> None:
    """Stop the web app, Postfix and Dovecot."""
    stack.down(_installation().settings)
    click.echo("Stopped.")


def _print_status(settings, as_json: bool) -> None:
    live = config_apply.live_generation_dir(settings)
    rows = [
        {
            "service": s.name,
            "state": "running" if s.pid else "stopped",
            "pid": s.pid or "",
            "ports": " ".join(f"{k}={v}" for k, v in s.ports.items()),
            "generation": live.name if live else "",
        }
        for s in stack.status(settings)
    ]
    emit(rows, as_json)


@main.command()
@json_option
@handles_errors
def status(as_json: bool) -> None:
    """Each service with its ports, PID and live config generation."""
    _print_status(_installation().settings, as_json)


@main.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@handles_errors
def export_command(fmt: str) -> None:
    """Print tenants, domains, mailboxes (with password hashes) and aliases."""
    with _installation().transaction() as session:
        data = transfer.export_state(session, OPERATOR)
    click.echo(
        json.dumps(data, indent=2) if fmt == "json" else yaml.safe_dump(data, sort_keys=False), nl=False
    )


@main.command("import")
@click.argument("file", type=click.File("r"))
@json_option
@handles_errors
def import_command(file, as_json: bool) -> None:
    """Import a YAML or JSON export; running it twice changes nothing the second time."""
    try:
        data = yaml.safe_load(file)  # YAML is a superset of JSON
    except yaml.YAMLError as error:
        fail(f"{file.name} is not valid YAML or JSON: {error}")
    with _installation().transaction() as session:
        report = transfer.import_state(session, OPERATOR, data)
    emit({"created": report.created, "updated": report.updated, "unchanged": report.unchanged}, as_json)


DEMO_BRAND, DEMO_BRAND_NAME = "mail.demo.test", "Demo Mail"


@main.command()
@handles_errors
def demo() -> None:
    """Seed a demo tenant, domain, mailbox, alias and brand (each once)."""
    installation = _installation()
    messages = []
    with installation.transaction() as session:
        demo_tenant = tenants.find_tenant(session, "Demo Reseller")
        if demo_tenant is not None:
            messages.append("The demo tenant exists already.")
        else:
            demo_tenant = tenants.create_tenant(
                session, OPERATOR, name="Demo Reseller", storage_pool_bytes=storage.parse_size("50GB")
            )
            demo_domain = domains.create_domain(
                session, OPERATOR, tenant=demo_tenant, name="demo.test", max_mailboxes=25, max_aliases=50
            )
            mailboxes.create_mailbox(
                session,
                OPERATOR,
                domain=demo_domain,
                local_part="alice",
                password="demo-password",
                quota_bytes=storage.parse_size("2GB"),
                display_name="Alice Demo",
                is_domain_admin=True,
            )
            admins.create_admin(
                session, OPERATOR, tenant=demo_tenant, login="demo-admin", password="demo-password"
            )
            aliases.create_alias(
                session, OPERATOR, domain=demo_domain, local_part="info", destinations=["alice@demo.test"]
            )
            messages.append(
                "Demo: tenant 'Demo Reseller', domain demo.test, mailbox alice@demo.test (password demo-password,\n"
                "also the domain's admin); full admin 'demo-admin' (password demo-password) at /admin."
            )
        # Seeded on its own, so a demo made before brands existed gets one on the next run too.
        demo_domain = domains.find_domain(session, "demo.test")
        if (
            brands.find_brand_for_host(session, DEMO_BRAND) is None
            and demo_domain is not None
            and demo_domain.tenant_id == demo_tenant.id
            and demo_domain.brand is None
        ):
            demo_brand = brands.create_brand(
                session, OPERATOR, installation.settings, tenant=demo_tenant, hostname=DEMO_BRAND,
                name=DEMO_BRAND_NAME,
            )  # fmt: skip
            brands.set_domain_brand(session, OPERATOR, demo_domain, demo_brand)
            https = installation.settings.ports["https"]
            messages.append(
                f"Demo brand: {DEMO_BRAND} ('{DEMO_BRAND_NAME}'), used by demo.test. Its webmail and admin panel\n"
                f"wear the brand when reached by that name, e.g.\n"
                f"  curl --resolve {DEMO_BRAND}:{https}:127.0.0.1 -k https://{DEMO_BRAND}:{https}/"
            )
    click.echo("\n".join(messages))


if __name__ == "__main__":
    main()
