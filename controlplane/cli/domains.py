"""`letterhead domain ...`: a tenant's domains and their limits."""

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
from controlplane.services import domains, tenants
from controlplane.services.scope import OPERATOR


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


@click.group()
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
    with current_installation().transaction() as session:
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
    with current_installation().transaction() as session:
        owner = tenants.get_tenant(session, OPERATOR, tenant_name) if tenant_name else None
        emit([domain_row(session, d) for d in domains.list_domains(session, OPERATOR, owner)], as_json)


@domain.command("show")
@click.argument("name")
@json_option
@handles_errors
def domain_show(name: str, as_json: bool) -> None:
    with current_installation().transaction() as session:
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
    with current_installation().transaction() as session:
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
    with current_installation().transaction() as session:
        domains.delete_domain(session, OPERATOR, domains.get_domain(session, OPERATOR, name))
    click.echo(f"Deleted domain {name}.")
