"""`letterhead tenant ...`: reseller accounts and their storage pools."""

from __future__ import annotations

from typing import Any

import click

from controlplane.cli.common import (
    current_installation,
    emit,
    fail,
    handles_errors,
    json_option,
    size_option,
)
from controlplane.services import admins, passwords, storage, tenants
from controlplane.services.scope import OPERATOR


def tenant_row(session, tenant) -> dict[str, Any]:
    usage = storage.pool_usage(session, tenant)
    return {
        "name": tenant.name,
        "pool_bytes": tenant.storage_pool_bytes,
        "allocated_bytes": usage.allocated_bytes,
        "free_bytes": usage.free_bytes,
        "max_mailbox_bytes": tenant.max_mailbox_bytes,
        "active": tenant.active,
        "mailbox_hourly_messages": tenant.mailbox_hourly_messages,
        "tenant_hourly_messages": tenant.tenant_hourly_messages,
        "max_recipients_per_message": tenant.max_recipients_per_message,
        "postmaster_address": tenant.postmaster_address,
    }


@click.group()
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
    with current_installation().transaction() as session:
        created = tenants.create_tenant(session, OPERATOR, name=name, storage_pool_bytes=pool, **plan)
        emit(tenant_row(session, created), as_json)


@tenant.command("list")
@json_option
@handles_errors
def tenant_list(as_json: bool) -> None:
    with current_installation().transaction() as session:
        emit([tenant_row(session, t) for t in tenants.list_tenants(session, OPERATOR)], as_json)


@tenant.command("show")
@click.argument("name")
@json_option
@handles_errors
def tenant_show(name: str, as_json: bool) -> None:
    with current_installation().transaction() as session:
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
    with current_installation().transaction() as session:
        found = tenants.get_tenant(session, OPERATOR, name)
        tenants.update_tenant(
            session, OPERATOR, found, storage_pool_bytes=pool, max_mailbox_bytes=max_mailbox, active=active
        )
        emit(tenant_row(session, found), as_json)


@tenant.command("limits")
@click.argument("name")
@click.option(
    "--mailbox-hourly-messages", type=int, default=None, help="Messages each mailbox may send per hour."
)
@click.option(
    "--tenant-hourly-messages", type=int, default=None, help="Messages all its mailboxes may send per hour."
)
@click.option("--max-recipients", type=int, default=None, help="Recipients per message.")
@click.option(
    "--postmaster-address",
    default=None,
    help='Where its domains\' postmaster@ and abuse@ mail goes when no one in the domain gets it ("" for nowhere).',
)
@json_option
@handles_errors
def tenant_limits(
    name: str,
    mailbox_hourly_messages: int | None,
    tenant_hourly_messages: int | None,
    max_recipients: int | None,
    postmaster_address: str | None,
    as_json: bool,
) -> None:
    """Set (or show) a tenant's sending limits and postmaster address."""
    with current_installation().transaction() as session:
        found = tenants.get_tenant(session, OPERATOR, name)
        tenants.set_sending_limits(
            session, OPERATOR, found, mailbox_hourly_messages=mailbox_hourly_messages,
            tenant_hourly_messages=tenant_hourly_messages, max_recipients_per_message=max_recipients,
            postmaster_address=postmaster_address,
        )  # fmt: skip
        emit(tenant_row(session, found), as_json)


@tenant.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Confirm: delete its domains, mailboxes and aliases too.")
@handles_errors
def tenant_delete(name: str, yes: bool) -> None:
    if not yes:
        fail(f"This deletes {name} with all its domains, mailboxes and aliases; add --yes to confirm.")
    with current_installation().transaction() as session:
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
    with current_installation().transaction() as session:
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
    with current_installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name)
        emit(
            [{"login": a.login, "active": a.active} for a in admins.list_admins(session, OPERATOR, owner)],
            as_json,
        )


@tenant.command("remove-admin")
@click.argument("login")
@handles_errors
def tenant_remove_admin(login: str) -> None:
    with current_installation().transaction() as session:
        admins.delete_admin(session, OPERATOR, login)
    click.echo(f"Removed the admin {login}.")
